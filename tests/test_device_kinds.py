"""A device principal is tied to its kind (README "Security"): a charger writes meter readings
of its own id only, a vehicle vehicle readings of its own id only, with tokens and with
certificates; a cross-kind write is PERMISSION_DENIED and stores nothing. A device whose kind
is not stated keeps the behaviour from before kinds (its id on either service)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from energy.meter.v1 import meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_service_pb2, vehicle_service_pb2_grpc

from services.common import certs
from services.common.certs import make_ca, make_cert
from tests.conftest import InProcessServer, start_in_process
from tests.test_security import (
    CALL_TIMEOUT,
    DENIED,
    MINUTE,
    OK,
    UNAUTHENTICATED,
    D,
    Identity,
    code_of,
    meter,
    meter_rows,
    tls_channel,
    vehicle,
    vehicle_rows,
)
from tests.unit.test_token_kinds import CHARGER, UNKINDED, VEHICLE, write_tokens

pytestmark = pytest.mark.e2e


@pytest.fixture
def started() -> Iterator[list[InProcessServer]]:
    servers: list[InProcessServer] = []
    yield servers
    for server in servers:
        server.running.shutdown(5)


def both(
    started: list[InProcessServer], database_url: str, **overrides: object
) -> tuple[InProcessServer, InProcessServer]:
    meter_server = start_in_process("meter", database_url, **overrides)
    started.append(meter_server)
    vehicle_server = start_in_process("vehicle", database_url, **overrides)
    started.append(vehicle_server)
    return meter_server, vehicle_server


Call = Callable[[grpc.Channel, str, int], None]


def meter_unary(channel: grpc.Channel, entity: str, minute: int, md: object = None) -> None:
    meter_service_pb2_grpc.MeterServiceStub(channel).IngestReading(
        meter_service_pb2.IngestReadingRequest(reading=meter(entity, D + minute * MINUTE)),
        metadata=md,
        timeout=CALL_TIMEOUT,
    )


def meter_stream(channel: grpc.Channel, entity: str, minute: int, md: object = None) -> None:
    request = meter_service_pb2.IngestReadingsRequest(
        readings=[meter(entity, D + (minute + k) * MINUTE) for k in range(3)]
    )
    meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
        iter([request]), metadata=md, timeout=CALL_TIMEOUT
    )


def vehicle_unary(channel: grpc.Channel, entity: str, minute: int, md: object = None) -> None:
    vehicle_service_pb2_grpc.VehicleServiceStub(channel).IngestReading(
        vehicle_service_pb2.IngestReadingRequest(reading=vehicle(entity, D + minute * MINUTE)),
        metadata=md,
        timeout=CALL_TIMEOUT,
    )


def vehicle_stream(channel: grpc.Channel, entity: str, minute: int, md: object = None) -> None:
    request = vehicle_service_pb2.IngestReadingsRequest(
        readings=[vehicle(entity, D + (minute + k) * MINUTE) for k in range(3)]
    )
    vehicle_service_pb2_grpc.VehicleServiceStub(channel).IngestReadings(
        iter([request]), metadata=md, timeout=CALL_TIMEOUT
    )


# --- tokens ---------------------------------------------------------------------------------


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_token_devices_write_only_their_kind(
    database_url: str, tmp_path: Path, started: list[InProcessServer]
) -> None:
    tokens = write_tokens(tmp_path / "tokens.json")
    meter_server, vehicle_server = both(started, database_url, auth_tokens_file=str(tokens))
    with meter_server.channel() as m, vehicle_server.channel() as v:
        # Own kind, own id: accepted.
        meter_unary(m, CHARGER, 0, bearer("tok-charger"))
        meter_stream(m, CHARGER, 10, bearer("tok-charger"))
        vehicle_unary(v, VEHICLE, 0, bearer("tok-vehicle"))
        vehicle_stream(v, VEHICLE, 10, bearer("tok-vehicle"))
        vehicle_unary(v, CHARGER, 0, bearer("tok-vehicle-chg"))

        # Other kind, own id: denied, unary and stream.
        def code(call: Callable[..., None], *args: object) -> grpc.StatusCode:
            return code_of(lambda: call(*args))

        for call in (vehicle_unary, vehicle_stream):
            assert code(call, v, CHARGER, 100, bearer("tok-charger")) == DENIED
        for call in (meter_unary, meter_stream):
            assert code(call, m, VEHICLE, 100, bearer("tok-vehicle")) == DENIED
            assert code(call, m, CHARGER, 100, bearer("tok-vehicle-chg")) == DENIED
        # A device of unstated kind keeps the behaviour from before: its own id on either.
        meter_unary(m, UNKINDED, 0, bearer("tok-unkinded"))
        vehicle_unary(v, UNKINDED, 0, bearer("tok-unkinded"))
        assert code_of(lambda: meter_unary(m, CHARGER, 200, bearer("tok-unkinded"))) == DENIED
    url = meter_server.database_url
    assert (meter_rows(url, CHARGER), meter_rows(url, VEHICLE), meter_rows(url, UNKINDED)) == (
        4,
        0,
        1,
    )
    assert (
        vehicle_rows(url, VEHICLE),
        vehicle_rows(url, CHARGER),
        vehicle_rows(url, UNKINDED),
    ) == (4, 1, 1)


# --- certificates ---------------------------------------------------------------------------


def test_certificate_devices_write_only_their_kind(
    database_url: str, tmp_path: Path, started: list[InProcessServer]
) -> None:
    ca_cert, ca_key = make_ca("kinds CA")
    (tmp_path / "ca.pem").write_bytes(ca_cert)

    def identity(name: str, common_name: str, *uris: str, server: bool = False) -> Identity:
        if server:
            pem = make_cert(
                ca_cert,
                ca_key,
                "localhost",
                dns_names=["localhost"],
                ip_addresses=["127.0.0.1"],
                server=True,
            )
        else:
            pem = make_cert(ca_cert, ca_key, common_name, uris=uris, client=True)
        (tmp_path / f"{name}.pem").write_bytes(pem[0])
        (tmp_path / f"{name}-key.pem").write_bytes(pem[1])
        return Identity(tmp_path / f"{name}.pem", tmp_path / f"{name}-key.pem")

    server_id = identity("server", "", server=True)
    charger = identity("charger", CHARGER, f"urn:energy-ingest:device:charger:{CHARGER}")
    car = identity("vehicle", VEHICLE, f"urn:energy-ingest:device:vehicle:{VEHICLE}")
    # A vehicle-kind certificate carrying the charger's id (CN CHG-001 too).
    car_as_charger = identity("car-chg", CHARGER, f"urn:energy-ingest:device:vehicle:{CHARGER}")
    bare = identity("bare", UNKINDED)  # CN only: a device of unstated kind
    unkinded_uri = identity("uri", "x", "urn:energy-ingest:device:DEV-002")
    empty = identity("empty", CHARGER, "urn:energy-ingest:device:charger:")
    meter_server, vehicle_server = both(
        started,
        database_url,
        tls_cert_file=str(server_id.cert_file),
        tls_key_file=str(server_id.key_file),
        tls_client_ca_file=str(tmp_path / "ca.pem"),
    )

    def on(server: InProcessServer, who: Identity, call: Callable[..., None], *args: object):
        with tls_channel(server.target, ca_cert, who) as channel:
            return code_of(lambda: call(channel, *args))

    assert on(meter_server, charger, meter_unary, CHARGER, 0) == OK
    assert on(meter_server, charger, meter_stream, CHARGER, 10) == OK
    assert on(vehicle_server, charger, vehicle_unary, CHARGER, 100) == DENIED
    assert on(vehicle_server, charger, vehicle_stream, CHARGER, 110) == DENIED
    assert on(vehicle_server, car, vehicle_unary, VEHICLE, 0) == OK
    assert on(vehicle_server, car, vehicle_stream, VEHICLE, 10) == OK
    assert on(meter_server, car, meter_unary, VEHICLE, 100) == DENIED
    assert on(meter_server, car, meter_stream, VEHICLE, 110) == DENIED
    assert on(meter_server, car_as_charger, meter_unary, CHARGER, 200) == DENIED
    assert on(vehicle_server, car_as_charger, vehicle_unary, CHARGER, 0) == OK
    # Unstated kind: its own id on either service, another id on neither.
    assert on(meter_server, bare, meter_unary, UNKINDED, 0) == OK
    assert on(vehicle_server, bare, vehicle_unary, UNKINDED, 0) == OK
    assert on(meter_server, bare, meter_unary, CHARGER, 300) == DENIED
    assert on(meter_server, unkinded_uri, meter_unary, "DEV-002", 0) == OK
    assert on(vehicle_server, unkinded_uri, vehicle_unary, "DEV-002", 0) == OK
    # A kind with no id is not a principal.
    assert on(meter_server, empty, meter_unary, CHARGER, 400) == UNAUTHENTICATED
    url = meter_server.database_url
    assert (meter_rows(url, CHARGER), meter_rows(url, VEHICLE)) == (4, 0)
    assert (vehicle_rows(url, VEHICLE), vehicle_rows(url, CHARGER)) == (4, 1)
    assert (meter_rows(url, UNKINDED), vehicle_rows(url, UNKINDED)) == (1, 1)


def test_dev_pki_devices_state_their_kind(
    database_url: str, tmp_path: Path, started: list[InProcessServer]
) -> None:
    paths = certs.write_dev_pki(tmp_path / "pki")
    meter_server, vehicle_server = both(
        started,
        database_url,
        tls_cert_file=str(paths["server"]),
        tls_key_file=str(paths["server-key"]),
        tls_client_ca_file=str(paths["ca"]),
    )
    ca = paths["ca"].read_bytes()
    charger = Identity(paths[certs.DEVICE_ID], paths[f"{certs.DEVICE_ID}-key"])
    car = Identity(paths[certs.VEHICLE_ID], paths[f"{certs.VEHICLE_ID}-key"])
    with tls_channel(meter_server.target, ca, charger) as channel:
        assert code_of(lambda: meter_unary(channel, certs.DEVICE_ID, 0)) == OK
    with tls_channel(vehicle_server.target, ca, charger) as channel:
        assert code_of(lambda: vehicle_unary(channel, certs.DEVICE_ID, 0)) == DENIED
    with tls_channel(vehicle_server.target, ca, car) as channel:
        assert code_of(lambda: vehicle_unary(channel, certs.VEHICLE_ID, 0)) == OK
    with tls_channel(meter_server.target, ca, car) as channel:
        assert code_of(lambda: meter_unary(channel, certs.VEHICLE_ID, 0)) == DENIED
