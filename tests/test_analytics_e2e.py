"""End to end correlation: AnalyticsService in process, dialling real in-process MeterService and
VehicleService servers over gRPC, on real PostgreSQL.

Every dataset is small and made by hand; every expected figure is computed by hand in the test
(the arithmetic is in the comments), never taken from what a service answered. Energies are
dyadic (0.5, 0.25, ...) so sums are exact in binary floating point; ratios that are not exact
are compared with pytest.approx(rel=1e-12)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from energy.analytics.v1 import analytics_pb2, analytics_service_pb2, analytics_service_pb2_grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.conftest import InProcessServer, start_in_process

pytestmark = pytest.mark.e2e

MICROS = 1_000_000
SECOND = MICROS
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# 2026-02-10T00:00:00Z: every fixed dataset lives on this day.
D = int(datetime(2026, 2, 10, tzinfo=UTC).timestamp()) * MICROS
CALL_TIMEOUT = 60.0


def at(hours: int, minutes: int = 0, seconds: int = 0) -> int:
    """D + hh:mm:ss, in microseconds since the epoch."""
    return D + hours * HOUR + minutes * MINUTE + seconds * SECOND


def exact(value: float) -> Any:
    return pytest.approx(value, rel=1e-12, abs=1e-12)


# --- wire helpers ---------------------------------------------------------------------------


def ts(micros: int) -> Timestamp:
    seconds, rest = divmod(micros, MICROS)
    return Timestamp(seconds=seconds, nanos=rest * 1000)


def ts_micros(timestamp: Timestamp) -> int:
    assert timestamp.nanos % 1000 == 0, "times are kept to the microsecond"
    return timestamp.seconds * MICROS + timestamp.nanos // 1000


def duration(micros: int) -> Duration:
    sign = -1 if micros < 0 else 1
    seconds, rest = divmod(abs(micros), MICROS)
    return Duration(seconds=sign * seconds, nanos=sign * rest * 1000)


def meter(meter_id: str, micros: int, kwh: float) -> meter_pb2.MeterReading:
    return meter_pb2.MeterReading(
        meter_id=meter_id, kwh_consumed_ac=kwh, voltage=230.0, timestamp=ts(micros)
    )


def every_minute(meter_id: str, first: int, last: int, kwh: float) -> list[meter_pb2.MeterReading]:
    """One meter reading a minute from `first` to `last` inclusive."""
    return [meter(meter_id, t, kwh) for t in range(first, last + 1, MINUTE)]


def vehicle(
    vehicle_id: str, charger_id: str, micros: int, dc: float, temp: float = 25.0
) -> vehicle_pb2.VehicleReading:
    return vehicle_pb2.VehicleReading(
        vehicle_id=vehicle_id,
        charger_id=charger_id,
        soc=50.0,
        kwh_delivered_dc=dc,
        battery_temp=temp,
        timestamp=ts(micros),
    )


def ingest_meters(server: InProcessServer, readings: Sequence[meter_pb2.MeterReading]) -> None:
    with server.channel() as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        response = stub.IngestReadings(
            iter([meter_service_pb2.IngestReadingsRequest(readings=readings)]),
            timeout=CALL_TIMEOUT,
        )
    assert (response.accepted, response.duplicates, response.rejected) == (len(readings), 0, 0)


def ingest_vehicles(
    server: InProcessServer, readings: Sequence[vehicle_pb2.VehicleReading]
) -> None:
    with server.channel() as channel:
        stub = vehicle_service_pb2_grpc.VehicleServiceStub(channel)
        response = stub.IngestReadings(
            iter([vehicle_service_pb2.IngestReadingsRequest(readings=readings)]),
            timeout=CALL_TIMEOUT,
        )
    assert (response.accepted, response.duplicates, response.rejected) == (len(readings), 0, 0)


def field_violations(error: grpc.RpcError) -> list[str]:
    """The fields named by the google.rpc.BadRequest an INVALID_ARGUMENT carries."""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT must carry a google.rpc.Status"
    fields: list[str] = []
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request), detail.type_url
        fields += [violation.field for violation in bad_request.field_violations]
    return fields


# --- AnalyticsService -----------------------------------------------------------------------


class Analytics:
    """A started AnalyticsService and a client of it."""

    def __init__(self, server: InProcessServer) -> None:
        self.server = server
        self._channel = server.channel()
        self.stub = analytics_service_pb2_grpc.AnalyticsServiceStub(self._channel)

    def performance(
        self,
        vehicle_id: str,
        *,
        end: int | None = None,
        window: int | None = None,
        timeout: float = CALL_TIMEOUT,
    ) -> analytics_pb2.VehiclePerformance:
        request = analytics_service_pb2.GetVehiclePerformanceRequest(vehicle_id=vehicle_id)
        if end is not None:
            request.end_time.CopyFrom(ts(end))
        if window is not None:
            request.window.CopyFrom(duration(window))
        response = self.stub.GetVehiclePerformance(request, timeout=timeout)
        assert response.vehicle_id == vehicle_id
        return response

    def error(self, vehicle_id: str, **kwargs: Any) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as caught:
            self.performance(vehicle_id, **kwargs)
        return caught.value

    def close(self) -> None:
        self._channel.close()
        self.server.running.shutdown(5)


def start_analytics(
    database_url: str, meter_target: str, vehicle_target: str, **overrides: Any
) -> Analytics:
    server = start_in_process(
        "analytics",
        database_url,  # unused: AnalyticsService owns no tables
        meter_target=meter_target,
        vehicle_target=vehicle_target,
        **overrides,
    )
    return Analytics(server)


StartAnalytics = Callable[..., Analytics]


@pytest.fixture
def analytics_factory(
    database_url: str, meter_server: InProcessServer, vehicle_server: InProcessServer
) -> Iterator[StartAnalytics]:
    """Starts AnalyticsService (settings overridable) against the fixture servers."""
    started: list[Analytics] = []

    def start(**overrides: Any) -> Analytics:
        analytics = start_analytics(
            database_url, meter_server.target, vehicle_server.target, **overrides
        )
        started.append(analytics)
        return analytics

    yield start
    for analytics in started:
        analytics.close()


@pytest.fixture
def analytics(analytics_factory: StartAnalytics) -> Analytics:
    """AnalyticsService with the default settings (gap 300 s, tolerance 30 s)."""
    return analytics_factory()


# --- expectations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Hand-computed figures of a session or of the totals."""

    ac: float
    dc: float
    temps: tuple[float, ...]  # every vehicle reading's battery temperature
    meter_points: int
    efficiency: float | None  # written out by hand, checked against dc / ac as well
    loss: float
    avg_temp: float | None


