"""End to end: readings in either energy form (interval energy or a cumulative register),
optional measurands stored as unknown, and conflicting resends, over real in-process gRPC
servers on real PostgreSQL.

Every expected figure is computed by hand here (the arithmetic is in the comments), never taken
from what a service answered. Energies that must sum exactly are dyadic (0.25, 0.5, 130.5);
other figures are compared with pytest.approx(rel=1e-12)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
import psycopg
import pytest
from energy.analytics.v1 import analytics_pb2, analytics_service_pb2, analytics_service_pb2_grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.timeconv import micros_to_timestamp as ts
from tests.conftest import InProcessServer, start_in_process

pytestmark = pytest.mark.e2e

MICROS = 1_000_000
SECOND = MICROS
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
CALL_TIMEOUT = 60.0

ACCEPTED = meter_service_pb2.INGEST_OUTCOME_ACCEPTED
DUPLICATE = meter_service_pb2.INGEST_OUTCOME_DUPLICATE
CONFLICT = meter_service_pb2.INGEST_OUTCOME_CONFLICT
V_ACCEPTED = vehicle_service_pb2.INGEST_OUTCOME_ACCEPTED
V_DUPLICATE = vehicle_service_pb2.INGEST_OUTCOME_DUPLICATE
V_CONFLICT = vehicle_service_pb2.INGEST_OUTCOME_CONFLICT


def moment(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """A UTC wall-clock time in microseconds since the epoch."""
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * MICROS


# 2026-11-10T00:00:00Z: the day of the synthetic series (tests 1-3).
D = moment(2026, 11, 10)


def exact(value: float) -> Any:
    return pytest.approx(value, rel=1e-12, abs=1e-12)


# --- wire helpers ---------------------------------------------------------------------------


def ts_micros(timestamp: Timestamp) -> int:
    assert timestamp.nanos % 1000 == 0, "times are kept to the microsecond"
    return timestamp.seconds * MICROS + timestamp.nanos // 1000


def duration(micros: int) -> Duration:
    seconds, rest = divmod(micros, MICROS)
    return Duration(seconds=seconds, nanos=rest * 1000)


def meter(
    meter_id: str,
    micros: int,
    *,
    kwh: float | None = None,
    register: float | None = None,
    voltage: float = 230.0,
) -> meter_pb2.MeterReading:
    """A meter reading; only the energy forms given are set."""
    reading = meter_pb2.MeterReading(meter_id=meter_id, voltage=voltage, timestamp=ts(micros))
    if kwh is not None:
        reading.kwh_consumed_ac = kwh
    if register is not None:
        reading.kwh_consumed_ac_register = register
    return reading


def vehicle(
    vehicle_id: str,
    charger_id: str,
    micros: int,
    *,
    dc: float | None = None,
    register: float | None = None,
    soc: float | None = 50.0,
    temp: float | None = 25.0,
) -> vehicle_pb2.VehicleReading:
    """A vehicle reading; only the fields given (not None) are set."""
    reading = vehicle_pb2.VehicleReading(
        vehicle_id=vehicle_id, charger_id=charger_id, timestamp=ts(micros)
    )
    if dc is not None:
        reading.kwh_delivered_dc = dc
    if register is not None:
        reading.kwh_delivered_dc_register = register
    if soc is not None:
        reading.soc = soc
    if temp is not None:
        reading.battery_temp = temp
    return reading


class Meter:
    """A client of a MeterService."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = meter_service_pb2_grpc.MeterServiceStub(channel)

    def stream(
        self, *messages: Sequence[meter_pb2.MeterReading]
    ) -> meter_service_pb2.IngestReadingsResponse:
        """One IngestReadings stream, one request message per given batch."""
        requests = [meter_service_pb2.IngestReadingsRequest(readings=batch) for batch in messages]
        response: meter_service_pb2.IngestReadingsResponse = self.stub.IngestReadings(
            iter(requests), timeout=CALL_TIMEOUT
        )
        return response

    def ingest_all(self, readings: Sequence[meter_pb2.MeterReading]) -> None:
        response = self.stream(readings)
        assert (response.accepted, response.duplicates, response.rejected, response.conflicts) == (
            len(readings),
            0,
            0,
            0,
        ), response

    def unary(self, reading: meter_pb2.MeterReading) -> meter_service_pb2.IngestReadingResponse:
        response: meter_service_pb2.IngestReadingResponse = self.stub.IngestReading(
            meter_service_pb2.IngestReadingRequest(reading=reading), timeout=CALL_TIMEOUT
        )
        return response

    def summarize(self, charger_id: str, start: int, end: int) -> meter_pb2.ConsumptionSummary:
        response = self.stub.SummarizeConsumption(
            meter_service_pb2.SummarizeConsumptionRequest(
                intervals=[
                    meter_pb2.ConsumptionInterval(
                        charger_id=charger_id, start_time=ts(start), end_time=ts(end)
                    )
                ]
            ),
            timeout=CALL_TIMEOUT,
        )
        assert len(response.summaries) == 1
        summary: meter_pb2.ConsumptionSummary = response.summaries[0]
        assert summary.charger_id == charger_id
        assert (ts_micros(summary.start_time), ts_micros(summary.end_time)) == (start, end)
        return summary

    def status(self, meter_id: str) -> meter_pb2.ChargerStatus:
        status: meter_pb2.ChargerStatus = self.stub.GetChargerStatus(
            meter_service_pb2.GetChargerStatusRequest(meter_id=meter_id), timeout=CALL_TIMEOUT
        )
        return status


