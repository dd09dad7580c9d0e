"""The OCPP gateway with the `ocpp` library's own charge points as the chargers, over a real
WebSocket, in front of a real MeterService: 1.6 and 2.0.1 boot and send meter values, which are
stored as hand-computed readings; with MeterService unreachable the charger gets a CALLERROR and
nothing is confirmed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import websockets
from energy.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc
from energy.meter.v1 import meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ocpp.exceptions import InternalError, PropertyConstraintViolationError
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from websockets.typing import Subprotocol

from services.common.certs import make_ca, make_cert
from services.launcher import start_serving
from services.ocpp import passwords
from services.ocpp.gateway import Credentials, MeterServiceIngest, meter_channel, serve
from tests.conftest import start_in_process

pytestmark = pytest.mark.e2e

DAY = 1_770_681_600  # 2026-02-10T00:00:00Z


def gateway_run(
    meter_target: str,
    subprotocol: str,
    charge_point_id: str,
    client: type[Any],
    script: Callable[[Any], Awaitable[None]],
    *,
    credentials: Credentials | None = None,
    login: str = "",
    tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
    meter_credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Starts the gateway on port 0, connects one `client` charge point and runs `script`.
    `login` ("user:password") is sent as Basic auth; `tls` is (server, client) contexts;
    `meter_credentials`: the gateway dials MeterService over TLS with them."""

    async def main() -> None:
        stop = asyncio.Event()
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        async with meter_channel(meter_target, meter_credentials) as channel:
            gateway = asyncio.create_task(
                serve(
                    "127.0.0.1",
                    0,
                    MeterServiceIngest(channel),
                    started,
                    stop,
                    credentials=credentials,
                    tls=None if tls is None else tls[0],
                )
            )
            port = await asyncio.wait_for(started, 10)
            scheme = "ws" if tls is None else "wss"
            userinfo = f"{login}@" if login else ""
            try:
                await connect_and_run(
                    f"{scheme}://{userinfo}127.0.0.1:{port}/{charge_point_id}",
                    subprotocol,
                    charge_point_id,
                    client,
                    script,
                    client_tls=None if tls is None else tls[1],
                )
            finally:
                stop.set()
                await gateway

    asyncio.run(main())


async def connect_and_run(
    uri: str,
    subprotocol: str,
    charge_point_id: str,
    client: type[Any],
    script: Callable[[Any], Awaitable[None]],
    *,
    client_tls: ssl.SSLContext | None,
) -> None:
    async with websockets.connect(
        uri, subprotocols=[Subprotocol(subprotocol)], ssl=client_tls
    ) as connection:
        charge_point = client(charge_point_id, connection)
        listening = asyncio.create_task(charge_point.start())
        try:
            await asyncio.wait_for(script(charge_point), 60)
        finally:
            listening.cancel()


def stored(database_url: str, meter_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT extract(epoch FROM read_time)::int8, kwh_consumed_ac, "
            "kwh_consumed_ac_register, voltage FROM meter.meter_readings "
            "WHERE meter_id = %s ORDER BY read_time",
            (meter_id,),
        ).fetchall()


def summary(meter_target: str, meter_id: str, start: int, end: int) -> Any:
    with grpc.insecure_channel(meter_target) as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        return stub.SummarizeConsumption(
            meter_service_pb2.SummarizeConsumptionRequest(
                intervals=[
                    {
                        "charger_id": meter_id,
                        "start_time": Timestamp(seconds=start),
                        "end_time": Timestamp(seconds=end),
                    }
                ]
            ),
            timeout=30,
        ).summaries[0]


def sampled(wh: str, *extra: dict[str, str]) -> list[dict[str, str]]:
    return [{"value": wh, "measurand": "Energy.Active.Import.Register", "unit": "Wh"}, *extra]


