"""Security end to end (README "Security"): TLS, mutual TLS, bearer tokens and
the role rules, against real in-process servers on real PostgreSQL.

Every certificate is made here, in tmp_path, by services.common.certs. Stored rows are counted
with psycopg straight from the tables, never taken from what a service answered."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from energy.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from ocpp.exceptions import InternalError
from ocpp.v16 import ChargePoint as ChargePoint16

from services.common import certs
from services.common.certs import make_ca, make_cert
from tests.conftest import InProcessServer, start_in_process
from tests.test_ocpp_gateway import call16, gateway_run, one_meter_value

pytestmark = pytest.mark.e2e

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE

MICROS = 1_000_000
MINUTE = 60 * MICROS
HOUR = 60 * MINUTE
# 2026-02-10T00:00:00Z: in the past (no clock-skew rejections), after 2000-01-01.
D = int(datetime(2026, 2, 10, tzinfo=UTC).timestamp()) * MICROS
CALL_TIMEOUT = 30.0
# A refused handshake fails fast; the bound only keeps a wrong server from hanging the suite.
HANDSHAKE_TIMEOUT = 10.0

DEVICE = "CHG-001"
OTHER_DEVICE = "CHG-002"
VEHICLE_DEVICE = "EV-001"
OTHER_VEHICLE = "EV-002"


# --- PKI ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """A client certificate and its key, as files and as bytes."""

    cert_file: Path
    key_file: Path

    @property
    def cert(self) -> bytes:
        return self.cert_file.read_bytes()

    @property
    def key(self) -> bytes:
        return self.key_file.read_bytes()


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server: Identity
    device: Identity  # CN CHG-001, no SAN URI: a device named by its CN
    service: Identity  # urn:energy-ingest:service:ingest
    analytics: Identity  # urn:energy-ingest:service:analytics
    operator: Identity  # urn:energy-ingest:operator:ops
    rogue: Identity  # CN CHG-001 again, but signed by a CA the servers do not trust
    expired: Identity  # CN CHG-001, trusted CA, expired an hour ago

    @property
    def ca(self) -> bytes:
        return self.ca_file.read_bytes()

    def server_settings(self) -> dict[str, Any]:
        """TLS with mandatory client certificates (mutual TLS)."""
        return {
            "tls_cert_file": str(self.server.cert_file),
            "tls_key_file": str(self.server.key_file),
            "tls_client_ca_file": str(self.ca_file),
        }


def _write_identity(directory: Path, name: str, pem: tuple[bytes, bytes]) -> Identity:
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert_file.write_bytes(pem[0])
    key_file.write_bytes(pem[1])
    return Identity(cert_file, key_file)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_cert, ca_key = make_ca("test CA")
    rogue_ca_cert, rogue_ca_key = make_ca("test CA")  # same name, different key
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert)
    now = datetime.now(UTC)

    def client(common_name: str, *uris: str) -> tuple[bytes, bytes]:
        return make_cert(ca_cert, ca_key, common_name, uris=uris, client=True)

    return Pki(
        ca_file=ca_file,
        server=_write_identity(
            directory,
            "server",
            make_cert(
                ca_cert,
                ca_key,
                "localhost",
                dns_names=["localhost"],
                ip_addresses=["127.0.0.1", "::1"],
                server=True,
            ),
        ),
        device=_write_identity(directory, "device", client(DEVICE)),
        service=_write_identity(
            directory, "service", client("ingest", "urn:energy-ingest:service:ingest")
        ),
        analytics=_write_identity(
            directory, "analytics", client("analytics", "urn:energy-ingest:service:analytics")
        ),
        operator=_write_identity(
            directory, "operator", client("ops", "urn:energy-ingest:operator:ops")
        ),
        rogue=_write_identity(
            directory,
            "rogue",
            make_cert(rogue_ca_cert, rogue_ca_key, DEVICE, client=True),
        ),
        expired=_write_identity(
            directory,
            "expired",
            make_cert(
                ca_cert,
                ca_key,
                DEVICE,
                client=True,
                not_before=now - timedelta(days=30),
                not_after=now - timedelta(hours=1),
            ),
        ),
    )


def tls_channel(target: str, ca: bytes, identity: Identity | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=identity.key if identity else None,
        certificate_chain=identity.cert if identity else None,
    )
    # The server certificate names localhost; the servers listen on 127.0.0.1.
    return grpc.secure_channel(
        target, credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    )


# --- wire and database helpers --------------------------------------------------------------


def ts(micros: int) -> Timestamp:
    seconds, rest = divmod(micros, MICROS)
    return Timestamp(seconds=seconds, nanos=rest * 1000)


def meter(meter_id: str, micros: int, kwh: float = 1.0) -> meter_pb2.MeterReading:
    return meter_pb2.MeterReading(
        meter_id=meter_id, kwh_consumed_ac=kwh, voltage=230.0, timestamp=ts(micros)
    )


def vehicle(
    vehicle_id: str, micros: int, dc: float = 0.5, charger_id: str = DEVICE
) -> vehicle_pb2.VehicleReading:
    return vehicle_pb2.VehicleReading(
        vehicle_id=vehicle_id,
        charger_id=charger_id,
        soc=50.0,
        kwh_delivered_dc=dc,
        battery_temp=25.0,
        timestamp=ts(micros),
    )


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return OK


def rows(database_url: str, table: str, column: str | None = None, value: str = "") -> int:
    """Rows of meter.meter_readings / vehicle.vehicle_readings (optionally of one id)."""
    sql = f"SELECT count(*) FROM {table}"
    params: tuple[str, ...] = ()
    if column:
        sql += f" WHERE {column} = %s"
        params = (value,)
    with psycopg.connect(database_url) as connection:
        row = connection.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


def meter_rows(database_url: str, meter_id: str | None = None) -> int:
    return rows(
        database_url, "meter.meter_readings", "meter_id" if meter_id else None, meter_id or ""
    )


def vehicle_rows(database_url: str, vehicle_id: str | None = None) -> int:
    return rows(
        database_url,
        "vehicle.vehicle_readings",
        "vehicle_id" if vehicle_id else None,
        vehicle_id or "",
    )


def wait_serving(channel: grpc.Channel, service: str = "", timeout: float = 15.0) -> None:
    """Health Check until SERVING (a database-backed service reports SERVING once it pinged)."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=HANDSHAKE_TIMEOUT
            )
            last = response.status
            if response.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError as error:
            last = error.code()
        time.sleep(0.1)
    raise AssertionError(f"health of {service!r}: {last}, wanted SERVING")