class Vehicle:
    """A client of a VehicleService."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.stub = vehicle_service_pb2_grpc.VehicleServiceStub(channel)

    def stream(
        self, *messages: Sequence[vehicle_pb2.VehicleReading]
    ) -> vehicle_service_pb2.IngestReadingsResponse:
        requests = [vehicle_service_pb2.IngestReadingsRequest(readings=batch) for batch in messages]
        response: vehicle_service_pb2.IngestReadingsResponse = self.stub.IngestReadings(
            iter(requests), timeout=CALL_TIMEOUT
        )
        return response

    def ingest_all(self, readings: Sequence[vehicle_pb2.VehicleReading]) -> None:
        response = self.stream(readings)
        assert (response.accepted, response.duplicates, response.rejected, response.conflicts) == (
            len(readings),
            0,
            0,
            0,
        ), response

    def unary(
        self, reading: vehicle_pb2.VehicleReading
    ) -> vehicle_service_pb2.IngestReadingResponse:
        response: vehicle_service_pb2.IngestReadingResponse = self.stub.IngestReading(
            vehicle_service_pb2.IngestReadingRequest(reading=reading), timeout=CALL_TIMEOUT
        )
        return response

    def sessions(self, vehicle_id: str, start: int, end: int) -> list[vehicle_pb2.ChargingSession]:
        response = self.stub.ListChargingSessions(
            vehicle_service_pb2.ListChargingSessionsRequest(
                vehicle_id=vehicle_id, start_time=ts(start), end_time=ts(end)
            ),
            timeout=CALL_TIMEOUT,
        )
        return list(response.sessions)

    def status(self, vehicle_id: str) -> vehicle_pb2.VehicleStatus:
        status: vehicle_pb2.VehicleStatus = self.stub.GetVehicleStatus(
            vehicle_service_pb2.GetVehicleStatusRequest(vehicle_id=vehicle_id),
            timeout=CALL_TIMEOUT,
        )
        return status


@pytest.fixture
def meters(meter_server: InProcessServer) -> Iterator[Meter]:
    with meter_server.channel() as channel:
        yield Meter(channel)


@pytest.fixture
def vehicles(vehicle_server: InProcessServer) -> Iterator[Vehicle]:
    with vehicle_server.channel() as channel:
        yield Vehicle(channel)


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    """field → description of the google.rpc.BadRequest an INVALID_ARGUMENT carries."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT must carry a google.rpc.Status"
    found: dict[str, str] = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request), detail.type_url
        for violation in bad_request.field_violations:
            found[violation.field] = violation.description
    return found


# --- AnalyticsService -----------------------------------------------------------------------


class Analytics:
    """A started AnalyticsService and a client of it."""

    def __init__(self, server: InProcessServer) -> None:
        self.server = server
        self._channel = server.channel()
        self.stub = analytics_service_pb2_grpc.AnalyticsServiceStub(self._channel)

    def performance(
        self, vehicle_id: str, *, end: int, window: int
    ) -> analytics_pb2.VehiclePerformance:
        request = analytics_service_pb2.GetVehiclePerformanceRequest(
            vehicle_id=vehicle_id, end_time=ts(end), window=duration(window)
        )
        response: analytics_pb2.VehiclePerformance = self.stub.GetVehiclePerformance(
            request, timeout=CALL_TIMEOUT
        )
        assert response.vehicle_id == vehicle_id
        return response

    def close(self) -> None:
        self._channel.close()
        self.server.running.shutdown(5)


StartAnalytics = Callable[..., Analytics]


@pytest.fixture
def analytics_factory(
    database_url: str, meter_server: InProcessServer, vehicle_server: InProcessServer
) -> Iterator[StartAnalytics]:
    """Starts AnalyticsService (settings overridable) against the fixture servers."""
    started: list[Analytics] = []

    def start(**overrides: Any) -> Analytics:
        server = start_in_process(
            "analytics",
            database_url,  # unused: AnalyticsService owns no tables
            meter_target=meter_server.target,
            vehicle_target=vehicle_server.target,
            **overrides,
        )
        analytics = Analytics(server)
        started.append(analytics)
        return analytics

    yield start
    for analytics in started:
        analytics.close()


def m(minute: int, second: int = 0) -> int:
    """D + minutes (+ seconds)."""
    return D + minute * MINUTE + second * SECOND


# --- 1. meter registers: reset, out-of-order arrival, look-back, silence --------------------

# Minutes 1..6: the register climbs, resets to 0 at minute 4 and climbs again.
RESET_SERIES = {1: 130.0, 2: 130.25, 3: 130.5, 4: 0.0, 5: 0.5, 6: 1.0}
ARRIVAL_ORDER = (1, 2, 4, 3, 6, 5)


def check_reset_series(meters: Meter, meter_id: str) -> None:
    # [minute 1, minute 7), in time order:
    #   m1 130.0   no earlier register: unknown
    #   m2 130.25  130.25 - 130.0 = 0.25
    #   m3 130.5   130.5 - 130.25 = 0.25
    #   m4 0.0     a decrease: a reset, counted from zero = 0.0
    #   m5 0.5     0.5 - 0.0 = 0.5
    #   m6 1.0     1.0 - 0.5 = 0.5
    # kwh = 0.25 + 0.25 + 0.0 + 0.5 + 0.5 = 1.5; 6 readings, 1 unknown.
    summary = meters.summarize(meter_id, m(1), m(7))
    assert summary.kwh_consumed_ac == 1.5
    assert summary.reading_count == 6
    assert summary.unknown_energy_count == 1

    # [minute 3, minute 7): m3 looks back to m2 (before the start): 0.25; then 0.0 + 0.5 + 0.5.
    # kwh = 0.25 + 0.0 + 0.5 + 0.5 = 1.25; 4 readings, none unknown.
    summary = meters.summarize(meter_id, m(3), m(7))
    assert summary.kwh_consumed_ac == 1.25
    assert (summary.reading_count, summary.unknown_energy_count) == (4, 0)

    # [minute 4, minute 5): only the reset reading; 0.0 counted from zero is known, not unknown.
    summary = meters.summarize(meter_id, m(4), m(5))
    assert summary.kwh_consumed_ac == 0.0
    assert (summary.reading_count, summary.unknown_energy_count) == (1, 0)

    # [minute 1, minute 2): only the first reading, whose energy is unknown: kwh 0, not 130.
    summary = meters.summarize(meter_id, m(1), m(2))
    assert summary.kwh_consumed_ac == 0.0
    assert (summary.reading_count, summary.unknown_energy_count) == (1, 1)

    # [minute 5, minute 7): 0.5 + 0.5 = 1.0 (m5 looks back to m4, arrived after m5's arrival).
    summary = meters.summarize(meter_id, m(5), m(7))
    assert summary.kwh_consumed_ac == 1.0
    assert (summary.reading_count, summary.unknown_energy_count) == (2, 0)


def test_meter_register_reset_and_late_arrivals_in_separate_calls(meters: Meter) -> None:
    """Each reading in a stream of its own, committed in the order 1,2,4,3,6,5: the energy
    follows time order, not arrival order."""
    for minute in ARRIVAL_ORDER:
        meters.ingest_all([meter("CH-RESET", m(minute), register=RESET_SERIES[minute])])
    check_reset_series(meters, "CH-RESET")

    # The status is the newest reading by time (minute 6, which arrived before minute 5),
    # as sent: its register, no interval energy.
    status = meters.status("CH-RESET")
    assert ts_micros(status.timestamp) == m(6)
    assert status.HasField("kwh_consumed_ac_register")
    assert status.kwh_consumed_ac_register == 1.0
    assert not status.HasField("kwh_consumed_ac")