def test_a_1_6_charge_point_boots_and_its_register_is_stored_as_kwh(meter_server):
    """Boot, then a Wh register 1,000,000 → 1,000,250 → (reset) 100 → 350, one a minute on
    connector 1, with three L-N voltages, a Transaction.Begin 0 beside the periodic value and an
    offset timestamp: stored as kWh registers under CP-16-A:1 (the id made upper case), and
    SummarizeConsumption gives 0.25 + 0.1 (reset counts from zero) + 0.25 = 0.6 kWh."""
    answers: list[Any] = []

    async def script(charge_point: Any) -> None:
        answers.append(
            await charge_point.call(
                call16.BootNotification(charge_point_model="M1", charge_point_vendor="V")
            )
        )
        values = [
            {
                "timestamp": "2026-02-10T00:01:00Z",
                "sampledValue": sampled(
                    "1000000",
                    {"value": "229", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
                    {"value": "231", "measurand": "Voltage", "phase": "L2-N", "unit": "V"},
                    {"value": "233", "measurand": "Voltage", "phase": "L3-N", "unit": "V"},
                ),
            },
            {
                "timestamp": "2026-02-10T10:02:00+10:00",
                "sampledValue": [
                    {"value": "0", "context": "Transaction.Begin", "unit": "Wh"},
                    {"value": "1000250", "context": "Sample.Periodic", "unit": "Wh"},
                ],
            },
            {"timestamp": "2026-02-10T00:03:00Z", "sampledValue": sampled("100")},
            {"timestamp": "2026-02-10T00:04:00Z", "sampledValue": sampled("350")},
        ]
        for value in values:
            answers.append(
                await charge_point.call(
                    call16.MeterValues(connector_id=1, meter_value=[value]), suppress=False
                )
            )

    gateway_run(meter_server.target, "ocpp1.6", "cp-16-a", ChargePoint16, script)
    assert answers[0].status == "Accepted" and answers[0].interval == 300
    assert stored(meter_server.database_url, "CP-16-A:1") == [
        (DAY + 60, None, 1000.0, 231.0),
        (DAY + 120, None, 1000.25, None),
        (DAY + 180, None, 0.1, None),
        (DAY + 240, None, 0.35, None),
    ]
    total = summary(meter_server.target, "CP-16-A:1", DAY, DAY + 300)
    assert round(total.kwh_consumed_ac, 9) == 0.6
    assert total.unknown_energy_count == 1  # the first register reading starts the count


def test_a_2_0_1_charge_point_sends_meter_values_and_transaction_events(meter_server):
    """2.0.1: MeterValues on EVSE 2 (kWh register) and a TransactionEvent carrying one more:
    both stored under CP-201:2."""

    async def script(charge_point: Any) -> None:
        boot = await charge_point.call(
            call201.BootNotification(
                charging_station={"model": "M2", "vendor_name": "V"}, reason="PowerUp"
            )
        )
        assert boot.status == "Accepted"
        await charge_point.call(
            call201.MeterValues(
                evse_id=2,
                meter_value=[
                    {
                        "timestamp": "2026-02-10T00:01:00Z",
                        "sampledValue": [
                            {"value": 12.5, "unitOfMeasure": {"unit": "kWh"}},
                            {"value": 230.5, "measurand": "Voltage", "phase": "L1-N"},
                        ],
                    }
                ],
            ),
            suppress=False,
        )
        await charge_point.call(
            call201.TransactionEvent(
                event_type="Updated",
                timestamp="2026-02-10T00:02:00Z",
                trigger_reason="MeterValuePeriodic",
                seq_no=1,
                transaction_info={"transactionId": "T-1"},
                evse={"id": 2},
                meter_value=[
                    {
                        "timestamp": "2026-02-10T00:02:00Z",
                        "sampledValue": [{"value": 12750, "unitOfMeasure": {"unit": "Wh"}}],
                    }
                ],
            ),
            suppress=False,
        )
        # A later event of the transaction names no EVSE: it is the same EVSE's.
        await charge_point.call(
            call201.TransactionEvent(
                event_type="Ended",
                timestamp="2026-02-10T00:03:00Z",
                trigger_reason="EVDeparted",
                seq_no=2,
                transaction_info={"transactionId": "T-1"},
                meter_value=[
                    {
                        "timestamp": "2026-02-10T00:03:00Z",
                        "sampledValue": [{"value": 13000, "unitOfMeasure": {"unit": "Wh"}}],
                    }
                ],
            ),
            suppress=False,
        )

    gateway_run(meter_server.target, "ocpp2.0.1", "CP-201", ChargePoint201, script)
    assert stored(meter_server.database_url, "CP-201:2") == [
        (DAY + 60, None, 12.5, 230.5),
        (DAY + 120, None, 12.75, None),
        (DAY + 180, None, 13.0, None),
    ]
    assert stored(meter_server.database_url, "CP-201") == []


def test_meter_values_meterservice_cannot_take_are_answered_with_a_callerror():
    """No MeterService at the target: the charger gets CALLERROR InternalError, so it keeps the
    values and sends them again later."""
    errors: list[Exception] = []

    async def script(charge_point: Any) -> None:
        try:
            await charge_point.call(
                call16.MeterValues(
                    connector_id=1,
                    meter_value=[
                        {"timestamp": "2026-02-10T00:01:00Z", "sampledValue": sampled("5")}
                    ],
                ),
                suppress=False,
            )
        except InternalError as error:
            errors.append(error)

    gateway_run("127.0.0.1:1", "ocpp1.6", "cp-down", ChargePoint16, script)
    assert len(errors) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_ocpp_runs_the_gateway_as_a_process_and_refuses_a_busy_address(meter_server):
    """`energy-ingest serve ocpp` on OCPP_LISTEN_ADDR, sending to METER_TARGET: a 1.6 charge
    point's meter value is stored; SIGTERM ends it with 0; a second one on the same address
    exits 2 naming OCPP_LISTEN_ADDR."""
    port = free_port()
    env = {
        **os.environ,
        "OCPP_LISTEN_ADDR": f"127.0.0.1:{port}",
        "METER_TARGET": meter_server.target,
    }
    command = [sys.executable, "-m", "services.cli", "serve", "ocpp"]
    gateway = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and gateway.poll() is None, "no gateway"
                time.sleep(0.1)
        busy = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert busy.returncode == 2
        assert "OCPP_LISTEN_ADDR" in busy.stderr and "Traceback" not in busy.stderr

        async def send() -> None:
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/cp-proc", subprotocols=[Subprotocol("ocpp1.6")]
            ) as connection:
                charge_point = ChargePoint16("cp-proc", connection)
                listening = asyncio.create_task(charge_point.start())
                await charge_point.call(
                    call16.MeterValues(
                        connector_id=3,
                        meter_value=[
                            {"timestamp": "2026-02-10T00:05:00Z", "sampledValue": sampled("7500")}
                        ],
                    ),
                    suppress=False,
                )
                listening.cancel()

        asyncio.run(asyncio.wait_for(send(), 60))
        assert stored(meter_server.database_url, "CP-PROC:3") == [(DAY + 300, None, 7.5, None)]
    finally:
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(30) == 0