def reflection_lists_services(channel: grpc.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=CALL_TIMEOUT
    )
    return [s.name for r in responses for s in r.list_services_response.service]


def paced(requests: Sequence[Any], pause: float = 0.3) -> Iterator[Any]:
    """Yields stream messages with pauses, so a server that stored each batch as it came would
    have committed the early ones before it sees the foreign reading."""
    for index, request in enumerate(requests):
        if index:
            time.sleep(pause)
        yield request


@pytest.fixture
def servers() -> Iterator[list[InProcessServer]]:
    """Servers a test started; shut down afterwards whatever happened."""
    started: list[InProcessServer] = []
    yield started
    for server in started:
        server.running.shutdown(5)


def start(
    started: list[InProcessServer], service: str, database_url: str, **overrides: Any
) -> InProcessServer:
    server = start_in_process(service, database_url, **overrides)
    started.append(server)
    return server


# --- mutual TLS -----------------------------------------------------------------------------


@pytest.fixture
def mtls_meter(pki: Pki, database_url: str, servers: list[InProcessServer]) -> InProcessServer:
    return start(servers, "meter", database_url, **pki.server_settings())


@pytest.fixture
def mtls_vehicle(pki: Pki, database_url: str, servers: list[InProcessServer]) -> InProcessServer:
    return start(servers, "vehicle", database_url, **pki.server_settings())


def ingest_one(channel: grpc.Channel, reading: meter_pb2.MeterReading) -> None:
    meter_service_pb2_grpc.MeterServiceStub(channel).IngestReading(
        meter_service_pb2.IngestReadingRequest(reading=reading), timeout=HANDSHAKE_TIMEOUT
    )


def test_mtls_client_without_certificate_is_refused(pki: Pki, mtls_meter: InProcessServer) -> None:
    # Trusts the server but presents nothing: the handshake fails, no RPC runs.
    with tls_channel(mtls_meter.target, pki.ca) as channel:
        assert code_of(lambda: ingest_one(channel, meter(DEVICE, D))) == UNAVAILABLE
    assert meter_rows(mtls_meter.database_url) == 0


def test_mtls_plaintext_client_is_refused(mtls_meter: InProcessServer) -> None:
    with mtls_meter.channel() as channel:
        assert code_of(lambda: ingest_one(channel, meter(DEVICE, D))) == UNAVAILABLE
    assert meter_rows(mtls_meter.database_url) == 0