def test_meter_register_reset_and_late_arrivals_in_one_stream(meters: Meter) -> None:
    """The same series as six messages of one stream, in the order 1,2,4,3,6,5."""
    response = meters.stream(
        *[
            [meter("CH-RESET1", m(minute), register=RESET_SERIES[minute])]
            for minute in ARRIVAL_ORDER
        ]
    )
    assert (response.accepted, response.duplicates, response.rejected, response.conflicts) == (
        6,
        0,
        0,
        0,
    )
    check_reset_series(meters, "CH-RESET1")


def test_meter_register_after_a_silence_is_unknown(meters: Meter) -> None:
    # minute 0:       5.0   first: unknown
    # minute 16:      5.5   960 s after the previous > 900 s: unknown (not 0.5)
    # minute 31:      6.0   exactly 900 s after minute 16 (within the reach): 6.0 - 5.5 = 0.5
    # minute 46:01:   6.25  901 s after minute 31: unknown
    meters.ingest_all(
        [
            meter("CH-SILENT", m(0), register=5.0),
            meter("CH-SILENT", m(16), register=5.5),
            meter("CH-SILENT", m(31), register=6.0),
            meter("CH-SILENT", m(46, 1), register=6.25),
        ]
    )
    # [0, 60): kwh = 0.5; 4 readings; unknown: minutes 0, 16, 46:01 = 3.
    summary = meters.summarize("CH-SILENT", m(0), m(60))
    assert summary.kwh_consumed_ac == 0.5
    assert (summary.reading_count, summary.unknown_energy_count) == (4, 3)

    # [16, 17): the reading after the silence alone: it looks back 900 s and finds nothing.
    summary = meters.summarize("CH-SILENT", m(16), m(17))
    assert summary.kwh_consumed_ac == 0.0
    assert (summary.reading_count, summary.unknown_energy_count) == (1, 1)

    # [31, 32): looks back exactly 900 s to minute 16: 0.5, known.
    summary = meters.summarize("CH-SILENT", m(31), m(32))
    assert summary.kwh_consumed_ac == 0.5
    assert (summary.reading_count, summary.unknown_energy_count) == (1, 0)


def test_meter_reach_is_the_setting(database_url: str) -> None:
    """MAX_READING_INTERVAL_SECONDS = 1200: the 960 s silence is now within reach."""
    server = start_in_process("meter", database_url, max_reading_interval_seconds=1200.0)
    try:
        with server.channel() as channel:
            meters = Meter(channel)
            meters.ingest_all(
                [
                    meter("CH-REACH", m(0), register=5.0),
                    meter("CH-REACH", m(16), register=5.5),
                ]
            )
            # 960 s <= 1200 s: 5.5 - 5.0 = 0.5; only the first is unknown.
            summary = meters.summarize("CH-REACH", m(0), m(60))
            assert summary.kwh_consumed_ac == 0.5
            assert (summary.reading_count, summary.unknown_energy_count) == (2, 1)
    finally:
        server.running.shutdown(5)


# --- 2. a vehicle counter that restarts each session -----------------------------------------


def test_vehicle_register_restarting_each_session(vehicles: Vehicle) -> None:
    # Session A on CH-1: minutes 0, 1, 2, counter 0.5, 1.0, 1.5.
    # Session B on CH-1: minutes 22, 23 (20 minutes after A's last), counter 0.25, 0.75.
    vehicles.ingest_all(
        [
            vehicle("VH-1", "CH-1", m(0), register=0.5),
            vehicle("VH-1", "CH-1", m(1), register=1.0),
            vehicle("VH-1", "CH-1", m(2), register=1.5),
            vehicle("VH-1", "CH-1", m(22), register=0.25),
            vehicle("VH-1", "CH-1", m(23), register=0.75),
        ]
    )
    sessions = vehicles.sessions("VH-1", m(-1), m(60))
    assert len(sessions) == 2
    a, b = sessions
    # A: first unknown; 1.0 - 0.5 = 0.5; 1.5 - 1.0 = 0.5 → kwh 1.0, unknown 1. A reading of
    # unknown energy spans no time: the session starts at its timestamp, minute 0.
    assert a.charger_id == "CH-1"
    assert (ts_micros(a.start_time), ts_micros(a.end_time)) == (m(0), m(2))
    assert a.kwh_delivered_dc == 1.0
    assert (a.reading_count, a.unknown_energy_count) == (3, 1)
    # B: minute 22 is 1200 s after minute 2 > 900 s (the reach): a new session, and its energy
    # unknown (not the reset value 0.25); 0.75 - 0.25 = 0.5 → kwh 0.5, unknown 1.
    assert b.charger_id == "CH-1"
    assert (ts_micros(b.start_time), ts_micros(b.end_time)) == (m(22), m(23))
    assert b.kwh_delivered_dc == 0.5
    assert (b.reading_count, b.unknown_energy_count) == (2, 1)
    # Every reading reported 25 °C.
    assert (a.battery_temp_sum, a.battery_temp_count) == (75.0, 3)
    assert (b.battery_temp_sum, b.battery_temp_count) == (50.0, 2)

    # A window starting a second before B: B's first looks back 900 s (to minute 7), finds
    # nothing.
    (only_b,) = vehicles.sessions("VH-1", m(21, 59), m(60))
    assert only_b.kwh_delivered_dc == 0.5
    assert (only_b.reading_count, only_b.unknown_energy_count) == (2, 1)
    # A window starting at B's first reading: that reading belongs to the window before.
    (rest_of_b,) = vehicles.sessions("VH-1", m(22), m(60))
    assert (rest_of_b.reading_count, rest_of_b.unknown_energy_count) == (1, 0)
    assert rest_of_b.kwh_delivered_dc == 0.5

    # The status is the newest reading as sent: its counter, no interval energy.
    status = vehicles.status("VH-1")
    assert ts_micros(status.timestamp) == m(23)
    assert status.kwh_delivered_dc_register == 0.75
    assert not status.HasField("kwh_delivered_dc")


def test_vehicle_register_restart_within_reach_counts_from_zero(vehicles: Vehicle) -> None:
    # Minutes 0, 1: 0.5, 1.0; then 10 minutes later (600 s, within the 900 s reach) minutes 11,
    # 12: 0.25, 0.75.
    vehicles.ingest_all(
        [
            vehicle("VH-2", "CH-2", m(0), register=0.5),
            vehicle("VH-2", "CH-2", m(1), register=1.0),
            vehicle("VH-2", "CH-2", m(11), register=0.25),
            vehicle("VH-2", "CH-2", m(12), register=0.75),
        ]
    )
    # Minute 11's interval reaches back to minute 1 (within the reach): no uncovered gap, one
    # session, minute 0 to 12. Unknown + 0.5; 0.25 < 1.0 is a restart, counted from zero: 0.25;
    # then 0.75 - 0.25 = 0.5 → 1.25.
    (session,) = vehicles.sessions("VH-2", m(-1), m(60))
    assert (ts_micros(session.start_time), ts_micros(session.end_time)) == (m(0), m(12))
    assert (session.kwh_delivered_dc, session.reading_count) == (1.25, 4)
    assert session.unknown_energy_count == 1