@dataclass(frozen=True)
class SessionExpected:
    charger_id: str
    start: int
    end: int
    figures: Figures


def check_figures(message: Any, expected: Figures, *, totals: bool) -> None:
    ac = message.total_energy_consumed_ac if totals else message.energy_consumed_ac
    dc = message.total_energy_delivered_dc if totals else message.energy_delivered_dc
    assert ac == exact(expected.ac)
    assert dc == exact(expected.dc)
    assert message.energy_loss_kwh == exact(expected.loss)
    assert expected.loss == exact(expected.ac - expected.dc)
    assert message.data_points == len(expected.temps)
    assert message.meter_data_points == expected.meter_points
    if expected.efficiency is None:
        assert expected.ac == 0
        assert not message.HasField("efficiency_ratio")
    else:
        assert expected.efficiency == exact(expected.dc / expected.ac)
        assert message.HasField("efficiency_ratio")
        assert message.efficiency_ratio == exact(expected.efficiency)
    if expected.avg_temp is None:
        assert not expected.temps
        assert not message.HasField("avg_battery_temperature")
    else:
        assert expected.avg_temp == exact(sum(expected.temps) / len(expected.temps))
        assert message.HasField("avg_battery_temperature")
        assert message.avg_battery_temperature == exact(expected.avg_temp)


def check_performance(
    response: analytics_pb2.VehiclePerformance,
    *,
    start: int,
    end: int,
    totals: Figures,
    sessions: Sequence[SessionExpected],
) -> None:
    assert (ts_micros(response.start_time), ts_micros(response.end_time)) == (start, end)
    check_figures(response, totals, totals=True)
    got = [
        (s.charger_id, ts_micros(s.start_time), ts_micros(s.end_time)) for s in response.sessions
    ]
    assert got == [(s.charger_id, s.start, s.end) for s in sessions]
    for message, expected in zip(response.sessions, sessions, strict=True):
        check_figures(message, expected.figures, totals=False)


def summarize(
    server: InProcessServer, intervals: Sequence[tuple[str, int, int]]
) -> list[tuple[str, int, int, float, int]]:
    request = meter_service_pb2.SummarizeConsumptionRequest(
        intervals=[
            meter_pb2.ConsumptionInterval(charger_id=c, start_time=ts(s), end_time=ts(e))
            for c, s, e in intervals
        ]
    )
    with server.channel() as channel:
        response = meter_service_pb2_grpc.MeterServiceStub(channel).SummarizeConsumption(
            request, timeout=CALL_TIMEOUT
        )
    return [
        (
            s.charger_id,
            ts_micros(s.start_time),
            ts_micros(s.end_time),
            s.kwh_consumed_ac,
            s.reading_count,
        )
        for s in response.summaries
    ]


# --- 1. a charger shared over the day -------------------------------------------------------