def test_mtls_certificate_from_rogue_ca_is_refused(pki: Pki, mtls_meter: InProcessServer) -> None:
    # Same CN as the real device, same CA name; only the signature is wrong.
    with tls_channel(mtls_meter.target, pki.ca, pki.rogue) as channel:
        assert code_of(lambda: ingest_one(channel, meter(DEVICE, D))) == UNAVAILABLE
    assert meter_rows(mtls_meter.database_url) == 0


def test_mtls_expired_certificate_is_refused(pki: Pki, mtls_meter: InProcessServer) -> None:
    with tls_channel(mtls_meter.target, pki.ca, pki.expired) as channel:
        assert code_of(lambda: ingest_one(channel, meter(DEVICE, D))) == UNAVAILABLE
    assert meter_rows(mtls_meter.database_url) == 0


def test_mtls_device_ingests_its_own_meter_id(pki: Pki, mtls_meter: InProcessServer) -> None:
    with tls_channel(mtls_meter.target, pki.ca, pki.device) as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        response = stub.IngestReading(
            meter_service_pb2.IngestReadingRequest(reading=meter(DEVICE, D)), timeout=CALL_TIMEOUT
        )
        assert not response.duplicate
        streamed = stub.IngestReadings(
            iter([meter_service_pb2.IngestReadingsRequest(readings=[meter(DEVICE, D + MINUTE)])]),
            timeout=CALL_TIMEOUT,
        )
        assert (streamed.accepted, streamed.duplicates, streamed.rejected) == (1, 0, 0)
    assert meter_rows(mtls_meter.database_url, DEVICE) == 2


def test_mtls_device_writing_a_foreign_meter_id_is_denied(
    pki: Pki, mtls_meter: InProcessServer
) -> None:
    with tls_channel(mtls_meter.target, pki.ca, pki.device) as channel:
        assert code_of(lambda: ingest_one(channel, meter(OTHER_DEVICE, D))) == DENIED
    assert meter_rows(mtls_meter.database_url, OTHER_DEVICE) == 0
    assert meter_rows(mtls_meter.database_url) == 0


@pytest.mark.parametrize("batches", ["one batch", "three messages"])
def test_mtls_device_stream_with_one_foreign_reading_stores_nothing(
    pki: Pki, mtls_meter: InProcessServer, batches: str
) -> None:
    readings = [meter(DEVICE, D), meter(DEVICE, D + MINUTE), meter(OTHER_DEVICE, D + 2 * MINUTE)]
    if batches == "one batch":
        requests = [meter_service_pb2.IngestReadingsRequest(readings=readings)]
    else:
        requests = [meter_service_pb2.IngestReadingsRequest(readings=[r]) for r in readings]
    with tls_channel(mtls_meter.target, pki.ca, pki.device) as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        assert code_of(lambda: stub.IngestReadings(paced(requests), timeout=CALL_TIMEOUT)) == DENIED
    # Not even the two own readings that came before the foreign one.
    assert meter_rows(mtls_meter.database_url) == 0