def test_vehicle_register_counts_again_on_each_charger(vehicles: Vehicle) -> None:
    # A lifetime register: minutes 0, 1 on CH-A: 10.0, 10.5; minutes 2, 3 on CH-B: 10.75,
    # 11.0; minute 4 back on CH-A: 11.25. A difference is taken from the previous reading on
    # the same charger only: the first on CH-B has unknown energy (10.75 - 10.5 was charged
    # partly on CH-A, partly on CH-B: nobody knows), and so has minute 4 (the vehicle reported
    # twice on CH-B since minute 1: 11.25 - 10.5 would count CH-B's 0.25 again).
    vehicles.ingest_all(
        [
            vehicle("VH-3", "CH-A", m(0), register=10.0),
            vehicle("VH-3", "CH-A", m(1), register=10.5),
            vehicle("VH-3", "CH-B", m(2), register=10.75),
            vehicle("VH-3", "CH-B", m(3), register=11.0),
            vehicle("VH-3", "CH-A", m(4), register=11.25),
        ]
    )
    first_a, on_b, back_on_a = vehicles.sessions("VH-3", m(-1), m(60))
    # Each session's first reading has unknown energy, so its span starts at it.
    assert (first_a.charger_id, first_a.kwh_delivered_dc, first_a.unknown_energy_count) == (
        "CH-A",
        0.5,
        1,
    )
    assert (ts_micros(first_a.start_time), ts_micros(first_a.end_time)) == (m(0), m(1))
    assert (on_b.charger_id, on_b.kwh_delivered_dc, on_b.unknown_energy_count) == ("CH-B", 0.25, 1)
    assert (ts_micros(on_b.start_time), ts_micros(on_b.end_time)) == (m(2), m(3))
    # Back on CH-A: a new session (it was elsewhere), of one reading of unknown energy.
    assert (back_on_a.charger_id, back_on_a.kwh_delivered_dc) == ("CH-A", 0.0)
    assert back_on_a.unknown_energy_count == 1
    assert (ts_micros(back_on_a.start_time), ts_micros(back_on_a.end_time)) == (m(4), m(4))


def test_a_stray_reading_elsewhere_leaves_the_register_energy_on_its_charger(
    vehicles: Vehicle,
) -> None:
    # VH-S charges on CH-A, its gateway naming CH-B once (minute 2): CH-A 10.0, 10.5, CH-B
    # 11.0, CH-A 11.5, 12.0. CH-A's session goes on across the stray reading, minute 3 taking
    # its difference from minute 1 (11.5 - 10.5 = 1.0); the stray has no previous reading on
    # CH-B: unknown energy, no time. 0.5 + 1.0 + 0.5 = 2.0, all the register rose, once.
    vehicles.ingest_all(
        [
            vehicle("VH-S", "CH-A", m(0), register=10.0),
            vehicle("VH-S", "CH-A", m(1), register=10.5),
            vehicle("VH-S", "CH-B", m(2), register=11.0),
            vehicle("VH-S", "CH-A", m(3), register=11.5),
            vehicle("VH-S", "CH-A", m(4), register=12.0),
        ]
    )
    on_a, stray = vehicles.sessions("VH-S", m(-1), m(60))
    assert (on_a.charger_id, on_a.kwh_delivered_dc, on_a.reading_count) == ("CH-A", 2.0, 4)
    assert (ts_micros(on_a.start_time), ts_micros(on_a.end_time)) == (m(0), m(4))
    assert (stray.charger_id, stray.kwh_delivered_dc, stray.unknown_energy_count) == (
        "CH-B",
        0.0,
        1,
    )
    assert (ts_micros(stray.start_time), ts_micros(stray.end_time)) == (m(2), m(2))


# --- 3. mixed forms on one charger -----------------------------------------------------------


def test_meter_mixed_interval_and_register_readings(meters: Meter) -> None:
    meters.ingest_all(
        [
            meter("CH-MIX", m(1), kwh=0.25),
            meter("CH-MIX", m(2), kwh=0.25),
            meter("CH-MIX", m(3), register=10.0),
            meter("CH-MIX", m(4), register=10.5),
            meter("CH-MIX", m(5), kwh=0.25),
            meter("CH-MIX", m(6)),  # neither form: interval energy 0
        ]
    )
    # 0.25 + 0.25 + (unknown: the first register) + (10.5 - 10.0 = 0.5) + 0.25 + 0 = 1.25.
    summary = meters.summarize("CH-MIX", m(0), m(10))
    assert summary.kwh_consumed_ac == 1.25
    assert (summary.reading_count, summary.unknown_energy_count) == (6, 1)

    # The newest reading had neither form: status shows interval energy 0, no register.
    status = meters.status("CH-MIX")
    assert ts_micros(status.timestamp) == m(6)
    assert status.HasField("kwh_consumed_ac")
    assert status.kwh_consumed_ac == 0.0
    assert not status.HasField("kwh_consumed_ac_register")


def test_vehicle_mixed_interval_and_register_readings(vehicles: Vehicle) -> None:
    vehicles.ingest_all(
        [
            vehicle("VH-MIX", "CH-MIX", m(1), dc=0.25),
            vehicle("VH-MIX", "CH-MIX", m(2), dc=0.25),
            vehicle("VH-MIX", "CH-MIX", m(3), register=10.0),
            vehicle("VH-MIX", "CH-MIX", m(4), register=10.5),
            vehicle("VH-MIX", "CH-MIX", m(5), dc=0.25),
        ]
    )
    # 0.25 + 0.25 + unknown + 0.5 + 0.25 = 1.25; one session of 5, 1 unknown.
    (session,) = vehicles.sessions("VH-MIX", m(0), m(10))
    assert session.kwh_delivered_dc == 1.25
    assert (session.reading_count, session.unknown_energy_count) == (5, 1)


# --- 4. field case: a register sent as a register --------------------------------------------