def one_meter_value(wh: str) -> Callable[[Any], Awaitable[None]]:
    async def script(charge_point: Any) -> None:
        await charge_point.call(
            call16.MeterValues(
                connector_id=1,
                meter_value=[{"timestamp": "2026-02-10T00:09:00Z", "sampledValue": sampled(wh)}],
            ),
            suppress=False,
        )

    return script


def test_with_passwords_a_charge_point_must_authenticate_as_itself(meter_server):
    """Security profile 1: the right password (the id in any case) is served; no credentials or
    a wrong password is 401 at the handshake, another charge point's credentials 403; only the
    authenticated charge point's values are stored."""
    credentials = Credentials(
        {
            "CP-AUTH": passwords.hash_password("right", iterations=1000),
            "CP-OTHER": passwords.hash_password("other", iterations=1000),
        }
    )
    gateway_run(
        meter_server.target,
        "ocpp1.6",
        "cp-auth",
        ChargePoint16,
        one_meter_value("1000"),
        credentials=credentials,
        login="Cp-Auth:right",
    )
    for login, status in (("", 401), ("cp-auth:wrong", 401), ("cp-other:other", 403)):
        with pytest.raises(websockets.InvalidStatus) as refused:
            gateway_run(
                meter_server.target,
                "ocpp1.6",
                "cp-auth",
                ChargePoint16,
                one_meter_value("2000"),
                credentials=credentials,
                login=login,
            )
        assert refused.value.response.status_code == status, login
    assert stored(meter_server.database_url, "CP-AUTH:1") == [(DAY + 540, None, 1.0, None)]