def test_mtls_device_stream_is_bounded(
    pki: Pki, mtls_meter: InProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device's stream is held whole before anything is stored, so its size is capped; the
    cap is lowered to 3 here (it is 100,000)."""
    from services.common import ingest

    monkeypatch.setattr(ingest, "MAX_DEVICE_STREAM_READINGS", 3)
    requests = [
        meter_service_pb2.IngestReadingsRequest(readings=[meter(DEVICE, D + k * MINUTE)])
        for k in range(4)
    ]
    with tls_channel(mtls_meter.target, pki.ca, pki.device) as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        exhausted = code_of(lambda: stub.IngestReadings(iter(requests), timeout=CALL_TIMEOUT))
        assert exhausted == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.IngestReadings(iter(requests[:3]), timeout=CALL_TIMEOUT).accepted == 3
    assert meter_rows(mtls_meter.database_url) == 3


def test_mtls_device_may_not_read_statuses(pki: Pki, mtls_meter: InProcessServer) -> None:
    with tls_channel(mtls_meter.target, pki.ca, pki.device) as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        ingest_one(channel, meter(DEVICE, D))
        assert (
            code_of(
                lambda: stub.ListChargerStatuses(
                    meter_service_pb2.ListChargerStatusesRequest(), timeout=CALL_TIMEOUT
                )
            )
            == DENIED
        )
        # Not even its own status: reads are for services and operators.
        assert (
            code_of(
                lambda: stub.GetChargerStatus(
                    meter_service_pb2.GetChargerStatusRequest(meter_id=DEVICE),
                    timeout=CALL_TIMEOUT,
                )
            )
            == DENIED
        )


def test_mtls_operator_reads_statuses(pki: Pki, mtls_meter: InProcessServer) -> None:
    with tls_channel(mtls_meter.target, pki.ca, pki.device) as channel:
        ingest_one(channel, meter(DEVICE, D, 0.75))
    with tls_channel(mtls_meter.target, pki.ca, pki.operator) as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        listed = stub.ListChargerStatuses(
            meter_service_pb2.ListChargerStatusesRequest(), timeout=CALL_TIMEOUT
        )
        assert [(s.meter_id, s.kwh_consumed_ac) for s in listed.charger_statuses] == [
            (DEVICE, 0.75)
        ]
        status = stub.GetChargerStatus(
            meter_service_pb2.GetChargerStatusRequest(meter_id=DEVICE), timeout=CALL_TIMEOUT
        )
        assert (status.meter_id, status.kwh_consumed_ac) == (DEVICE, 0.75)


def test_mtls_operator_may_not_ingest(pki: Pki, mtls_meter: InProcessServer) -> None:
    with tls_channel(mtls_meter.target, pki.ca, pki.operator) as channel:
        assert code_of(lambda: ingest_one(channel, meter(DEVICE, D))) == DENIED
    assert meter_rows(mtls_meter.database_url) == 0


def test_mtls_service_ingests_any_meter_id(pki: Pki, mtls_meter: InProcessServer) -> None:
    with tls_channel(mtls_meter.target, pki.ca, pki.service) as channel:
        ingest_one(channel, meter(DEVICE, D))
        ingest_one(channel, meter(OTHER_DEVICE, D))
    assert (
        meter_rows(mtls_meter.database_url, DEVICE),
        meter_rows(mtls_meter.database_url, OTHER_DEVICE),
    ) == (1, 1)


def test_mtls_health_with_a_valid_certificate(pki: Pki, mtls_meter: InProcessServer) -> None:
    with tls_channel(mtls_meter.target, pki.ca, pki.device) as channel:
        wait_serving(channel)
        wait_serving(channel, "energy.meter.v1.MeterService")


def test_mtls_vehicle_device_bound_to_its_vehicle_id(
    pki: Pki, mtls_vehicle: InProcessServer
) -> None:
    # The device certificate's CN is CHG-001: as a vehicle id it may write CHG-001 only.
    with tls_channel(mtls_vehicle.target, pki.ca, pki.device) as channel:
        stub = vehicle_service_pb2_grpc.VehicleServiceStub(channel)
        stub.IngestReading(
            vehicle_service_pb2.IngestReadingRequest(reading=vehicle(DEVICE, D)),
            timeout=CALL_TIMEOUT,
        )
        foreign = vehicle_service_pb2.IngestReadingRequest(reading=vehicle(OTHER_VEHICLE, D))
        assert code_of(lambda: stub.IngestReading(foreign, timeout=CALL_TIMEOUT)) == DENIED
    assert vehicle_rows(mtls_vehicle.database_url, DEVICE) == 1
    assert vehicle_rows(mtls_vehicle.database_url, OTHER_VEHICLE) == 0


# --- bearer tokens --------------------------------------------------------------------------

TOKENS = {
    # token → (principal, role)
    "tok-charger": (DEVICE, "device"),
    "tok-vehicle": (VEHICLE_DEVICE, "device"),
    "tok-service": ("ingest", "service"),
    "tok-operator": ("ops", "operator"),
}
WRONG_TOKEN = "tok-nobody"


def write_tokens(path: Path) -> Path:
    # Only the SHA-256 of each token is in the file (tokens are never stored in clear).
    content = {
        hashlib.sha256(token.encode()).hexdigest(): {"principal": principal, "role": role}
        for token, (principal, role) in TOKENS.items()
    }
    path.write_text(json.dumps(content))
    return path


def bearer(token: str | None) -> list[tuple[str, str]] | None:
    return None if token is None else [("authorization", f"Bearer {token}")]


# Callers of the matrix: (label, token). "device" is the device whose id the readings carry.
CALLERS = ("device", "service", "operator", "none", "wrong")
EXPECTED_INGEST = {
    "device": OK,
    "service": OK,
    "operator": DENIED,
    "none": UNAUTHENTICATED,
    "wrong": UNAUTHENTICATED,
}
EXPECTED_READ = {
    "device": DENIED,
    "service": OK,
    "operator": OK,
    "none": UNAUTHENTICATED,
    "wrong": UNAUTHENTICATED,
}


class Matrix:
    """Collects every (rpc, caller) outcome so one failing test shows the whole table."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(
        self,
        label: str,
        caller: str,
        want: grpc.StatusCode,
        method: Callable[..., object],
        request: object,
        *,
        metadata: list[tuple[str, str]] | None,
        stored: Callable[[], int] | None = None,
        added: int = 0,
    ) -> None:
        """Calls `method(request)` with `metadata`; with `stored`, also checks the rows it added."""
        before = stored() if stored else 0
        got = code_of(lambda: method(request, metadata=metadata, timeout=CALL_TIMEOUT))
        if got != want:
            self.failures.append(f"{label} as {caller}: {got.name}, wanted {want.name}")
        if stored:
            got_added = stored() - before
            want_added = added if want == OK else 0
            if got_added != want_added:
                self.failures.append(
                    f"{label} as {caller}: {got_added} rows stored, wanted {want_added}"
                )


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return write_tokens(tmp_path / "tokens.json")