def test_register_sent_as_register_correlates_by_difference(
    meters: Meter, vehicles: Vehicle, analytics_factory: StartAnalytics
) -> None:
    noon = moment(2026, 11, 21, 12)
    # CHG-REG: register 120.0 + 0.2 k at 12:00 + k minutes, k = 1..30 (120.2 … 126.0).
    meters.ingest_all(
        [
            meter("CHG-REG", noon + k * MINUTE, register=round(120.0 + 0.2 * k, 10))
            for k in range(1, 31)
        ]
    )
    # VH-REG on CHG-REG: 0.18 kWh interval energy at the same 30 minutes.
    vehicles.ingest_all(
        [vehicle("VH-REG", "CHG-REG", noon + k * MINUTE, dc=0.18) for k in range(1, 31)]
    )
    analytics = analytics_factory()
    performance = analytics.performance("VH-REG", end=noon + HOUR, window=HOUR)

    # One session spanning 12:00..12:30 (its first reading's interval starts a minute before).
    # The meter's 30 register readings cover the same minutes; the first (12:00-12:01) has no
    # previous (unknown), the others add 0.2 each: AC = 126.0 - 120.2 = 29 x 0.2 = 5.8, over
    # 29 of the 30 minutes (coverage 29/30). DC = 30 x 0.18 = 5.4.
    assert performance.total_energy_consumed_ac == exact(5.8)
    assert performance.total_energy_delivered_dc == exact(5.4)
    assert performance.efficiency_ratio == exact(5.4 / 5.8)
    # AC - DC = 5.8 - 5.4 = 0.4 (a difference of inexact sums: to 1e-12 kWh).
    assert performance.energy_loss_kwh == pytest.approx(0.4, abs=1e-12)
    # Summing the registers themselves would give 30 x 120 + 0.2 x (1 + … + 30)
    # = 3600 + 0.2 x 465 = 3693 kWh: nowhere near.
    assert performance.total_energy_consumed_ac < 10.0
    assert (performance.data_points, performance.meter_data_points) == (30, 29)
    assert performance.ac_coverage == exact(29 / 30)
    assert list(performance.quality_flags) == []  # 0.967 is not below 0.95
    (session,) = performance.sessions
    assert session.charger_id == "CHG-REG"
    assert (ts_micros(session.start_time), ts_micros(session.end_time)) == (
        noon,
        noon + 30 * MINUTE,
    )
    assert session.energy_consumed_ac == exact(5.8)

    # The same through MeterService directly: 30 readings, 1 unknown.
    summary = meters.summarize("CHG-REG", noon, noon + HOUR)
    assert summary.kwh_consumed_ac == exact(5.8)
    assert (summary.reading_count, summary.unknown_energy_count) == (30, 1)


# --- 5. field case: a conflicting duplicate --------------------------------------------------


def test_meter_conflicting_resend_is_not_stored(meters: Meter) -> None:
    at = moment(2026, 11, 20, 14)
    first = meters.unary(meter("CHG-DUP", at, kwh=0.20, voltage=230.0))
    assert (first.duplicate, first.outcome) == (False, ACCEPTED)
    assert not first.HasField("conflict")

    again = meters.unary(meter("CHG-DUP", at, kwh=0.20, voltage=230.0))
    assert (again.duplicate, again.outcome) == (True, DUPLICATE)
    assert not again.HasField("conflict")

    other = meters.unary(meter("CHG-DUP", at, kwh=0.55, voltage=231.0))
    assert (other.duplicate, other.outcome) == (False, CONFLICT)
    assert other.conflict.index == 0
    assert other.conflict.field == "kwh_consumed_ac"
    # Every differing field, stored and sent.
    for shown in ("0.2", "0.55", "voltage", "230", "231"):
        assert shown in other.conflict.description, other.conflict.description

    streamed = meters.stream([meter("CHG-DUP", at, kwh=0.90, voltage=229.0)])
    assert (streamed.accepted, streamed.duplicates, streamed.rejected, streamed.conflicts) == (
        0,
        0,
        0,
        1,
    )
    (conflict,) = streamed.conflicting_readings
    assert conflict.index == 0
    assert conflict.field == "kwh_consumed_ac"
    for shown in ("0.2", "0.9", "230", "229"):
        assert shown in conflict.description, conflict.description

    # A register reading at the same key: differs in both energy forms (first: kwh_consumed_ac).
    as_register = meters.unary(meter("CHG-DUP", at, register=0.2, voltage=230.0))
    assert (as_register.duplicate, as_register.outcome) == (False, CONFLICT)
    assert as_register.conflict.field == "kwh_consumed_ac"
    assert "kwh_consumed_ac_register" in as_register.conflict.description

    # First write wins.
    status = meters.status("CHG-DUP")
    assert ts_micros(status.timestamp) == at
    assert (status.kwh_consumed_ac, status.voltage) == (0.20, 230.0)
    assert not status.HasField("kwh_consumed_ac_register")
    summary = meters.summarize("CHG-DUP", at, at + MINUTE)
    assert (summary.kwh_consumed_ac, summary.reading_count) == (0.20, 1)


def test_meter_conflicts_within_a_stream_and_their_indexes(meters: Meter) -> None:
    at = moment(2026, 11, 20, 15)
    meters.ingest_all([meter("CHG-DUP2", at, kwh=0.25)])
    # Message 1: index 0 new (at+1m), index 1 conflicts with the stored 0.25 at `at`.
    # Message 2: index 2 repeats index 0 (a duplicate within the stream), index 3 has index 0's
    # key with another value (a conflict judged against the kept index 0), index 4 repeats the
    # stored reading (a duplicate).
    response = meters.stream(
        [meter("CHG-DUP2", at + MINUTE, kwh=0.5), meter("CHG-DUP2", at, kwh=0.75)],
        [
            meter("CHG-DUP2", at + MINUTE, kwh=0.5),
            meter("CHG-DUP2", at + MINUTE, kwh=1.5),
            meter("CHG-DUP2", at, kwh=0.25),
        ],
    )
    assert (response.accepted, response.duplicates, response.rejected, response.conflicts) == (
        1,
        2,
        0,
        2,
    )
    indexes = sorted((c.index, c.field) for c in response.conflicting_readings)
    assert indexes == [(1, "kwh_consumed_ac"), (3, "kwh_consumed_ac")]
    by_index = {c.index: c.description for c in response.conflicting_readings}
    assert "0.25" in by_index[1] and "0.75" in by_index[1]
    assert "0.5" in by_index[3] and "1.5" in by_index[3]
    # Stored: 0.25 + 0.5 = 0.75.
    summary = meters.summarize("CHG-DUP2", at, at + HOUR)
    assert (summary.kwh_consumed_ac, summary.reading_count) == (0.75, 2)