def test_shared_charger_is_split_between_vehicles_by_session(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # CHG-SHARED reports every minute of the day at :00: 0.5 kWh a reading before noon,
    # 0.25 kWh from noon on. EV-A charges 08:00..08:59, EV-B 14:00..14:29 (one reading a minute).
    ingest_meters(
        meter_server,
        every_minute("CHG-SHARED", at(0), at(11, 59), 0.5)
        + every_minute("CHG-SHARED", at(12), at(23, 59), 0.25),
    )
    ingest_vehicles(
        vehicle_server,
        [vehicle("EV-A", "CHG-SHARED", at(8, m), 0.375, 20.0) for m in range(60)]
        + [vehicle("EV-B", "CHG-SHARED", at(14, m), 0.125, 30.0) for m in range(30)],
    )
    day_start, day_end = at(0), at(24)

    # EV-A: session [08:00, 08:59]; meter interval [07:59:30, 08:59:30) holds the readings at
    # 08:00..08:59 = 60 readings * 0.5 = 30.0 kWh AC; DC 60 * 0.375 = 22.5; 22.5 / 30 = 0.75;
    # loss 30 - 22.5 = 7.5.
    a = Figures(30.0, 22.5, (20.0,) * 60, 60, 0.75, 7.5, 20.0)
    response_a = analytics.performance("EV-A", end=day_end)  # default window 24 h
    check_performance(
        response_a,
        start=day_start,
        end=day_end,
        totals=a,
        sessions=[SessionExpected("CHG-SHARED", at(8), at(8, 59), a)],
    )
    # EV-B: session [14:00, 14:29]; interval [13:59:30, 14:29:30) holds 14:00..14:29 = 30
    # readings * 0.25 = 7.5 kWh AC; DC 30 * 0.125 = 3.75; 3.75 / 7.5 = 0.5; loss 3.75.
    b = Figures(7.5, 3.75, (30.0,) * 30, 30, 0.5, 3.75, 30.0)
    response_b = analytics.performance("EV-B", end=day_end, window=DAY)
    check_performance(
        response_b,
        start=day_start,
        end=day_end,
        totals=b,
        sessions=[SessionExpected("CHG-SHARED", at(14), at(14, 29), b)],
    )

    # The original design's "whole day of the charger": 720 * 0.5 + 720 * 0.25 = 540.0 kWh over
    # 1440 readings, which would give each vehicle 540 kWh AC (EV-A efficiency 22.5 / 540).
    [(_, _, _, naive_ac, naive_count)] = summarize(
        meter_server, [("CHG-SHARED", day_start, day_end)]
    )
    assert (naive_ac, naive_count) == (540.0, 1440)
    for response in (response_a, response_b):
        assert response.total_energy_consumed_ac != naive_ac
        assert response.meter_data_points != naive_count
    # And neither vehicle got the other's rate: all of EV-A's readings at 0.5, EV-B's at 0.25.
    assert response_a.total_energy_consumed_ac != 60 * 0.25
    assert response_b.total_energy_consumed_ac != 30 * 0.5


# --- 2. one vehicle on two chargers ---------------------------------------------------------


def test_vehicle_on_two_chargers_gets_two_sessions_and_summed_totals(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # Both chargers report every minute 08:00..10:59 at :00: CHG-1 0.5 kWh, CHG-2 0.625 kWh.
    # EV-1 is on CHG-1 at 09:00..09:09 (10 readings, 0.25 kWh DC, 10 °C), then moves straight
    # (no time gap: the charger change alone splits the session) to CHG-2 at 09:10..09:29
    # (20 readings, 0.5 kWh DC, 22 °C).
    ingest_meters(
        meter_server,
        every_minute("CHG-1", at(8), at(10, 59), 0.5)
        + every_minute("CHG-2", at(8), at(10, 59), 0.625),
    )
    ingest_vehicles(
        vehicle_server,
        [vehicle("EV-1", "CHG-1", at(9, m), 0.25, 10.0) for m in range(10)]
        + [vehicle("EV-1", "CHG-2", at(9, m), 0.5, 22.0) for m in range(10, 30)],
    )
    # CHG-1 session [09:00, 09:09]: interval [08:59:30, 09:09:30) → 09:00..09:09 = 10 * 0.5
    # = 5.0 AC; DC 10 * 0.25 = 2.5; efficiency 0.5; loss 2.5.
    first = Figures(5.0, 2.5, (10.0,) * 10, 10, 0.5, 2.5, 10.0)
    # CHG-2 session [09:10, 09:29]: interval [09:09:30, 09:29:30) → 09:10..09:29 = 20 * 0.625
    # = 12.5 AC; DC 20 * 0.5 = 10.0; efficiency 10 / 12.5 = 0.8; loss 2.5.
    second = Figures(12.5, 10.0, (22.0,) * 20, 20, 0.8, 2.5, 22.0)
    # Totals: AC 5 + 12.5 = 17.5; DC 2.5 + 10 = 12.5; efficiency 12.5 / 17.5 = 5/7; loss 5.0;
    # 30 readings; 30 meter readings; temperature (10*10 + 20*22) / 30 = 540 / 30 = 18.0
    # (the mean of the session means would be (10 + 22) / 2 = 16.0).
    totals = Figures(17.5, 12.5, (10.0,) * 10 + (22.0,) * 20, 30, 5 / 7, 5.0, 18.0)
    check_performance(
        analytics.performance("EV-1", end=at(12), window=6 * HOUR),
        start=at(6),
        end=at(12),
        totals=totals,
        sessions=[
            SessionExpected("CHG-1", at(9), at(9, 9), first),
            SessionExpected("CHG-2", at(9, 10), at(9, 29), second),
        ],
    )


# --- 3. clipping to the window --------------------------------------------------------------


def test_sessions_crossing_the_window_edges_are_clipped(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # Window: end 12:00, 6 h → [06:00, 12:00).
    # EV-W on CHG-S at 05:50:10..06:09:10 (one a minute at :10, 20 readings, 0.25 kWh DC);
    # CHG-S reports at :50 of each minute 05:30:50..06:29:50, 0.5 kWh.
    # EV-W on CHG-E at 11:50:50..12:09:50 (at :50, 20 readings, 0.125 kWh DC);
    # CHG-E reports at :00 of each minute 11:30..12:30, 0.25 kWh.
    ingest_meters(
        meter_server,
        every_minute("CHG-S", at(5, 30, 50), at(6, 29, 50), 0.5)
        + every_minute("CHG-E", at(11, 30), at(12, 30), 0.25),
    )
    ingest_vehicles(
        vehicle_server,
        [vehicle("EV-W", "CHG-S", at(5, 50, 10) + m * MINUTE, 0.25) for m in range(20)]
        + [vehicle("EV-W", "CHG-E", at(11, 50, 50) + m * MINUTE, 0.125) for m in range(20)],
    )
    # Start session: readings in the window 06:00:10..06:09:10 = 10 → DC 10 * 0.25 = 2.5.
    # Meter interval [06:00:10 - 30 s, 06:09:10 + 30 s) = [05:59:40, 06:09:40) clipped to
    # [06:00:00, 06:09:40): CHG-S readings 06:00:50..06:08:50 = 9 * 0.5 = 4.5 AC (unclipped,
    # 05:59:50 would make it 5.0). Efficiency 2.5 / 4.5; loss 2.0.
    start_session = Figures(4.5, 2.5, (25.0,) * 10, 9, 2.5 / 4.5, 2.0, 25.0)
    # End session: readings in the window 11:50:50..11:59:50 = 10 → DC 10 * 0.125 = 1.25.
    # Interval [11:50:20, 12:00:20) clipped to [11:50:20, 12:00:00): CHG-E readings
    # 11:51..11:59 = 9 * 0.25 = 2.25 AC (unclipped, 12:00 would make it 2.5).
    # Efficiency 1.25 / 2.25; loss 1.0.
    end_session = Figures(2.25, 1.25, (25.0,) * 10, 9, 1.25 / 2.25, 1.0, 25.0)
    # Totals: AC 4.5 + 2.25 = 6.75; DC 2.5 + 1.25 = 3.75; loss 3.0; 20 readings; 18 meter.
    totals = Figures(6.75, 3.75, (25.0,) * 20, 18, 3.75 / 6.75, 3.0, 25.0)
    check_performance(
        analytics.performance("EV-W", end=at(12), window=6 * HOUR),
        start=at(6),
        end=at(12),
        totals=totals,
        sessions=[
            SessionExpected("CHG-S", at(6, 0, 10), at(6, 9, 10), start_session),
            SessionExpected("CHG-E", at(11, 50, 50), at(11, 59, 50), end_session),
        ],
    )


# --- 4. the session gap and the tolerance, at their boundaries --------------------------------


def test_session_gap_boundary(
    meter_server: InProcessServer,
    vehicle_server: InProcessServer,
    analytics_factory: StartAnalytics,
) -> None:
    analytics = analytics_factory(session_gap_seconds=120.0)
    t = at(10)
    # EV-G on CHG-G at t, +60, +120, then +240 (gap exactly 120 s: same session), +300, then
    # +421 (gap 121 s: a new session), +481. 0.25 kWh DC each.
    offsets = [0, 60, 120, 240, 300, 421, 481]
    ingest_vehicles(
        vehicle_server, [vehicle("EV-G", "CHG-G", t + s * SECOND, 0.25) for s in offsets]
    )
    # CHG-G reports 0.5 kWh every minute at t-5 min .. t+10 min.
    ingest_meters(meter_server, every_minute("CHG-G", t - 5 * MINUTE, t + 10 * MINUTE, 0.5))
    # Session 1 [t, t+300]: 5 readings, DC 1.25; interval [t-30 s, t+330 s) holds the meter
    # readings at t, +60, +120, +180, +240, +300 = 6 * 0.5 = 3.0 AC; efficiency 1.25/3; loss 1.75.
    first = Figures(3.0, 1.25, (25.0,) * 5, 6, 1.25 / 3.0, 1.75, 25.0)
    # Session 2 [t+421, t+481]: 2 readings, DC 0.5; interval [t+391 s, t+511 s) holds t+420 and
    # t+480 = 2 * 0.5 = 1.0 AC; efficiency 0.5; loss 0.5.
    second = Figures(1.0, 0.5, (25.0,) * 2, 2, 0.5, 0.5, 25.0)
    # Totals: AC 4.0, DC 1.75, efficiency 0.4375, loss 2.25, 7 readings, 8 meter readings.
    totals = Figures(4.0, 1.75, (25.0,) * 7, 8, 0.4375, 2.25, 25.0)
    check_performance(
        analytics.performance("EV-G", end=at(12), window=4 * HOUR),
        start=at(8),
        end=at(12),
        totals=totals,
        sessions=[
            SessionExpected("CHG-G", t, t + 300 * SECOND, first),
            SessionExpected("CHG-G", t + 421 * SECOND, t + 481 * SECOND, second),
        ],
    )


def test_tolerance_boundary(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    t = at(10)
    # EV-T on CHG-T at t, t+60 s, t+120 s (one session [t, t+120 s]), 1.75 kWh DC each.
    ingest_vehicles(
        vehicle_server, [vehicle("EV-T", "CHG-T", t + m * MINUTE, 1.75) for m in range(3)]
    )
    # Tolerance 30 s → interval [t-30 s, t+150 s). Meter readings with distinct powers of two
    # so the sum names exactly which were counted:
    ingest_meters(
        meter_server,
        [
            meter("CHG-T", t - 30 * SECOND - 1, 1.0),  # 1 µs before start - tolerance: out
            meter("CHG-T", t - 30 * SECOND, 2.0),  # exactly start - tolerance: in
            meter("CHG-T", t + 60 * SECOND, 4.0),  # inside: in
            meter("CHG-T", t + 150 * SECOND - 1, 8.0),  # 1 µs before end + tolerance: in
            meter("CHG-T", t + 150 * SECOND, 16.0),  # exactly end + tolerance: out
        ],
    )
    # AC 2 + 4 + 8 = 14.0 over 3 readings; DC 3 * 1.75 = 5.25; 5.25 / 14 = 0.375; loss 8.75.
    figures = Figures(14.0, 5.25, (25.0,) * 3, 3, 0.375, 8.75, 25.0)
    check_performance(
        analytics.performance("EV-T", end=at(12)),
        start=at(12) - DAY,
        end=at(12),
        totals=figures,
        sessions=[SessionExpected("CHG-T", t, t + 2 * MINUTE, figures)],
    )


# --- 5. clocks offset by half a reporting period --------------------------------------------


def test_clock_offset_of_30_seconds_is_absorbed_by_default_tolerance(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # EV-O on CHG-O at 10:00:00..10:59:00 (60 readings at :00, 0.25 kWh DC);
    # CHG-O reports 0.5 kWh at :30 of every minute 09:00:30..11:59:30 (180 readings).
    ingest_vehicles(vehicle_server, [vehicle("EV-O", "CHG-O", at(10, m), 0.25) for m in range(60)])
    ingest_meters(meter_server, every_minute("CHG-O", at(9, 0, 30), at(11, 59, 30), 0.5))
    # Interval [10:00:00 - 30 s, 10:59:00 + 30 s) = [09:59:30, 10:59:30): meter readings
    # 09:59:30, 10:00:30, ..., 10:58:30 = 60 readings (09:58:30 is before, 10:59:30 is the
    # excluded end) → AC 60 * 0.5 = 30.0; DC 60 * 0.25 = 15.0; efficiency 0.5; loss 15.0.
    figures = Figures(30.0, 15.0, (25.0,) * 60, 60, 0.5, 15.0, 25.0)
    check_performance(
        analytics.performance("EV-O", end=at(24)),
        start=at(0),
        end=at(24),
        totals=figures,
        sessions=[SessionExpected("CHG-O", at(10), at(10, 59), figures)],
    )


# --- 6. zeros, unset fields and the exact average --------------------------------------------


def test_no_ac_leaves_efficiency_unset_and_loss_negative(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # EV-Z1 charges on CHG-NEVER, which never reported; EV-Z2 on CHG-ZERO, which reported
    # 0 kWh every minute 09:55..10:10. Both at 10:00..10:03, 0.5 kWh DC each.
    ingest_meters(meter_server, every_minute("CHG-ZERO", at(9, 55), at(10, 10), 0.0))
    ingest_vehicles(
        vehicle_server,
        [vehicle("EV-Z1", "CHG-NEVER", at(10, m), 0.5) for m in range(4)]
        + [vehicle("EV-Z2", "CHG-ZERO", at(10, m), 0.5) for m in range(4)],
    )
    # DC 4 * 0.5 = 2.0; AC 0 → efficiency unset; loss 0 - 2.0 = -2.0.
    # CHG-NEVER: no meter reading. CHG-ZERO: interval [09:59:30, 10:03:30) → 10:00..10:03 = 4.
    for vehicle_id, charger_id, meter_points in (
        ("EV-Z1", "CHG-NEVER", 0),
        ("EV-Z2", "CHG-ZERO", 4),
    ):
        figures = Figures(0.0, 2.0, (25.0,) * 4, meter_points, None, -2.0, 25.0)
        check_performance(
            analytics.performance(vehicle_id, end=at(12)),
            start=at(12) - DAY,
            end=at(12),
            totals=figures,
            sessions=[SessionExpected(charger_id, at(10), at(10, 3), figures)],
        )


def test_vehicle_silent_in_the_window_gets_zeros(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # EV-S charged on day D at 01:00..01:04 (CHG-Q reporting then); the window is day D+1.
    ingest_meters(meter_server, every_minute("CHG-Q", at(0, 55), at(1, 10), 0.5))
    ingest_vehicles(vehicle_server, [vehicle("EV-S", "CHG-Q", at(1, m), 0.5) for m in range(5)])
    response = analytics.performance("EV-S", end=at(48))
    # Zeros, no efficiency, no average temperature, no sessions; loss 0 - 0 = 0.
    check_performance(
        response,
        start=at(24),
        end=at(48),
        totals=Figures(0.0, 0.0, (), 0, None, 0.0, None),
        sessions=[],
    )
    # The window ends exactly where the data starts: still silent ([start, end) excludes it).
    check_performance(
        analytics.performance("EV-S", end=at(1), window=HOUR),
        start=at(0),
        end=at(1),
        totals=Figures(0.0, 0.0, (), 0, None, 0.0, None),
        sessions=[],
    )


def test_average_battery_temperature_is_over_all_readings(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # EV-AVG: session 1 on CHG-X1 at 08:00, 08:01 (10 °C, 20 °C); session 2 on CHG-X2 at
    # 15:00..15:03 (30, 40, 50, 60 °C). 0.5 kWh DC each. Chargers report 1.0 kWh a minute
    # 07:50..08:10 and 14:50..15:10.
    ingest_vehicles(
        vehicle_server,
        [vehicle("EV-AVG", "CHG-X1", at(8, m), 0.5, temp) for m, temp in enumerate((10.0, 20.0))]
        + [
            vehicle("EV-AVG", "CHG-X2", at(15, m), 0.5, temp)
            for m, temp in enumerate((30.0, 40.0, 50.0, 60.0))
        ],
    )
    ingest_meters(
        meter_server,
        every_minute("CHG-X1", at(7, 50), at(8, 10), 1.0)
        + every_minute("CHG-X2", at(14, 50), at(15, 10), 1.0),
    )
    # Session 1: interval [07:59:30, 08:01:30) → 08:00, 08:01 = 2.0 AC; DC 1.0; eff 0.5;
    # avg (10 + 20) / 2 = 15.0.
    first = Figures(2.0, 1.0, (10.0, 20.0), 2, 0.5, 1.0, 15.0)
    # Session 2: interval [14:59:30, 15:03:30) → 15:00..15:03 = 4.0 AC; DC 2.0; eff 0.5;
    # avg (30 + 40 + 50 + 60) / 4 = 45.0.
    second = Figures(4.0, 2.0, (30.0, 40.0, 50.0, 60.0), 4, 0.5, 2.0, 45.0)
    # Totals: avg (10 + 20 + 30 + 40 + 50 + 60) / 6 = 210 / 6 = 35.0, not the mean of the
    # session means (15 + 45) / 2 = 30.0. AC 6.0, DC 3.0, eff 0.5, loss 3.0.
    totals = Figures(6.0, 3.0, (10.0, 20.0, 30.0, 40.0, 50.0, 60.0), 6, 0.5, 3.0, 35.0)
    response = analytics.performance("EV-AVG", end=at(24))
    check_performance(
        response,
        start=at(0),
        end=at(24),
        totals=totals,
        sessions=[
            SessionExpected("CHG-X1", at(8), at(8, 1), first),
            SessionExpected("CHG-X2", at(15), at(15, 3), second),
        ],
    )
    assert response.avg_battery_temperature != 30.0


# --- 7. errors ------------------------------------------------------------------------------


def test_invalid_requests_and_unknown_vehicle(
    vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    ingest_vehicles(vehicle_server, [vehicle("EV-E", "CHG-E1", at(10), 0.5)])

    error = analytics.error("EV-NEVER-SEEN", end=at(12))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    # 31 days + 1 s is too long; 31 days exactly is accepted.
    assert field_violations(analytics.error("EV-E", end=at(12), window=31 * DAY + SECOND)) == [
        "window"
    ]
    response = analytics.performance("EV-E", end=at(12), window=31 * DAY)
    assert (ts_micros(response.start_time), ts_micros(response.end_time)) == (
        at(12) - 31 * DAY,
        at(12),
    )
    assert response.data_points == 1
    # A negative window (its start after its end) and an empty one.
    assert field_violations(analytics.error("EV-E", end=at(12), window=-HOUR)) == ["window"]
    assert field_violations(analytics.error("EV-E", end=at(12), window=0)) == ["window"]
    # Malformed vehicle ids.
    for bad_id in ("bad id", "", "x" * 65, "EV/1"):
        assert field_violations(analytics.error(bad_id, end=at(12))) == ["vehicle_id"]


# 2026-11-20T10:00:00Z as epoch milliseconds and microseconds, put where seconds belong (as a
# dashboard did); and the Timestamp type's own ends, 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
AS_MILLIS = 1_795_168_800_000
AS_MICROS = 1_795_168_800_000_000
FIRST_SECOND = -62_135_596_800
LAST_SECOND = 253_402_300_799


def test_times_outside_the_timestamp_range_are_invalid_argument_on_every_rpc(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    """Never INTERNAL, never an empty answer about year 58,857: the field is named."""
    ingest_vehicles(vehicle_server, [vehicle("VH-RANGE", "CHG-RANGE", at(10), 0.125)])

    def performance_error(request: Any) -> list[str]:
        with pytest.raises(grpc.RpcError) as caught:
            analytics.stub.GetVehiclePerformance(request, timeout=CALL_TIMEOUT)
        return field_violations(caught.value)

    request = analytics_service_pb2.GetVehiclePerformanceRequest
    for seconds in (AS_MILLIS, AS_MICROS, LAST_SECOND + 1, FIRST_SECOND - 1):
        assert performance_error(
            request(vehicle_id="VH-RANGE", end_time=Timestamp(seconds=seconds))
        ) == ["end_time"]
    assert performance_error(
        request(vehicle_id="VH-RANGE", end_time=ts(at(12)), window=Duration(seconds=10**12))
    ) == ["window"]
    # A valid end whose window would start before year 1.
    assert performance_error(
        request(
            vehicle_id="VH-RANGE",
            end_time=Timestamp(seconds=FIRST_SECOND + 3600),
            window=Duration(seconds=7200),
        )
    ) == ["window"]
    # The range's own ends are valid times: answered, with nothing in them.
    for end_seconds, window_seconds in ((FIRST_SECOND + 3600, 3600), (LAST_SECOND, 86_400)):
        answer = analytics.stub.GetVehiclePerformance(
            request(
                vehicle_id="VH-RANGE",
                end_time=Timestamp(seconds=end_seconds),
                window=Duration(seconds=window_seconds),
            ),
            timeout=CALL_TIMEOUT,
        )
        assert (answer.end_time.seconds, answer.data_points, len(answer.sessions)) == (
            end_seconds,
            0,
            0,
        )

    with vehicle_server.channel() as channel:
        vehicles = vehicle_service_pb2_grpc.VehicleServiceStub(channel)
        cases: list[tuple[Timestamp, Timestamp, Duration | None, list[str]]] = [
            (Timestamp(seconds=AS_MILLIS), ts(at(12)), None, ["start_time"]),
            (ts(at(0)), Timestamp(seconds=AS_MICROS), None, ["end_time"]),
            (
                Timestamp(seconds=AS_MICROS),
                Timestamp(seconds=AS_MICROS),
                Duration(seconds=-(10**12)),
                ["start_time", "end_time", "session_gap"],
            ),
        ]
        for start, end, gap, fields in cases:
            sessions_request = vehicle_service_pb2.ListChargingSessionsRequest(
                vehicle_id="VH-RANGE", start_time=start, end_time=end, session_gap=gap
            )
            with pytest.raises(grpc.RpcError) as caught:
                vehicles.ListChargingSessions(sessions_request, timeout=CALL_TIMEOUT)
            assert field_violations(caught.value) == fields

    with meter_server.channel() as channel:
        meters = meter_service_pb2_grpc.MeterServiceStub(channel)
        intervals = [
            meter_pb2.ConsumptionInterval(
                charger_id="CHG-RANGE", start_time=ts(at(0)), end_time=ts(at(1))
            ),
            meter_pb2.ConsumptionInterval(
                charger_id="CHG-RANGE",
                start_time=Timestamp(seconds=AS_MILLIS),
                end_time=Timestamp(seconds=AS_MICROS),
            ),
        ]
        with pytest.raises(grpc.RpcError) as caught:
            meters.SummarizeConsumption(
                meter_service_pb2.SummarizeConsumptionRequest(intervals=intervals),
                timeout=CALL_TIMEOUT,
            )
        assert field_violations(caught.value) == [
            "intervals[1].start_time",
            "intervals[1].end_time",
        ]

        # Ingestion: the reading's own field, and the valid readings around it are stored.
        bad = meter("CHG-RANGE", at(10), 0.25)
        bad.timestamp.seconds = AS_MILLIS
        with pytest.raises(grpc.RpcError) as caught:
            meters.IngestReading(
                meter_service_pb2.IngestReadingRequest(reading=bad), timeout=CALL_TIMEOUT
            )
        assert field_violations(caught.value) == ["reading.timestamp"]
        response = meters.IngestReadings(
            iter(
                [
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[meter("CHG-RANGE", at(10), 0.25), bad]
                    ),
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[meter("CHG-RANGE", at(10, 1), 0.25)]
                    ),
                ]
            ),
            timeout=CALL_TIMEOUT,
        )
        assert (response.accepted, response.rejected) == (2, 1)
        assert [(r.index, r.field) for r in response.rejections] == [(1, "timestamp")]
        assert "epoch milliseconds given as seconds?" in response.rejections[0].description


@pytest.mark.parametrize("stopped", ["meter", "vehicle"])
def test_downstream_service_down_is_unavailable_within_the_deadline(
    database_url: str, stopped: str
) -> None:
    # Servers of its own (not the fixtures), since one of them is stopped mid-test.
    running = {
        "meter": start_in_process("meter", database_url),
        "vehicle": start_in_process("vehicle", database_url),
    }
    analytics: Analytics | None = None
    try:
        analytics = start_analytics(
            database_url,
            running["meter"].target,
            running["vehicle"].target,
            downstream_timeout_seconds=5.0,
        )
        ingest_meters(running["meter"], every_minute("CHG-D", at(9, 55), at(10, 10), 0.5))
        ingest_vehicles(
            running["vehicle"], [vehicle("EV-D", "CHG-D", at(10, m), 0.25) for m in range(4)]
        )
        # Working first; the session (DC 4 * 0.25 = 1.0) needs the meter call (AC 4 * 0.5 = 2.0).
        response = analytics.performance("EV-D", end=at(12))
        assert (response.total_energy_delivered_dc, response.total_energy_consumed_ac) == (1.0, 2.0)

        running.pop(stopped).running.shutdown(0)
        # The client deadline (3 s) is below the downstream timeout (5 s): the answer must be
        # UNAVAILABLE (retry with backoff), not the client's own DEADLINE_EXCEEDED.
        error = analytics.error("EV-D", end=at(12), timeout=3.0)
        assert error.code() == grpc.StatusCode.UNAVAILABLE, (error.code(), error.details())
    finally:
        if analytics is not None:
            analytics.close()
        for server in running.values():
            server.running.shutdown(5)


# --- 8 and 9. the default window, relative to now --------------------------------------------


def test_default_window_ends_now_and_lasts_a_day(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    now = int(time.time() * MICROS)
    recent = now - 50 * MINUTE  # 10 readings recent .. recent + 9 min
    older = now - 3 * HOUR  # 5 readings older .. older + 4 min
    stale = now - 25 * HOUR  # 1 reading, outside the default day
    ingest_vehicles(
        vehicle_server,
        [vehicle("EV-NOW", "CHG-NOW", recent + m * MINUTE, 0.25) for m in range(10)]
        + [vehicle("EV-NOW", "CHG-NOW", older + m * MINUTE, 0.25) for m in range(5)]
        + [vehicle("EV-NOW", "CHG-NOW", stale, 0.25)],
    )
    # The charger reports 0.5 kWh at the same instants, from 5 min before to 5 min after each.
    ingest_meters(
        meter_server,
        every_minute("CHG-NOW", recent - 5 * MINUTE, recent + 14 * MINUTE, 0.5)
        + every_minute("CHG-NOW", older - 5 * MINUTE, older + 9 * MINUTE, 0.5)
        + every_minute("CHG-NOW", stale - 5 * MINUTE, stale + 5 * MINUTE, 0.5),
    )
    # Recent session: 10 readings, DC 2.5; interval [recent-30 s, recent+9 min+30 s) → 10
    # meter readings = 5.0 AC. Older session: 5 readings, DC 1.25; 5 meter readings = 2.5 AC.
    recent_figures = Figures(5.0, 2.5, (25.0,) * 10, 10, 0.5, 2.5, 25.0)
    older_figures = Figures(2.5, 1.25, (25.0,) * 5, 5, 0.5, 1.25, 25.0)

    before = int(time.time() * MICROS) - 1  # 1 µs for float rounding of either clock
    response = analytics.performance("EV-NOW")  # neither end_time nor window
    after = int(time.time() * MICROS) + 1
    end = ts_micros(response.end_time)
    assert before <= end <= after
    # Totals: AC 7.5, DC 3.75, eff 0.5, loss 3.75, 15 readings, 15 meter readings.
    check_performance(
        response,
        start=end - DAY,
        end=end,
        totals=Figures(7.5, 3.75, (25.0,) * 15, 15, 0.5, 3.75, 25.0),
        sessions=[
            SessionExpected("CHG-NOW", older, older + 4 * MINUTE, older_figures),
            SessionExpected("CHG-NOW", recent, recent + 9 * MINUTE, recent_figures),
        ],
    )

    # A 2 h window ending now leaves out the session 3 h ago.
    before = int(time.time() * MICROS) - 1  # 1 µs for float rounding of either clock
    response = analytics.performance("EV-NOW", window=2 * HOUR)
    after = int(time.time() * MICROS) + 1
    end = ts_micros(response.end_time)
    assert before <= end <= after
    check_performance(
        response,
        start=end - 2 * HOUR,
        end=end,
        totals=recent_figures,
        sessions=[SessionExpected("CHG-NOW", recent, recent + 9 * MINUTE, recent_figures)],
    )


# --- the two downstream RPCs, directly ------------------------------------------------------


def _sessions_request(
    vehicle_id: str, start: int, end: int, gap: int | None = None
) -> vehicle_service_pb2.ListChargingSessionsRequest:
    request = vehicle_service_pb2.ListChargingSessionsRequest(
        vehicle_id=vehicle_id, start_time=ts(start), end_time=ts(end)
    )
    if gap is not None:
        request.session_gap.CopyFrom(duration(gap))
    return request


def test_list_charging_sessions(vehicle_server: InProcessServer) -> None:
    t = at(10)
    ingest_vehicles(
        vehicle_server,
        [
            vehicle("EV-L", "CHG-L1", t - MINUTE, 4.0, 99.0),  # before the range
            vehicle("EV-L", "CHG-L1", t, 0.5, 10.0),  # exactly at the start: in
            vehicle("EV-L", "CHG-L1", t + 1 * MINUTE, 0.5, 20.0),
            vehicle("EV-L", "CHG-L1", t + 2 * MINUTE, 0.5, 30.0),
            # 10 min gap > 5 min: a new session on the same charger
            vehicle("EV-L", "CHG-L1", t + 12 * MINUTE, 0.25, 40.0),
            vehicle("EV-L", "CHG-L1", t + 13 * MINUTE, 0.25, 50.0),
            # another charger one minute later: a new session
            vehicle("EV-L", "CHG-L2", t + 14 * MINUTE, 1.0, 60.0),
            # and back to the first charger one minute later: a new session again
            vehicle("EV-L", "CHG-L1", t + 15 * MINUTE, 2.0, 70.0),
            vehicle("EV-L", "CHG-L1", t + 16 * MINUTE, 8.0, 80.0),  # exactly at the end: out
        ],
    )
    with vehicle_server.channel() as channel:
        stub = vehicle_service_pb2_grpc.VehicleServiceStub(channel)

        def sessions(request: vehicle_service_pb2.ListChargingSessionsRequest) -> list[tuple]:
            response = stub.ListChargingSessions(request, timeout=CALL_TIMEOUT)
            return [
                (
                    s.charger_id,
                    ts_micros(s.start_time),
                    ts_micros(s.end_time),
                    s.kwh_delivered_dc,
                    s.reading_count,
                    s.battery_temp_sum,
                    s.battery_temp_count,
                )
                for s in response.sessions
            ]

        # (charger, start, end, DC, readings, temperature sum, temperature count):
        # 0.5*3 = 1.5 and 10+20+30 = 60; 0.25*2 = 0.5 and 40+50 = 90; 1.0 and 60; 2.0 and 70.
        expected = [
            ("CHG-L1", t, t + 2 * MINUTE, 1.5, 3, 60.0, 3),
            ("CHG-L1", t + 12 * MINUTE, t + 13 * MINUTE, 0.5, 2, 90.0, 2),
            ("CHG-L2", t + 14 * MINUTE, t + 14 * MINUTE, 1.0, 1, 60.0, 1),
            ("CHG-L1", t + 15 * MINUTE, t + 15 * MINUTE, 2.0, 1, 70.0, 1),
        ]
        end = t + 16 * MINUTE
        assert sessions(_sessions_request("EV-L", t, end, 5 * MINUTE)) == expected
        assert sessions(_sessions_request("EV-L", t, end)) == expected  # default gap 5 min
        # A gap of 10 min exactly joins the first two (the boundary continues a session):
        # 1.5 + 0.5 = 2.0 DC, 5 readings, 60 + 90 = 150 °C.
        assert sessions(_sessions_request("EV-L", t, end, 10 * MINUTE)) == [
            ("CHG-L1", t, t + 13 * MINUTE, 2.0, 5, 150.0, 5),
            *expected[2:],
        ]
        # A known vehicle with nothing in the range: no sessions, not NOT_FOUND; so is an
        # empty range (end == start).
        assert sessions(_sessions_request("EV-L", at(20), at(21))) == []
        assert sessions(_sessions_request("EV-L", t, t)) == []

        with pytest.raises(grpc.RpcError) as caught:
            stub.ListChargingSessions(_sessions_request("EV-NONE", t, end), timeout=CALL_TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        cases = [
            (_sessions_request("EV-L", end, t), "end_time"),
            (_sessions_request("EV-L", t, end, 0), "session_gap"),
            (_sessions_request("EV-L", t, end, -MINUTE), "session_gap"),
            (_sessions_request("bad id", t, end), "vehicle_id"),
        ]
        for request, field in cases:
            with pytest.raises(grpc.RpcError) as caught:
                stub.ListChargingSessions(request, timeout=CALL_TIMEOUT)
            assert field_violations(caught.value) == [field]


def test_summarize_consumption(meter_server: InProcessServer) -> None:
    t = at(10)
    # CHG-M reports at t + k min, k = 0..9, with 0.25 * (k + 1) kWh.
    ingest_meters(meter_server, [meter("CHG-M", t + k * MINUTE, 0.25 * (k + 1)) for k in range(10)])
    intervals = [
        ("CHG-M", t + 3 * MINUTE, t + 10 * MINUTE),  # k = 3..9: 0.25 * (4+...+10) = 12.25, 7
        ("CHG-UNKNOWN", t, t + 10 * MINUTE),  # never reported: 0.0, 0
        ("CHG-M", t, t + 5 * MINUTE),  # k = 0..4: 0.25 * (1+...+5) = 3.75, 5
        ("CHG-M", t, t),  # empty: 0.0, 0
        ("CHG-M", t - HOUR, t + HOUR),  # all: 0.25 * 55 = 13.75, 10
    ]
    assert summarize(meter_server, intervals) == [
        (*intervals[0], 12.25, 7),
        (*intervals[1], 0.0, 0),
        (*intervals[2], 3.75, 5),
        (*intervals[3], 0.0, 0),
        (*intervals[4], 13.75, 10),
    ]
    assert summarize(meter_server, []) == []
    with pytest.raises(grpc.RpcError) as caught:
        summarize(meter_server, [("CHG-M", t, t + MINUTE), ("CHG-M", t + MINUTE, t)])
    assert field_violations(caught.value) == ["intervals[1].end_time"]


def test_more_sessions_than_one_summarize_call_takes(
    monkeypatch: pytest.MonkeyPatch,
    analytics: Analytics,
    meter_server: InProcessServer,
    vehicle_server: InProcessServer,
) -> None:
    """A vehicle with more sessions than one SummarizeConsumption call may carry (10,000) still
    gets every session's AC: the intervals go in several calls, in order. The limit is lowered
    to 2 so 7 sessions need 4 calls."""
    from services.analytics import downstream

    monkeypatch.setattr(downstream, "INTERVALS_PER_CALL", 2)
    # The vehicle alternates between CHG-0 and CHG-1 every 10 minutes: 7 one-reading sessions.
    # Each charger draws 0.5 kWh at each of those minutes (and 0.125 in between, never attributed
    # since the nearest vehicle reading is 5 minutes away, beyond the 30 s tolerance).
    times = [at(9, 10 * k) for k in range(7)]
    chargers = [f"CHG-{k % 2}" for k in range(7)]
    ingest_vehicles(
        vehicle_server,
        [vehicle("EV-MANY", c, t, dc=0.25) for c, t in zip(chargers, times, strict=True)],
    )
    ingest_meters(
        meter_server,
        [meter(c, t, 0.5) for c, t in zip(chargers, times, strict=True)]
        + [meter(c, t + 5 * MINUTE, 0.125) for c, t in zip(chargers, times, strict=True)],
    )
    performance = analytics.performance("EV-MANY", end=at(24))
    # 7 sessions x 0.5 kWh AC = 3.5; 7 x 0.25 DC = 1.75; efficiency 0.5.
    assert [s.charger_id for s in performance.sessions] == chargers
    assert [s.energy_consumed_ac for s in performance.sessions] == [0.5] * 7
    assert performance.total_energy_consumed_ac == 3.5
    assert performance.total_energy_delivered_dc == 1.75
    assert performance.efficiency_ratio == 0.5
    assert performance.meter_data_points == 7