def token_for(caller: str, device_token: str) -> str | None:
    return {
        "device": device_token,
        "service": "tok-service",
        "operator": "tok-operator",
        "none": None,
        "wrong": WRONG_TOKEN,
    }[caller]


def test_token_roles_on_every_meter_rpc(
    database_url: str, tokens_file: Path, servers: list[InProcessServer]
) -> None:
    server = start(servers, "meter", database_url, auth_tokens_file=str(tokens_file))
    matrix = Matrix()

    def own_rows() -> int:
        return meter_rows(database_url, DEVICE)

    def all_rows() -> int:
        return meter_rows(database_url)

    with server.channel() as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        # A status to read, stored by the service.
        stub.IngestReading(
            meter_service_pb2.IngestReadingRequest(reading=meter(DEVICE, D)),
            metadata=bearer("tok-service"),
            timeout=CALL_TIMEOUT,
        )
        summarize = meter_service_pb2.SummarizeConsumptionRequest(
            intervals=[
                meter_pb2.ConsumptionInterval(
                    charger_id=DEVICE, start_time=ts(D), end_time=ts(D + HOUR)
                )
            ]
        )
        for index, caller in enumerate(CALLERS):
            md = bearer(token_for(caller, "tok-charger"))
            ingest, read = EXPECTED_INGEST[caller], EXPECTED_READ[caller]
            # Fresh timestamps per caller, so an accepted reading is never a duplicate.
            first, second = D + (2 * index + 1) * MINUTE, D + (2 * index + 2) * MINUTE
            one = meter_service_pb2.IngestReadingRequest(reading=meter(DEVICE, first))
            batch = meter_service_pb2.IngestReadingsRequest(readings=[meter(DEVICE, second)])
            matrix.check(
                "IngestReading",
                caller,
                ingest,
                stub.IngestReading,
                one,
                metadata=md,
                stored=own_rows,
                added=1,
            )
            matrix.check(
                "IngestReadings",
                caller,
                ingest,
                stub.IngestReadings,
                iter([batch]),
                metadata=md,
                stored=own_rows,
                added=1,
            )
            matrix.check(
                "ListChargerStatuses",
                caller,
                read,
                stub.ListChargerStatuses,
                meter_service_pb2.ListChargerStatusesRequest(),
                metadata=md,
            )
            matrix.check(
                "GetChargerStatus",
                caller,
                read,
                stub.GetChargerStatus,
                meter_service_pb2.GetChargerStatusRequest(meter_id=DEVICE),
                metadata=md,
            )
            matrix.check(
                "SummarizeConsumption",
                caller,
                read,
                stub.SummarizeConsumption,
                summarize,
                metadata=md,
            )
        # The device token on another charger's id: denied, and nothing of the request stored.
        device_md = bearer("tok-charger")
        foreign = meter_service_pb2.IngestReadingRequest(reading=meter(OTHER_DEVICE, D))
        mixed = meter_service_pb2.IngestReadingsRequest(
            readings=[meter(DEVICE, D + HOUR), meter(OTHER_DEVICE, D + HOUR)]
        )
        matrix.check(
            "IngestReading(foreign id)",
            "device",
            DENIED,
            stub.IngestReading,
            foreign,
            metadata=device_md,
            stored=all_rows,
        )
        matrix.check(
            "IngestReadings(own + foreign)",
            "device",
            DENIED,
            stub.IngestReadings,
            iter([mixed]),
            metadata=device_md,
            stored=all_rows,
        )
    assert not matrix.failures, "\n".join(matrix.failures)
    assert meter_rows(database_url, OTHER_DEVICE) == 0