def test_vehicle_conflicting_resend_is_not_stored(vehicles: Vehicle) -> None:
    at = moment(2026, 11, 20, 14)
    reading = vehicle("VH-DUP", "CHG-DUP", at, dc=0.25, soc=50.0, temp=30.0)
    first = vehicles.unary(reading)
    assert (first.duplicate, first.outcome) == (False, V_ACCEPTED)

    again = vehicles.unary(reading)
    assert (again.duplicate, again.outcome) == (True, V_DUPLICATE)

    # Only soc differs.
    other = vehicles.unary(vehicle("VH-DUP", "CHG-DUP", at, dc=0.25, soc=51.0, temp=30.0))
    assert (other.duplicate, other.outcome) == (False, V_CONFLICT)
    assert other.conflict.field == "soc"
    assert "50" in other.conflict.description and "51" in other.conflict.description

    # soc unset where 50 is stored: a conflict too (unknown is not 50).
    unknown = vehicles.unary(vehicle("VH-DUP", "CHG-DUP", at, dc=0.25, soc=None, temp=30.0))
    assert (unknown.duplicate, unknown.outcome) == (False, V_CONFLICT)
    assert unknown.conflict.field == "soc"

    streamed = vehicles.stream([vehicle("VH-DUP", "CHG-DUP", at, dc=0.25, soc=52.0, temp=30.0)])
    assert (streamed.accepted, streamed.duplicates, streamed.rejected, streamed.conflicts) == (
        0,
        0,
        0,
        1,
    )
    (conflict,) = streamed.conflicting_readings
    assert (conflict.index, conflict.field) == (0, "soc")

    status = vehicles.status("VH-DUP")
    assert (status.soc, status.kwh_delivered_dc, status.battery_temp) == (50.0, 0.25, 30.0)


# --- 6. conflicts across concurrent streams --------------------------------------------------