def test_security_profile_2_serves_wss_with_the_servers_certificate(meter_server):
    ca_cert, ca_key = make_ca("test OCPP CA")
    cert, key = make_cert(ca_cert, ca_key, "gateway", ip_addresses=("127.0.0.1",), server=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as scratch:
        cert_path, key_path = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
        server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cadata=ca_cert.decode())
    credentials = Credentials({"CP-TLS": passwords.hash_password("pw", iterations=1000)})
    gateway_run(
        meter_server.target,
        "ocpp1.6",
        "CP-TLS",
        ChargePoint16,
        one_meter_value("3000"),
        credentials=credentials,
        login="CP-TLS:pw",
        tls=(server, client),
    )
    assert stored(meter_server.database_url, "CP-TLS:1") == [(DAY + 540, None, 3.0, None)]


def test_a_vehicle_on_a_1_6_connector_is_measured_by_that_charge_points_register(
    database_url, meter_server, vehicle_server
):
    """A 1.6 charge point reports its register every minute (Wh, 10 minutes: 500,000 Wh rising
    2,000 Wh a minute, so 20 kWh); a vehicle on `CP-E2E:1` reports 1.8 kWh of DC a minute over
    the same minutes. GetVehiclePerformance: AC 20.0 kWh from the register (its first reading
    starts the count), DC 18.0, efficiency 0.9."""

    async def script(charge_point: Any) -> None:
        await charge_point.call(
            call16.BootNotification(charge_point_model="M1", charge_point_vendor="V")
        )
        for minute in range(11):
            await charge_point.call(
                call16.MeterValues(
                    connector_id=1,
                    meter_value=[
                        {
                            "timestamp": f"2026-02-10T00:{minute:02d}:00Z",
                            "sampledValue": sampled(str(500_000 + 2_000 * minute)),
                        }
                    ],
                ),
                suppress=False,
            )

    gateway_run(meter_server.target, "ocpp1.6", "cp-e2e", ChargePoint16, script)
    vehicle_readings = [
        vehicle_pb2.VehicleReading(
            vehicle_id="VH-OCPP",
            charger_id="CP-E2E:1",
            kwh_delivered_dc=1.8,
            timestamp=Timestamp(seconds=DAY + 60 * minute),
        )
        for minute in range(1, 11)
    ]
    with grpc.insecure_channel(vehicle_server.target) as channel:
        sent = vehicle_service_pb2_grpc.VehicleServiceStub(channel).IngestReadings(
            iter([vehicle_service_pb2.IngestReadingsRequest(readings=vehicle_readings)]),
            timeout=30,
        )
        assert sent.accepted == 10
    analytics = start_in_process(
        "analytics",
        database_url,
        meter_target=meter_server.target,
        vehicle_target=vehicle_server.target,
    )
    try:
        with analytics.channel() as channel:
            performance = analytics_service_pb2_grpc.AnalyticsServiceStub(
                channel
            ).GetVehiclePerformance(
                analytics_service_pb2.GetVehiclePerformanceRequest(
                    vehicle_id="VH-OCPP", end_time=Timestamp(seconds=DAY + 3600)
                ),
                timeout=30,
            )
    finally:
        analytics.running.shutdown(5)
    assert round(performance.total_energy_consumed_ac, 9) == 20.0
    assert round(performance.total_energy_delivered_dc, 9) == 18.0
    assert round(performance.efficiency_ratio, 9) == 0.9
    assert performance.ac_coverage == 1.0
    assert list(performance.quality_flags) == []


def test_beyond_ocpp_max_connections_a_handshake_is_answered_503(meter_server):
    """OCPP_MAX_CONNECTIONS = 1: while one charge point is connected a second is refused with
    503; once the first has gone, the second connects and its values are stored."""

    async def main() -> None:
        stop = asyncio.Event()
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        async with grpc.aio.insecure_channel(meter_server.target) as channel:
            gateway = asyncio.create_task(
                serve("127.0.0.1", 0, MeterServiceIngest(channel), started, stop, max_connections=1)
            )
            port = await asyncio.wait_for(started, 10)
            protocol = [Subprotocol("ocpp1.6")]
            try:
                async with websockets.connect(
                    f"ws://127.0.0.1:{port}/cp-first", subprotocols=protocol
                ):
                    with pytest.raises(websockets.InvalidStatus) as refused:
                        async with websockets.connect(
                            f"ws://127.0.0.1:{port}/cp-second", subprotocols=protocol
                        ):
                            pass
                    assert refused.value.response.status_code == 503
                await asyncio.sleep(0.2)  # the first connection's handler has ended
                await connect_and_run(
                    f"ws://127.0.0.1:{port}/cp-second",
                    "ocpp1.6",
                    "cp-second",
                    ChargePoint16,
                    one_meter_value("4000"),
                    client_tls=None,
                )
            finally:
                stop.set()
                await gateway

    asyncio.run(main())
    assert stored(meter_server.database_url, "CP-SECOND:1") == [(DAY + 540, None, 4.0, None)]