def test_token_roles_on_every_vehicle_rpc(
    database_url: str, tokens_file: Path, servers: list[InProcessServer]
) -> None:
    server = start(servers, "vehicle", database_url, auth_tokens_file=str(tokens_file))
    matrix = Matrix()

    def own_rows() -> int:
        return vehicle_rows(database_url, VEHICLE_DEVICE)

    def all_rows() -> int:
        return vehicle_rows(database_url)

    with server.channel() as channel:
        stub = vehicle_service_pb2_grpc.VehicleServiceStub(channel)
        stub.IngestReading(
            vehicle_service_pb2.IngestReadingRequest(reading=vehicle(VEHICLE_DEVICE, D)),
            metadata=bearer("tok-service"),
            timeout=CALL_TIMEOUT,
        )
        sessions = vehicle_service_pb2.ListChargingSessionsRequest(
            vehicle_id=VEHICLE_DEVICE, start_time=ts(D), end_time=ts(D + HOUR)
        )
        for index, caller in enumerate(CALLERS):
            md = bearer(token_for(caller, "tok-vehicle"))
            ingest, read = EXPECTED_INGEST[caller], EXPECTED_READ[caller]
            first, second = D + (2 * index + 1) * MINUTE, D + (2 * index + 2) * MINUTE
            one = vehicle_service_pb2.IngestReadingRequest(reading=vehicle(VEHICLE_DEVICE, first))
            batch = vehicle_service_pb2.IngestReadingsRequest(
                readings=[vehicle(VEHICLE_DEVICE, second)]
            )
            matrix.check(
                "IngestReading",
                caller,
                ingest,
                stub.IngestReading,
                one,
                metadata=md,
                stored=own_rows,
                added=1,
            )
            matrix.check(
                "IngestReadings",
                caller,
                ingest,
                stub.IngestReadings,
                iter([batch]),
                metadata=md,
                stored=own_rows,
                added=1,
            )
            matrix.check(
                "ListVehicleStatuses",
                caller,
                read,
                stub.ListVehicleStatuses,
                vehicle_service_pb2.ListVehicleStatusesRequest(),
                metadata=md,
            )
            matrix.check(
                "GetVehicleStatus",
                caller,
                read,
                stub.GetVehicleStatus,
                vehicle_service_pb2.GetVehicleStatusRequest(vehicle_id=VEHICLE_DEVICE),
                metadata=md,
            )
            matrix.check(
                "ListChargingSessions",
                caller,
                read,
                stub.ListChargingSessions,
                sessions,
                metadata=md,
            )
        device_md = bearer("tok-vehicle")
        foreign = vehicle_service_pb2.IngestReadingRequest(reading=vehicle(OTHER_VEHICLE, D))
        mixed = vehicle_service_pb2.IngestReadingsRequest(
            readings=[vehicle(VEHICLE_DEVICE, D + HOUR), vehicle(OTHER_VEHICLE, D + HOUR)]
        )
        matrix.check(
            "IngestReading(foreign id)",
            "device",
            DENIED,
            stub.IngestReading,
            foreign,
            metadata=device_md,
            stored=all_rows,
        )
        matrix.check(
            "IngestReadings(own + foreign)",
            "device",
            DENIED,
            stub.IngestReadings,
            iter([mixed]),
            metadata=device_md,
            stored=all_rows,
        )
    assert not matrix.failures, "\n".join(matrix.failures)
    assert vehicle_rows(database_url, OTHER_VEHICLE) == 0


@pytest.mark.parametrize("service", ["meter", "vehicle"])
def test_token_auth_leaves_health_and_reflection_open(
    database_url: str, tokens_file: Path, servers: list[InProcessServer], service: str
) -> None:
    server = start(servers, service, database_url, auth_tokens_file=str(tokens_file))
    with server.channel() as channel:
        wait_serving(channel)  # no token at all
        full_name = f"energy.{service}.v1.{service.capitalize()}Service"
        wait_serving(channel, full_name)
        assert full_name in reflection_lists_services(channel)