def test_concurrent_conflicting_streams_store_one_value_per_key(
    meter_server: InProcessServer,
) -> None:
    threads_n, keys_n = 8, 200
    base = moment(2026, 11, 22)
    keys = [base + i * MINUTE for i in range(keys_n)]
    barrier = threading.Barrier(threads_n)
    results: dict[int, meter_service_pb2.IngestReadingsResponse] = {}
    errors: list[BaseException] = []

    def send(k: int) -> None:
        try:
            value = 0.25 * (k + 1)  # thread k's value: 0.25, 0.5, …, 2.0
            readings = [meter("CHG-RACE", key, kwh=value) for key in keys]
            # Four messages of 50, each starting where another thread's order differs:
            # thread k starts at a rotated offset so the streams overlap key by key.
            rotated = readings[k * 25 :] + readings[: k * 25]
            messages = [rotated[i : i + 50] for i in range(0, keys_n, 50)]
            with meter_server.channel() as channel:
                client = Meter(channel)
                barrier.wait(timeout=30)
                results[k] = client.stream(*messages)
        except BaseException as error:  # reported below
            errors.append(error)

    workers = [threading.Thread(target=send, args=(k,)) for k in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors
    assert sorted(results) == list(range(threads_n))

    accepted = {k: r.accepted for k, r in results.items()}
    # Every key stored exactly once, by one stream.
    assert sum(accepted.values()) == keys_n
    # Every other sending of the key is a conflict: 8 x 200 = 1600 in all.
    assert sum(r.accepted + r.conflicts for r in results.values()) == threads_n * keys_n
    assert sum(r.duplicates for r in results.values()) == 0
    assert sum(r.rejected for r in results.values()) == 0
    for k, response in results.items():
        assert response.accepted + response.conflicts == keys_n, (k, response)
        for conflict in response.conflicting_readings:
            assert conflict.field == "kwh_consumed_ac"
            assert f"sent {0.25 * (k + 1):g}" in conflict.description

    with psycopg.connect(meter_server.database_url) as connection:
        rows = connection.execute(
            "SELECT read_time, kwh_consumed_ac, kwh_consumed_ac_register"
            " FROM meter.meter_readings WHERE meter_id = 'CHG-RACE'"
        ).fetchall()
    assert len(rows) == keys_n
    assert len({row[0] for row in rows}) == keys_n
    assert all(row[2] is None for row in rows)
    stored_per_thread = {k: 0 for k in range(threads_n)}
    for _, kwh, _ in rows:
        k = int(kwh / 0.25) - 1
        assert kwh == 0.25 * (k + 1), kwh
        stored_per_thread[k] += 1
    # The keys a stream got accepted hold that stream's value.
    assert stored_per_thread == accepted


# --- 7. field case: a missing measurand ------------------------------------------------------


def test_missing_measurands_are_unknown_not_zero(
    vehicles: Vehicle, vehicle_server: InProcessServer, analytics_factory: StartAnalytics
) -> None:
    eight = moment(2026, 11, 23, 8)
    vehicles.ingest_all(
        [
            vehicle("VH-MISS", "CHG-MISS", eight + 1 * MINUTE, dc=0.18, soc=60.0, temp=30.0),
            vehicle("VH-MISS", "CHG-MISS", eight + 2 * MINUTE, dc=0.18, soc=61.0, temp=30.0),
            vehicle("VH-MISS", "CHG-MISS", eight + 3 * MINUTE, dc=0.18, soc=None, temp=None),
            vehicle("VH-MISS", "CHG-MISS", eight + 4 * MINUTE, dc=0.18, soc=None, temp=None),
        ]
    )
    status = vehicles.status("VH-MISS")
    assert ts_micros(status.timestamp) == eight + 4 * MINUTE
    assert not status.HasField("soc")
    assert not status.HasField("battery_temp")
    assert status.kwh_delivered_dc == 0.18

    (session,) = vehicles.sessions("VH-MISS", eight, eight + HOUR)
    # Temperatures reported: 30 + 30 = 60 over 2 readings (not 4).
    assert (session.battery_temp_sum, session.battery_temp_count) == (60.0, 2)
    assert session.reading_count == 4
    assert session.kwh_delivered_dc == pytest.approx(4 * 0.18, rel=1e-12)

    analytics = analytics_factory()
    performance = analytics.performance("VH-MISS", end=eight + HOUR, window=HOUR)
    # 60 / 2 = 30, not 60 / 4 = 15.
    assert performance.avg_battery_temperature == 30.0
    assert performance.data_points == 4

    with psycopg.connect(vehicle_server.database_url) as connection:
        rows = connection.execute(
            "SELECT soc, battery_temp, kwh_delivered_dc, kwh_delivered_dc_register"
            " FROM vehicle.vehicle_readings WHERE vehicle_id = 'VH-MISS' ORDER BY read_time"
        ).fetchall()
    assert rows == [
        (60.0, 30.0, 0.18, None),
        (61.0, 30.0, 0.18, None),
        (None, None, 0.18, None),
        (None, None, 0.18, None),
    ]


# --- 8. validation --------------------------------------------------------------------------


def test_meter_both_energy_forms_are_refused(meters: Meter) -> None:
    at = moment(2026, 11, 24, 9)
    with pytest.raises(grpc.RpcError) as caught:
        meters.unary(meter("CH-VAL", at, kwh=0.25, register=100.0))
    violations = field_violations(caught.value)
    assert "reading.kwh_consumed_ac" in violations
    assert "reading.kwh_consumed_ac_register" in violations


def test_meter_register_above_its_bound_is_refused(meters: Meter) -> None:
    at = moment(2026, 11, 24, 9)
    with pytest.raises(grpc.RpcError) as caught:
        meters.unary(meter("CH-VAL", at, register=1e9 + 1))
    violations = field_violations(caught.value)
    assert list(violations) == ["reading.kwh_consumed_ac_register"]
    assert "at most 1000000000 kWh" in violations["reading.kwh_consumed_ac_register"]
    assert "1000000001" in violations["reading.kwh_consumed_ac_register"]

    with pytest.raises(grpc.RpcError) as caught:
        meters.unary(meter("CH-VAL", at, register=-0.25))
    assert list(field_violations(caught.value)) == ["reading.kwh_consumed_ac_register"]

    # The bounds themselves are accepted: 1e9 and 0.
    assert meters.unary(meter("CH-VAL", at, register=1e9)).outcome == ACCEPTED
    assert meters.unary(meter("CH-VAL", at + MINUTE, register=0.0)).outcome == ACCEPTED
    status = meters.status("CH-VAL")
    assert status.HasField("kwh_consumed_ac_register")
    assert status.kwh_consumed_ac_register == 0.0


def test_meter_stream_rejects_only_the_reading_with_both_forms(meters: Meter) -> None:
    at = moment(2026, 11, 24, 10)
    response = meters.stream(
        [
            meter("CH-VALS", at, register=7.0),
            meter("CH-VALS", at + MINUTE, kwh=0.25, register=7.25),
            meter("CH-VALS", at + 2 * MINUTE, register=7.5),
        ]
    )
    assert (response.accepted, response.duplicates, response.rejected, response.conflicts) == (
        2,
        0,
        1,
        0,
    )
    (rejection,) = response.rejections
    assert rejection.index == 1
    assert rejection.field in ("kwh_consumed_ac", "kwh_consumed_ac_register")
    # Stored: the registers 7.0 and 7.5 (two minutes apart): unknown, then 0.5.
    summary = meters.summarize("CH-VALS", at, at + HOUR)
    assert summary.kwh_consumed_ac == 0.5
    assert (summary.reading_count, summary.unknown_energy_count) == (2, 1)


def test_vehicle_both_energy_forms_are_refused(vehicles: Vehicle) -> None:
    at = moment(2026, 11, 24, 9)
    with pytest.raises(grpc.RpcError) as caught:
        vehicles.unary(vehicle("VH-VAL", "CH-VAL", at, dc=0.25, register=3.0))
    violations = field_violations(caught.value)
    assert "reading.kwh_delivered_dc" in violations
    assert "reading.kwh_delivered_dc_register" in violations

    with pytest.raises(grpc.RpcError) as caught:
        vehicles.unary(vehicle("VH-VAL", "CH-VAL", at, register=1e9 + 1))
    violations = field_violations(caught.value)
    assert list(violations) == ["reading.kwh_delivered_dc_register"]
    assert "at most 1000000000 kWh" in violations["reading.kwh_delivered_dc_register"]

    response = vehicles.stream(
        [
            vehicle("VH-VAL", "CH-VAL", at, register=3.0),
            vehicle("VH-VAL", "CH-VAL", at + MINUTE, dc=0.25, register=3.25),
            vehicle("VH-VAL", "CH-VAL", at + 2 * MINUTE, register=3.5),
        ]
    )
    assert (response.accepted, response.rejected) == (2, 1)
    assert [r.index for r in response.rejections] == [1]


# --- more edges ----------------------------------------------------------------------------


def test_a_repeated_conflict_in_one_stream_is_judged_against_the_stored_reading(
    meters: Meter,
) -> None:
    at = moment(2026, 11, 25, 10)
    meters.ingest_all([meter("CHG-KEPT", at, kwh=0.25)])
    # One message: 0.75 twice (each against the stored 0.25: two conflicts, the second is not a
    # duplicate of the first, which was not kept), then 0.25 (the stored one: a duplicate).
    # A new key at+1m: 0.5, then 1.5 in the same message (a conflict with the kept 0.5).
    response = meters.stream(
        [
            meter("CHG-KEPT", at, kwh=0.75),
            meter("CHG-KEPT", at, kwh=0.75),
            meter("CHG-KEPT", at, kwh=0.25),
            meter("CHG-KEPT", at + MINUTE, kwh=0.5),
            meter("CHG-KEPT", at + MINUTE, kwh=1.5),
        ]
    )
    assert (response.accepted, response.duplicates, response.rejected, response.conflicts) == (
        1,
        1,
        0,
        3,
    )
    assert sorted(c.index for c in response.conflicting_readings) == [0, 1, 4]
    # Stored: 0.25 + 0.5 = 0.75.
    summary = meters.summarize("CHG-KEPT", at, at + HOUR)
    assert (summary.kwh_consumed_ac, summary.reading_count) == (0.75, 2)


def test_resends_with_unset_fields_are_duplicates(meters: Meter, vehicles: Vehicle) -> None:
    at = moment(2026, 11, 25, 11)
    # A register reading resent as sent: a duplicate (kwh_consumed_ac NULL both times).
    assert meters.unary(meter("CHG-RS", at, register=42.5)).outcome == ACCEPTED
    again = meters.unary(meter("CHG-RS", at, register=42.5))
    assert (again.duplicate, again.outcome) == (True, DUPLICATE)
    # Neither form is interval energy 0: the same as an explicit 0.0.
    assert meters.unary(meter("CHG-RS", at + MINUTE)).outcome == ACCEPTED
    zero = meters.unary(meter("CHG-RS", at + MINUTE, kwh=0.0))
    assert (zero.duplicate, zero.outcome) == (True, DUPLICATE)
    # A different register value is a conflict naming the register.
    other = meters.unary(meter("CHG-RS", at, register=42.75))
    assert (other.outcome, other.conflict.field) == (CONFLICT, "kwh_consumed_ac_register")

    # A vehicle reading without soc or temperature resent: a duplicate (unknown = unknown).
    bare = vehicle("VH-RS", "CHG-RS", at, register=1.5, soc=None, temp=None)
    assert vehicles.unary(bare).outcome == V_ACCEPTED
    resent = vehicles.unary(bare)
    assert (resent.duplicate, resent.outcome) == (True, V_DUPLICATE)
    streamed = vehicles.stream([bare])
    assert (streamed.accepted, streamed.duplicates, streamed.conflicts) == (0, 1, 0)
    # The same reading now reporting a temperature: a conflict on battery_temp.
    warmer = vehicles.unary(vehicle("VH-RS", "CHG-RS", at, register=1.5, soc=None, temp=20.0))
    assert (warmer.outcome, warmer.conflict.field) == (V_CONFLICT, "battery_temp")


def test_performance_register_sessions_look_back_between_sessions(
    meters: Meter, vehicles: Vehicle, analytics_factory: StartAnalytics
) -> None:
    ten = moment(2026, 11, 26, 10)
    # CHG-TWO's register every minute 10:00..10:30: 100 + 0.25 k at 10:00 + k min, k = 0..30.
    meters.ingest_all(
        [meter("CHG-TWO", ten + k * MINUTE, register=100.0 + 0.25 * k) for k in range(31)]
    )
    # VH-TWO: session A 10:00..10:05, session B 10:25..10:30 (20 minutes apart, beyond the 900 s
    # reach: two sessions), 0.25 kWh DC a minute.
    vehicles.ingest_all(
        [
            vehicle("VH-TWO", "CHG-TWO", ten + k * MINUTE, dc=0.25)
            for k in (*range(0, 6), *range(25, 31))
        ]
    )
    analytics = analytics_factory()
    # The window [09:30, 11:00) holds every reading's interval (one stamped 10:00 exactly would
    # belong to a window starting at 10:00 no more).
    performance = analytics.performance("VH-TWO", end=ten + HOUR, window=90 * MINUTE)
    a, b = performance.sessions
    # A spans 09:59..10:05: the meter's k = 0 covers 09:59..10:00 with no previous register
    # (unknown, not covered); k = 1..5 add 0.25 each: 1.25 over 300 of 360 s.
    assert (a.energy_consumed_ac, a.meter_data_points) == (1.25, 5)
    assert a.ac_coverage == exact(300 / 360)
    assert a.energy_delivered_dc == 6 * 0.25  # 1.5
    # B spans 10:24..10:30: k = 25 looks back to k = 24 (60 s, within reach): all six known,
    # 6 x 0.25 = 1.5, all 360 s covered.
    assert (b.energy_consumed_ac, b.meter_data_points) == (1.5, 6)
    assert b.ac_coverage == 1.0
    assert b.energy_delivered_dc == 1.5
    # Totals: AC 1.25 + 1.5 = 2.75; DC 1.5 + 1.5 = 3.0; ratio 3.0 / 2.75 (above 1: flagged, as
    # is the partial coverage 660 / 720); loss -0.25.
    assert performance.total_energy_consumed_ac == 2.75
    assert performance.total_energy_delivered_dc == 3.0
    assert performance.efficiency_ratio == exact(3.0 / 2.75)
    assert performance.energy_loss_kwh == -0.25
    assert performance.ac_coverage == exact(660 / 720)
    assert (performance.data_points, performance.meter_data_points) == (12, 11)


def test_sessions_window_starting_mid_series_looks_back(vehicles: Vehicle) -> None:
    vehicles.ingest_all(
        [
            vehicle("VH-MID", "CH-MID", m(0), register=0.5),
            vehicle("VH-MID", "CH-MID", m(1), register=1.0),
            vehicle("VH-MID", "CH-MID", m(2), register=1.5),
        ]
    )
    # Window [minute 0:30, 60): minute 1 looks back to minute 0 (before the window): its
    # interval (0, 1] has 1.0 - 0.5 = 0.5, half of it inside the window: 0.25; minute 2 adds
    # 1.5 - 1.0 = 0.5 → 0.75, none unknown; the span starts at the window's start.
    (session,) = vehicles.sessions("VH-MID", m(0, 30), m(60))
    assert (ts_micros(session.start_time), ts_micros(session.end_time)) == (m(0, 30), m(2))
    assert session.kwh_delivered_dc == 0.75
    assert (session.reading_count, session.unknown_energy_count) == (2, 0)
    # Window [minute 1, 60): minute 1's interval ends at the window's start (the window before
    # has it): only minute 2's 0.5.
    (session,) = vehicles.sessions("VH-MID", m(1), m(60))
    assert (ts_micros(session.start_time), ts_micros(session.end_time)) == (m(1), m(2))
    assert (session.kwh_delivered_dc, session.reading_count) == (0.5, 1)


def test_summaries_of_many_intervals_in_request_order(meters: Meter) -> None:
    meters.ingest_all(
        [meter("CH-MANY", m(k), register=2.0 + 0.5 * k) for k in range(5)]  # 2.0 … 4.0
        + [meter("CH-OTHER", m(k), kwh=0.25) for k in range(5)]
    )
    response = meters.stub.SummarizeConsumption(
        meter_service_pb2.SummarizeConsumptionRequest(
            intervals=[
                meter_pb2.ConsumptionInterval(
                    charger_id=charger, start_time=ts(m(start)), end_time=ts(m(end))
                )
                for charger, start, end in (
                    ("CH-MANY", 2, 5),  # k = 2, 3, 4: 0.5 x 3 = 1.5, looked back to k = 1
                    ("CH-OTHER", 0, 5),  # 5 x 0.25 = 1.25
                    ("CH-MANY", 0, 1),  # k = 0 alone: unknown, 0
                    ("CH-NONE", 0, 5),  # no readings: 0
                )
            ]
        ),
        timeout=CALL_TIMEOUT,
    )
    got = [
        (s.charger_id, s.kwh_consumed_ac, s.reading_count, s.unknown_energy_count)
        for s in response.summaries
    ]
    assert got == [
        ("CH-MANY", 1.5, 3, 0),
        ("CH-OTHER", 1.25, 5, 0),
        ("CH-MANY", 0.0, 1, 1),
        ("CH-NONE", 0.0, 0, 0),
    ]


def test_non_finite_registers_are_refused(meters: Meter, vehicles: Vehicle) -> None:
    at = moment(2026, 11, 24, 12)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(grpc.RpcError) as caught:
            meters.unary(meter("CH-NAN", at, register=bad))
        assert list(field_violations(caught.value)) == ["reading.kwh_consumed_ac_register"]
        with pytest.raises(grpc.RpcError) as caught:
            vehicles.unary(vehicle("VH-NAN", "CH-NAN", at, register=bad))
        assert list(field_violations(caught.value)) == ["reading.kwh_delivered_dc_register"]