def test_meterservice_killed_and_restarted_under_1000_charge_points_loses_nothing(database_url):
    """1,000 1.6 charge points each send 3 MeterValues (a Wh register), resending after a
    CALLERROR as chargers do; MeterService is killed (SIGKILL) once a third is confirmed and
    started again on the same address. Every MeterValues the gateway confirmed is stored, each
    reading once (3,000 rows), and some were refused while it was down."""
    port = free_port()
    env = {"DATABASE_URL": database_url, "METER_LISTEN_ADDR": f"127.0.0.1:{port}"}
    meter = start_serving("meter", env)
    charge_points, values = 1000, 3
    confirmed: set[tuple[str, int]] = set()
    refusals = [0]

    async def main() -> None:
        stop = asyncio.Event()
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        async with meter_channel(f"127.0.0.1:{port}") as channel:
            gateway = asyncio.create_task(
                serve("127.0.0.1", 0, MeterServiceIngest(channel), started, stop)
            )
            gateway_port = await asyncio.wait_for(started, 10)

            async def charger(n: int) -> None:
                name = f"kill-{n:04d}"
                async with websockets.connect(
                    f"ws://127.0.0.1:{gateway_port}/{name}",
                    subprotocols=[Subprotocol("ocpp1.6")],
                    open_timeout=60,
                ) as connection:
                    charge_point = ChargePoint16(name, connection)
                    listening = asyncio.create_task(charge_point.start())
                    for k in range(values):
                        request = call16.MeterValues(
                            connector_id=1,
                            meter_value=[
                                {
                                    "timestamp": f"2026-02-10T00:{k:02d}:00Z",
                                    "sampledValue": sampled(str(1000 * (n + k))),
                                }
                            ],
                        )
                        while True:
                            try:
                                await charge_point.call(request, suppress=False)
                                break
                            except InternalError:
                                refusals[0] += 1
                                await asyncio.sleep(0.5)
                        confirmed.add((name.upper() + ":1", DAY + 60 * k))
                    listening.cancel()

            async def killer() -> None:
                nonlocal meter
                while len(confirmed) < charge_points * values // 3:
                    await asyncio.sleep(0.05)
                meter.process.kill()
                meter.process.wait()
                await asyncio.sleep(1.0)
                meter = await asyncio.get_running_loop().run_in_executor(
                    None, lambda: start_serving("meter", env)
                )

            try:
                await asyncio.wait_for(
                    asyncio.gather(killer(), *(charger(n) for n in range(charge_points))), 300
                )
            finally:
                stop.set()
                await gateway

    try:
        asyncio.run(main())
    finally:
        meter.terminate(30)
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT meter_id, extract(epoch FROM read_time)::int8 FROM meter.meter_readings "
            "WHERE meter_id LIKE 'KILL-%'"
        ).fetchall()
    assert len(confirmed) == charge_points * values
    assert len(rows) == len(set(rows)) == charge_points * values
    assert confirmed == set(rows)
    assert refusals[0] > 0, "MeterService was down while charge points were sending"