def test_plaintext_without_auth_settings_stays_open(meter_server: InProcessServer) -> None:
    # The `make run` default: no TLS, no tokens, every call allowed.
    with meter_server.channel() as channel:
        ingest_one(channel, meter(DEVICE, D))
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        listed = stub.ListChargerStatuses(
            meter_service_pb2.ListChargerStatusesRequest(), timeout=CALL_TIMEOUT
        )
    assert [s.meter_id for s in listed.charger_statuses] == [DEVICE]


# --- AnalyticsService over mutual TLS -------------------------------------------------------


def test_analytics_end_to_end_over_mtls(
    pki: Pki, database_url: str, servers: list[InProcessServer]
) -> None:
    meter_server = start(servers, "meter", database_url, **pki.server_settings())
    vehicle_server = start(servers, "vehicle", database_url, **pki.server_settings())
    analytics = start(
        servers,
        "analytics",
        database_url,  # unused: AnalyticsService owns no tables
        # Dialled by name: the server certificate names localhost (and 127.0.0.1).
        meter_target=meter_server.target.replace("127.0.0.1", "localhost"),
        vehicle_target=vehicle_server.target.replace("127.0.0.1", "localhost"),
        tls_ca_file=str(pki.ca_file),
        tls_client_cert_file=str(pki.analytics.cert_file),
        tls_client_key_file=str(pki.analytics.key_file),
        **pki.server_settings(),
    )
    # CHG-001 reports 1.0 kWh AC a minute at 09:00..09:09; EV-001 charges on it at the same
    # minutes, 0.5 kWh DC each. Ingested by the ingest service's certificate.
    minutes = [D + 9 * HOUR + m * MINUTE for m in range(10)]
    with tls_channel(meter_server.target, pki.ca, pki.service) as channel:
        response = meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
            iter(
                [
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[meter(DEVICE, t) for t in minutes]
                    )
                ]
            ),
            timeout=CALL_TIMEOUT,
        )
        assert (response.accepted, response.rejected) == (10, 0)
    with tls_channel(vehicle_server.target, pki.ca, pki.service) as channel:
        response_v = vehicle_service_pb2_grpc.VehicleServiceStub(channel).IngestReadings(
            iter(
                [
                    vehicle_service_pb2.IngestReadingsRequest(
                        readings=[vehicle(VEHICLE_DEVICE, t, 0.5) for t in minutes]
                    )
                ]
            ),
            timeout=CALL_TIMEOUT,
        )
        assert (response_v.accepted, response_v.rejected) == (10, 0)

    request = analytics_service_pb2.GetVehiclePerformanceRequest(
        vehicle_id=VEHICLE_DEVICE,
        end_time=ts(D + 24 * HOUR),
        window=Duration(seconds=24 * 3600),
    )
    with tls_channel(analytics.target, pki.ca, pki.operator) as channel:
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        performance = stub.GetVehiclePerformance(request, timeout=CALL_TIMEOUT)
    # One session [09:00, 09:09] on CHG-001; its meter interval [08:59:30, 09:09:30) holds the ten
    # readings: AC 10 * 1.0 = 10.0, DC 10 * 0.5 = 5.0, efficiency 0.5, loss 5.0.
    assert performance.total_energy_consumed_ac == 10.0
    assert performance.total_energy_delivered_dc == 5.0
    assert performance.efficiency_ratio == 0.5
    assert performance.energy_loss_kwh == 5.0
    assert (performance.data_points, performance.meter_data_points) == (10, 10)
    assert [s.charger_id for s in performance.sessions] == [DEVICE]

    # The same figures by charger, as the operator reads them through mutual TLS end to end.
    listing = analytics_service_pb2.ListChargerEfficienciesRequest(
        end_time=ts(D + 24 * HOUR), window=Duration(seconds=24 * 3600)
    )
    with tls_channel(analytics.target, pki.ca, pki.operator) as channel:
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        [charger] = stub.ListChargerEfficiencies(listing, timeout=CALL_TIMEOUT).charger_efficiencies
    assert charger.charger_id == DEVICE
    assert (charger.current.energy_consumed_ac, charger.current.efficiency_ratio) == (10.0, 0.5)

    with tls_channel(analytics.target, pki.ca, pki.device) as channel:
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        assert code_of(lambda: stub.GetVehiclePerformance(request, timeout=CALL_TIMEOUT)) == DENIED
        assert (
            code_of(lambda: stub.ListChargerEfficiencies(listing, timeout=CALL_TIMEOUT)) == DENIED
        )
    with tls_channel(analytics.target, pki.ca) as channel:
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        assert (
            code_of(lambda: stub.GetVehiclePerformance(request, timeout=HANDSHAKE_TIMEOUT))
            == UNAVAILABLE
        )