def test_simulate_ocpp_drives_charge_points_through_the_gateway(meter_server):
    """`energy-ingest simulate --ocpp`: 5 charge points, 3 simulated minutes, backfill: 15
    MeterValues confirmed and stored as CHG-0000n:1 registers, the progress bar ending at 15 of
    15 on stderr, one line of summary."""
    port = free_port()
    env = {
        **os.environ,
        "OCPP_LISTEN_ADDR": f"127.0.0.1:{port}",
        "METER_TARGET": meter_server.target,
    }
    gateway = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", "ocpp"], env=env, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and gateway.poll() is None, "no gateway"
                time.sleep(0.1)
        simulated = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "simulate",
                "--ocpp",
                "--chargers=5",
                "--vehicles=0",
                "--hours=0.05",
                "--start=2026-02-10T00:00:00Z",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
    assert simulated.returncode == 0, simulated.stdout + simulated.stderr
    assert simulated.stdout.splitlines()[-1].startswith(
        "15 MeterValues confirmed by the gateway (0 answered CALLERROR and sent again, 0 charge "
        "points could not connect)"
    )
    assert "100.0%           15 of 15 readings acknowledged" in simulated.stderr
    with psycopg.connect(meter_server.database_url) as connection:
        rows = connection.execute(
            "SELECT meter_id, count(*), min(read_time) FROM meter.meter_readings "
            "WHERE meter_id LIKE 'CHG-%' GROUP BY meter_id ORDER BY meter_id"
        ).fetchall()
    assert [(meter_id, count) for meter_id, count, _ in rows] == [
        (f"CHG-0000{n}:1", 3) for n in range(5)
    ]


def test_a_malformed_charge_point_id_is_refused_at_the_handshake(meter_server):
    """An id that cannot make a meter id (49 characters, a percent-encoded space) is answered
    400 before any OCPP message."""
    for name in ("c" * 49, "cp%20one"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            gateway_run(
                meter_server.target, "ocpp1.6", name, ChargePoint16, one_meter_value("1000")
            )
        assert refused.value.response.status_code == 400, name


def test_meter_values_without_a_utc_offset_are_refused_and_not_stored(meter_server):
    """A timestamp without an offset is not guessed: CALLERROR PropertyConstraintViolation, and
    nothing of the message is stored."""
    errors: list[Exception] = []

    async def script(charge_point: Any) -> None:
        try:
            await charge_point.call(
                call16.MeterValues(
                    connector_id=1,
                    meter_value=[
                        {"timestamp": "2026-02-10T00:01:00Z", "sampledValue": sampled("1000")},
                        {"timestamp": "2026-02-10T00:02:00", "sampledValue": sampled("2000")},
                    ],
                ),
                suppress=False,
            )
        except PropertyConstraintViolationError as error:
            errors.append(error)

    gateway_run(meter_server.target, "ocpp1.6", "cp-naive", ChargePoint16, script)
    assert len(errors) == 1 and "has no UTC offset" in str(errors[0])
    assert stored(meter_server.database_url, "CP-NAIVE:1") == []


def test_a_1_6_stop_transactions_meter_values_go_to_its_connector(meter_server):
    """StartTransaction on connector 2, then StopTransaction whose transactionData holds the
    closing register (Transaction.End): stored under CP-STOP:2."""

    async def script(charge_point: Any) -> None:
        started = await charge_point.call(
            call16.StartTransaction(
                connector_id=2,
                id_tag="TAG",
                meter_start=500_000,
                timestamp="2026-02-10T00:00:00Z",
            )
        )
        await charge_point.call(
            call16.StopTransaction(
                meter_stop=512_000,
                timestamp="2026-02-10T00:20:00Z",
                transaction_id=started.transaction_id,
                transaction_data=[
                    {
                        "timestamp": "2026-02-10T00:20:00Z",
                        "sampledValue": [
                            {"value": "512000", "context": "Transaction.End", "unit": "Wh"}
                        ],
                    }
                ],
            ),
            suppress=False,
        )

    gateway_run(meter_server.target, "ocpp1.6", "cp-stop", ChargePoint16, script)
    assert stored(meter_server.database_url, "CP-STOP:2") == [(DAY + 1200, None, 512.0, None)]


def with_gateway(meter_target: str, body: Callable[[int], Awaitable[None]], **options: Any) -> None:
    """Runs the gateway on port 0 in front of MeterService while `body(port)` runs."""

    async def main() -> None:
        stop = asyncio.Event()
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        async with grpc.aio.insecure_channel(meter_target) as channel:
            gateway = asyncio.create_task(
                serve("127.0.0.1", 0, MeterServiceIngest(channel), started, stop, **options)
            )
            port = await asyncio.wait_for(started, 10)
            try:
                await asyncio.wait_for(body(port), 60)
            finally:
                stop.set()
                await gateway

    asyncio.run(main())


async def on_connection(
    port: int, name: str, subprotocol: str, script: Callable[[Any], Awaitable[Any]]
) -> Any:
    """One connection of charge point `name` running `script`; returns what it returned."""
    kind = ChargePoint16 if subprotocol == "ocpp1.6" else ChargePoint201
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/{name}", subprotocols=[Subprotocol(subprotocol)]
    ) as connection:
        charge_point = kind(name, connection)
        listening = asyncio.create_task(charge_point.start())
        try:
            return await script(charge_point)
        finally:
            listening.cancel()