# --- the development PKI (python -m services.common.certs) ----------------------------------


def test_dev_pki_certificates_work_against_real_servers(
    tmp_path: Path, database_url: str, servers: list[InProcessServer], capsys: Any
) -> None:
    assert certs.main([str(tmp_path / "pki")]) == 0
    printed = capsys.readouterr().out
    paths = certs.write_dev_pki(tmp_path / "pki")
    for name in (
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
        "TLS_CLIENT_CA_FILE",
        "TLS_CA_FILE",
        "TLS_CLIENT_CERT_FILE",
        "TLS_CLIENT_KEY_FILE",
    ):
        assert f"export {name}=" in printed
    server = start(
        servers,
        "meter",
        database_url,
        tls_cert_file=str(paths["server"]),
        tls_key_file=str(paths["server-key"]),
        tls_client_ca_file=str(paths["ca"]),
    )
    ca = paths["ca"].read_bytes()

    def identity(name: str) -> Identity:
        return Identity(paths[name], paths[f"{name}-key"])

    # The device certificate names CHG-001 by its CN; the analytics one is a service.
    with tls_channel(server.target, ca, identity(certs.DEVICE_ID)) as channel:
        ingest_one(channel, meter(certs.DEVICE_ID, D))
        assert code_of(lambda: ingest_one(channel, meter(OTHER_DEVICE, D))) == DENIED
    with tls_channel(server.target, ca, identity("analytics")) as channel:
        ingest_one(channel, meter(OTHER_DEVICE, D))
    with tls_channel(server.target, ca, identity("operator")) as channel:
        listed = meter_service_pb2_grpc.MeterServiceStub(channel).ListChargerStatuses(
            meter_service_pb2.ListChargerStatusesRequest(), timeout=CALL_TIMEOUT
        )
        assert [s.meter_id for s in listed.charger_statuses] == [certs.DEVICE_ID, OTHER_DEVICE]
        assert code_of(lambda: ingest_one(channel, meter(certs.DEVICE_ID, D + MINUTE))) == DENIED
    # The server certificate also verifies under the name localhost, without an override.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=paths["operator-key"].read_bytes(),
        certificate_chain=paths["operator"].read_bytes(),
    )
    port = server.target.rsplit(":", 1)[1]
    with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
        wait_serving(channel)


# --- the OCPP gateway towards a MeterService that requires mutual TLS --------------------------


def test_the_ocpp_gateway_reaches_a_mutual_tls_meterservice_as_a_service(pki, mtls_meter):
    """With the service certificate (what TLS_CA_FILE and TLS_CLIENT_CERT_FILE give it), the
    gateway's MeterValues are stored under the charge point's own ids; without a certificate
    MeterService refuses the connection and the charger gets CALLERROR InternalError."""
    service = grpc.ssl_channel_credentials(
        root_certificates=pki.ca, private_key=pki.service.key, certificate_chain=pki.service.cert
    )
    gateway_run(
        mtls_meter.target,
        "ocpp1.6",
        "cp-mtls",
        ChargePoint16,
        one_meter_value("6000"),
        meter_credentials=service,
    )
    assert meter_rows(mtls_meter.database_url, "CP-MTLS:1") == 1

    errors: list[Exception] = []

    async def refused(charge_point: Any) -> None:
        try:
            await charge_point.call(
                call16.MeterValues(
                    connector_id=1,
                    meter_value=[
                        {
                            "timestamp": "2026-02-10T00:10:00Z",
                            "sampledValue": [{"value": "7000", "unit": "Wh"}],
                        }
                    ],
                ),
                suppress=False,
            )
        except InternalError as error:
            errors.append(error)

    anonymous = grpc.ssl_channel_credentials(root_certificates=pki.ca)
    gateway_run(
        mtls_meter.target, "ocpp1.6", "cp-mtls", ChargePoint16, refused, meter_credentials=anonymous
    )
    assert len(errors) == 1
    assert meter_rows(mtls_meter.database_url, "CP-MTLS:1") == 1