def test_a_1_6_transaction_stopped_after_a_reconnect_keeps_its_connector(meter_server):
    """Connector 1's transaction starts on one connection; the charger reconnects, starts one on
    connector 2 (another id) and stops the first with its closing register 2,000 Wh: stored on
    CP-RC:1 (2.0 kWh), nothing on CP-RC:2."""

    def start(connector: int) -> Callable[[Any], Awaitable[Any]]:
        async def script(charge_point: Any) -> Any:
            answer = await charge_point.call(
                call16.StartTransaction(
                    connector_id=connector,
                    id_tag="TAG",
                    meter_start=1000,
                    timestamp="2026-02-10T00:00:00Z",
                )
            )
            return answer.transaction_id

        return script

    async def body(port: int) -> None:
        first = await on_connection(port, "cp-rc", "ocpp1.6", start(1))
        second = await on_connection(port, "cp-rc", "ocpp1.6", start(2))
        assert first != second

        async def stop_first(charge_point: Any) -> None:
            await charge_point.call(
                call16.StopTransaction(
                    meter_stop=2000,
                    timestamp="2026-02-10T00:10:00Z",
                    transaction_id=first,
                    transaction_data=[
                        {
                            "timestamp": "2026-02-10T00:10:00Z",
                            "sampledValue": [{"value": "2000", "context": "Transaction.End"}],
                        }
                    ],
                ),
                suppress=False,
            )

        await on_connection(port, "cp-rc", "ocpp1.6", stop_first)

    with_gateway(meter_server.target, body)
    assert stored(meter_server.database_url, "CP-RC:1") == [(DAY + 600, None, 2.0, None)]
    assert stored(meter_server.database_url, "CP-RC:2") == []


def test_a_2_0_1_transaction_continued_after_a_reconnect_keeps_its_evse(meter_server):
    """Started on EVSE 2 with 1,000 Wh; after a reconnect an Updated event without `evse`
    brings 1,500 Wh: both on CP-RC2:2. An event of a transaction the gateway never saw start
    is confirmed and not stored (its EVSE is unknown): nothing on the station meter."""

    def event(
        kind: str, seq: int, wh: str, minute: int, *, evse: dict[str, int] | None, tx: str
    ) -> Callable[[Any], Awaitable[None]]:
        async def script(charge_point: Any) -> None:
            await charge_point.call(
                call201.TransactionEvent(
                    event_type=kind,
                    timestamp=f"2026-02-10T00:{minute:02d}:00Z",
                    trigger_reason="MeterValuePeriodic",
                    seq_no=seq,
                    transaction_info={"transactionId": tx},
                    evse=evse,
                    meter_value=[
                        {
                            "timestamp": f"2026-02-10T00:{minute:02d}:00Z",
                            "sampledValue": [{"value": float(wh)}],
                        }
                    ],
                ),
                suppress=False,
            )

        return script

    async def body(port: int) -> None:
        await on_connection(
            port, "cp-rc2", "ocpp2.0.1", event("Started", 0, "1000", 1, evse={"id": 2}, tx="T-1")
        )
        await on_connection(
            port, "cp-rc2", "ocpp2.0.1", event("Updated", 1, "1500", 2, evse=None, tx="T-1")
        )
        await on_connection(
            port, "cp-rc2", "ocpp2.0.1", event("Updated", 5, "9000", 3, evse=None, tx="T-X")
        )

    with_gateway(meter_server.target, body)
    assert stored(meter_server.database_url, "CP-RC2:2") == [
        (DAY + 60, None, 1.0, None),
        (DAY + 120, None, 1.5, None),
    ]
    assert stored(meter_server.database_url, "CP-RC2") == []


def test_a_meter_value_without_timestamp_is_stored_at_its_receive_time(meter_server):
    """A 1.6 MeterValues whose meterValue has no timestamp (schema-invalid, sent anyway): the
    gateway confirms it and stores 1.0 kWh at the time it received it."""

    async def script(charge_point: Any) -> None:
        await charge_point.call(
            call16.MeterValues(connector_id=1, meter_value=[{"sampledValue": [{"value": "1000"}]}]),
            suppress=False,
            skip_schema_validation=True,
        )

    before = time.time()
    with_gateway(
        meter_server.target, lambda port: on_connection(port, "cp-nots", "ocpp1.6", script)
    )
    after = time.time()
    ((seconds, interval, register, voltage),) = stored(meter_server.database_url, "CP-NOTS:1")
    assert (interval, register, voltage) == (None, 1.0, None)
    assert before - 1 <= seconds <= after + 1  # whole seconds, rounded


def test_ocpp_max_connections_holds_while_passwords_are_checked(meter_server):
    """OCPP_MAX_CONNECTIONS = 3 with passwords: 12 charge points with the right passwords
    handshake at once; exactly 3 connect, 9 are answered 503."""
    names = [f"CP-M{n}" for n in range(12)]
    credentials = Credentials({n: passwords.hash_password("pw", iterations=20_000) for n in names})

    async def body(port: int) -> None:
        async def attempt(name: str) -> Any:
            try:
                connection = await websockets.connect(
                    f"ws://{name}:pw@127.0.0.1:{port}/{name}",
                    subprotocols=[Subprotocol("ocpp1.6")],
                )
            except websockets.InvalidStatus as refused:
                return refused.response.status_code
            return connection

        outcomes = await asyncio.gather(*(attempt(n) for n in names))
        opened = [o for o in outcomes if not isinstance(o, int)]
        assert len(opened) == 3 and sorted(o for o in outcomes if isinstance(o, int)) == [503] * 9
        for connection in opened:
            await connection.close()

    with_gateway(meter_server.target, body, credentials=credentials, max_connections=3)


def test_a_charge_point_reconnecting_replaces_its_older_connection(meter_server):
    async def body(port: int) -> None:
        protocol = [Subprotocol("ocpp1.6")]
        older = await websockets.connect(f"ws://127.0.0.1:{port}/cp-twice", subprotocols=protocol)
        newer = await websockets.connect(f"ws://127.0.0.1:{port}/CP-TWICE", subprotocols=protocol)
        await asyncio.wait_for(older.wait_closed(), 5)
        assert older.close_code == 1000 and newer.state.name == "OPEN"
        await newer.close()

    with_gateway(meter_server.target, body)


def test_a_password_that_is_not_utf_8_is_refused_with_401(meter_server):
    import base64

    credentials = Credentials({"CP-L1": passwords.hash_password("pässword", iterations=1000)})

    async def body(port: int) -> None:
        header = base64.b64encode("CP-L1:pässword".encode("latin-1")).decode()
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                f"ws://127.0.0.1:{port}/CP-L1",
                subprotocols=[Subprotocol("ocpp1.6")],
                additional_headers={"Authorization": f"Basic {header}"},
            )
        assert refused.value.response.status_code == 401

    with_gateway(meter_server.target, body, credentials=credentials)


def test_the_gateway_on_every_address_takes_ipv4_and_ipv6(meter_server):
    """OCPP_LISTEN_ADDR's default `[::]:9000` listens on IPv4 too, as gRPC's `[::]` does
    (asyncio alone makes `::` IPv6 only; on a host whose `localhost` is only 127.0.0.1,
    `make run` then waited for the gateway in vain): a WebSocket handshake over 127.0.0.1 and
    over ::1 both reach it."""

    async def main() -> list[str]:
        stop = asyncio.Event()
        started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        async with meter_channel(meter_server.target, None) as channel:
            gateway = asyncio.create_task(
                serve("::", 0, MeterServiceIngest(channel), started, stop)
            )
            port = await asyncio.wait_for(started, 10)
            reached = []
            for host in ("127.0.0.1", "[::1]"):
                async with websockets.connect(
                    f"ws://{host}:{port}/cp-dual", subprotocols=[Subprotocol("ocpp1.6")]
                ) as connection:
                    reached.append(f"{host} {connection.subprotocol}")
            stop.set()
            await gateway
            return reached

    assert asyncio.run(main()) == ["127.0.0.1 ocpp1.6", "[::1] ocpp1.6"]
