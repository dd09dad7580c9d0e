"""End to end correlation: AnalyticsService in process, dialling real in-process MeterService and
VehicleService servers over gRPC, on real PostgreSQL.

Every dataset is small and made by hand; every expected figure is computed by hand in the test
(the arithmetic is in the comments), never taken from what a service answered. Energies are
dyadic (0.5, 0.25, ...) so sums are exact in binary floating point; ratios that are not exact
are compared with pytest.approx(rel=1e-12).

The rule (README, "How correlation works"): a reading covers the interval ending at its
timestamp, back to its entity's previous reading (a vehicle's: on the same charger) when that is
within the reach (900 s, or twice the usual period if larger), else one usual period (the median
gap, 60 s when unknown); a session spans from its first interval's start to its last reading,
cut to the window; each meter interval's energy (its part inside the window) goes to the
sessions on its charger that overlap it, split by overlap (one session takes it all)."""

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
MISSING = analytics_pb2.QualityFlag.QUALITY_FLAG_METER_DATA_MISSING
OUT_OF_RANGE = analytics_pb2.QualityFlag.QUALITY_FLAG_EFFICIENCY_OUT_OF_RANGE


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
    """AnalyticsService with the default settings (session gap 300 s, reach 900 s)."""
    return analytics_factory()


# --- expectations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """Hand-computed figures of a session or of the totals."""

    ac: float | None  # None: unknown (no meter interval covers any of the span), sent unset
    dc: float
    temps: tuple[float, ...]  # every vehicle reading's battery temperature
    meter_points: int
    efficiency: float | None  # written out by hand, checked against dc / ac as well
    loss: float | None  # ac - dc, None exactly when ac is
    avg_temp: float | None
    coverage: float = 1.0
    flags: tuple[int, ...] = ()


@dataclass(frozen=True)
class SessionExpected:
    charger_id: str
    start: int
    end: int
    figures: Figures


def check_figures(message: Any, expected: Figures, *, totals: bool) -> None:
    ac_field = "total_energy_consumed_ac" if totals else "energy_consumed_ac"
    dc = message.total_energy_delivered_dc if totals else message.energy_delivered_dc
    assert dc == exact(expected.dc)
    if expected.ac is None:
        assert expected.loss is None and expected.efficiency is None
        assert not message.HasField(ac_field)
        assert not message.HasField("energy_loss_kwh")
    else:
        assert expected.loss is not None
        assert expected.loss == exact(expected.ac - expected.dc)
        assert message.HasField(ac_field)
        assert getattr(message, ac_field) == exact(expected.ac)
        assert message.HasField("energy_loss_kwh")
        assert message.energy_loss_kwh == exact(expected.loss)
    assert message.data_points == len(expected.temps)
    assert message.meter_data_points == expected.meter_points
    if expected.efficiency is None:
        assert not expected.ac  # unknown or 0
        assert not message.HasField("efficiency_ratio")
    else:
        assert expected.ac is not None
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
    assert message.ac_coverage == exact(expected.coverage)
    assert sorted(message.quality_flags) == sorted(expected.flags)


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

    # Every reading's interval is one minute (both entities' usual period; every gap is 60 s).
    # EV-A: its first reading (08:00) covers 07:59..08:00, so the session spans 07:59..08:59.
    # The meter intervals overlapping it end at 08:00 .. 08:59 (the one ending at 07:59 only
    # touches its start, the one ending at 09:00 starts at its end): 60 readings * 0.5 = 30.0
    # kWh AC, EV-A alone on them. DC 60 * 0.375 = 22.5; 22.5 / 30 = 0.75; loss 7.5; the span is
    # all covered (coverage 1.0).
    a = Figures(30.0, 22.5, (20.0,) * 60, 60, 0.75, 7.5, 20.0)
    response_a = analytics.performance("EV-A", end=day_end)  # default window 24 h
    check_performance(
        response_a,
        start=day_start,
        end=day_end,
        totals=a,
        sessions=[SessionExpected("CHG-SHARED", at(7, 59), at(8, 59), a)],
    )
    # EV-B: span 13:59..14:29; meter intervals ending 14:00..14:29 = 30 readings * 0.25 = 7.5
    # kWh AC; DC 30 * 0.125 = 3.75; 3.75 / 7.5 = 0.5 (the edge of the plausible range, not
    # flagged); loss 3.75. EV-A's session, hours away, shares none of them.
    b = Figures(7.5, 3.75, (30.0,) * 30, 30, 0.5, 3.75, 30.0)
    response_b = analytics.performance("EV-B", end=day_end, window=DAY)
    check_performance(
        response_b,
        start=day_start,
        end=day_end,
        totals=b,
        sessions=[SessionExpected("CHG-SHARED", at(13, 59), at(14, 29), b)],
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
    # Each reading covers the minute before it (usual period 60 s); the vehicle's previous
    # reading on CHG-2 is none, so its first one there (09:10) covers 09:09..09:10 (one period).
    # CHG-1 session 08:59..09:09: CHG-1's meter intervals ending 09:00..09:09 overlap it = 10 *
    # 0.5 = 5.0 AC; DC 10 * 0.25 = 2.5; efficiency 0.5; loss 2.5.
    first = Figures(5.0, 2.5, (10.0,) * 10, 10, 0.5, 2.5, 10.0)
    # CHG-2 session 09:09..09:29: CHG-2's intervals ending 09:10..09:29 = 20 * 0.625 = 12.5 AC
    # (the one ending at 09:09 only touches the span); DC 20 * 0.5 = 10.0; efficiency 10 /
    # 12.5 = 0.8; loss 2.5. The two sessions touch at 09:09 (the readings do not interleave:
    # not flagged VEHICLE_ON_TWO_CHARGERS).
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
            SessionExpected("CHG-1", at(8, 59), at(9, 9), first),
            SessionExpected("CHG-2", at(9, 9), at(9, 29), second),
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
    # Every reading covers the minute before it (usual period 60 s, gaps within the reach).
    # Start session: EV-W's readings cover 05:49:10..06:09:10; cut to the window, the span is
    # 06:00:00..06:09:10 (550 s). The reading at 06:00:10 covers 05:59:10..06:00:10, 10 s of it
    # inside: 0.25 * 10/60 = 1/24 kWh; 06:01:10..06:09:10 are inside, 9 * 0.25 = 2.25. DC
    # 2.25 + 1/24 = 55/24; 10 readings reach into the window (05:59:10's interval ends at 06:00
    # minus 50 s: out).
    # CHG-S's intervals (one minute, ending at :50) overlapping the span end at 06:00:50 ..
    # 06:09:50: 10 readings. The one ending at 06:00:50 counts for its 50 s inside the window,
    # 0.5 * 50/60 = 5/12; the 9 others are inside, 9 * 0.5 = 4.5 (the last, ending at 06:09:50,
    # all of it: only this session overlaps it). AC 4.5 + 5/12 = 59/12. Coverage 50 + 8 * 60 +
    # 20 = 550 s of 550. Efficiency (55/24) / (59/12) = 55/118 = 0.466: below 0.5, flagged;
    # loss 59/12 - 55/24 = 63/24.
    start_session = Figures(
        59 / 12, 55 / 24, (25.0,) * 10, 10, 55 / 118, 63 / 24, 25.0, flags=(OUT_OF_RANGE,)
    )
    # End session: EV-W's first reading on CHG-E (11:50:50, no previous there) covers
    # 11:49:50..11:50:50; the span is 11:49:50..12:00:00 (cut from 12:09:50; 610 s).
    # 11:50:50..11:59:50 are inside, 10 * 0.125 = 1.25; 12:00:50 covers 11:59:50..12:00:50, 10 s
    # inside: 0.125 * 10/60 = 1/48. DC 1.25 + 1/48 = 61/48 over 11 readings (12:01:50's
    # interval starts after the window).
    # CHG-E's intervals (ending at :00) overlapping the span end at 11:50 .. 12:00 (11:49:00..
    # 11:50:00 overlaps it by 10 s; 12:00..12:01 starts at its end): 11 readings, all inside the
    # window, 11 * 0.25 = 2.75 AC (= 11/4). Coverage 10 + 10 * 60 = 610 s of 610. Efficiency
    # (61/48) / (11/4) = 61/132 = 0.462, flagged; loss 11/4 - 61/48 = 71/48.
    end_session = Figures(
        2.75, 61 / 48, (25.0,) * 11, 11, 61 / 132, 71 / 48, 25.0, flags=(OUT_OF_RANGE,)
    )
    # Totals: AC 59/12 + 33/12 = 23/3; DC 110/48 + 61/48 = 171/48; efficiency (171/48) / (23/3)
    # = 171/368; loss 368/48 - 171/48 = 197/48; 21 readings; 21 meter readings.
    totals = Figures(
        23 / 3, 171 / 48, (25.0,) * 21, 21, 171 / 368, 197 / 48, 25.0, flags=(OUT_OF_RANGE,)
    )
    check_performance(
        analytics.performance("EV-W", end=at(12), window=6 * HOUR),
        start=at(6),
        end=at(12),
        totals=totals,
        sessions=[
            SessionExpected("CHG-S", at(6), at(6, 9, 10), start_session),
            SessionExpected("CHG-E", at(11, 49, 50), at(12), end_session),
        ],
    )


# --- 4. the session gap and the edges of a meter interval, at their boundaries ---------------


def test_session_gap_boundary(
    meter_server: InProcessServer,
    vehicle_server: InProcessServer,
    analytics_factory: StartAnalytics,
) -> None:
    # A gap between two readings within the reach (900 s here) is covered by the later one's
    # interval and never splits a session; beyond it, the later reading covers one usual period
    # and the time before is uncovered: a new session when that is longer than the session gap.
    # With a period of 60 s any gap beyond the reach leaves at least 840 s uncovered, so the
    # session gap is set above that: 1200 s.
    analytics = analytics_factory(session_gap_seconds=1200.0)
    t = at(10)
    # EV-G on CHG-G at t, +60, +120, then +1380 (1260 s later: beyond the reach, its interval
    # +1320..+1380 leaves 1200 s uncovered, exactly the gap: same session), +1440, then +2701
    # (1261 s later: 1201 s uncovered, a new session), +2761. Gaps 60, 60, 1260, 60, 1261, 60:
    # median (usual period) 60 s. DC 2.0 a reading in the first session, 0.5 in the second.
    offsets = [0, 60, 120, 1380, 1440, 2701, 2761]
    ingest_vehicles(
        vehicle_server,
        [vehicle("EV-G", "CHG-G", t + s * SECOND, 2.0 if s < 2000 else 0.5) for s in offsets],
    )
    # CHG-G reports 0.5 kWh every minute at t-5 min .. t+50 min (one-minute intervals).
    ingest_meters(meter_server, every_minute("CHG-G", t - 5 * MINUTE, t + 50 * MINUTE, 0.5))
    # Session 1 spans t-60 s..t+1440 s (the first reading covers the minute before it): the
    # meter intervals ending at t, t+1 min, .., t+24 min overlap it (the uncovered vehicle time
    # is still the session's: the charger drew for it) = 25 * 0.5 = 12.5 AC, covering all 1500
    # s. DC 5 * 2.0 = 10.0; efficiency 0.8; loss 2.5.
    first = Figures(12.5, 10.0, (25.0,) * 5, 25, 0.8, 2.5, 25.0)
    # Session 2 spans t+2641 s..t+2761 s: meter intervals ending at t+2700 (overlapping it by
    # 59 s), t+2760, t+2820 (by 1 s: one session overlapping takes it all) = 3 * 0.5 = 1.5 AC,
    # covering 59 + 60 + 1 = 120 s of 120. DC 2 * 0.5 = 1.0; efficiency 2/3; loss 0.5.
    second = Figures(1.5, 1.0, (25.0,) * 2, 3, 2 / 3, 0.5, 25.0)
    # Totals: AC 14.0, DC 11.0, efficiency 11/14, loss 3.0, 7 readings, 28 meter readings.
    totals = Figures(14.0, 11.0, (25.0,) * 7, 28, 11 / 14, 3.0, 25.0)
    check_performance(
        analytics.performance("EV-G", end=at(12), window=4 * HOUR),
        start=at(8),
        end=at(12),
        totals=totals,
        sessions=[
            SessionExpected("CHG-G", t - MINUTE, t + 1440 * SECOND, first),
            SessionExpected("CHG-G", t + 2641 * SECOND, t + 2761 * SECOND, second),
        ],
    )
    # With the default gap (300 s) the 1260 s gap splits as well: three sessions, t-60..t+120,
    # t+1320..t+1440 and t+2641..t+2761.
    default = analytics_factory().performance("EV-G", end=at(12), window=4 * HOUR)
    assert [(ts_micros(s.start_time), ts_micros(s.end_time)) for s in default.sessions] == [
        (t - MINUTE, t + 2 * MINUTE),
        (t + 1320 * SECOND, t + 1440 * SECOND),
        (t + 2641 * SECOND, t + 2761 * SECOND),
    ]


def test_a_meter_interval_touching_a_span_is_not_attributed_one_overlapping_it_is_in_full(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # What replaced the tolerance: a meter interval counts for a session when it overlaps the
    # session's span by any time at all, and then (alone on it) with all its energy; one that
    # only touches the span (ends at its start, starts at its end) does not count.
    t = at(10)
    # EV-T on CHG-T and EV-T2 on CHG-T2, each at t, t+60 s, t+120 s (3.5 kWh DC each): spans
    # t-60 s..t+120 s (the first reading covers the usual minute before it).
    ingest_vehicles(
        vehicle_server,
        [
            vehicle(vehicle_id, charger_id, t + m * MINUTE, 3.5)
            for vehicle_id, charger_id in (("EV-T", "CHG-T"), ("EV-T2", "CHG-T2"))
            for m in range(3)
        ],
    )
    # Meter readings a minute apart (one-minute intervals; the first covers the minute before
    # it), with distinct powers of two so the sum names exactly which were counted. CHG-T's
    # end at t-60, t, t+60, t+120, t+180; CHG-T2's one second later.
    ingest_meters(
        meter_server,
        [
            meter(charger_id, t + (m - 1) * MINUTE + shift * SECOND, kwh)
            for charger_id, shift in (("CHG-T", 0), ("CHG-T2", 1))
            for m, kwh in enumerate((1.0, 2.0, 4.0, 8.0, 16.0))
        ],
    )
    # CHG-T: t-120..t-60 ends at the span's start: out; t-60..t, t..t+60, t+60..t+120: in;
    # t+120..t+180 starts at its end: out. AC 2 + 4 + 8 = 14.0 over 3 readings, covering all 180
    # s. DC 3 * 3.5 = 10.5; 10.5 / 14 = 0.75; loss 3.5.
    touching = Figures(14.0, 10.5, (25.0,) * 3, 3, 0.75, 3.5, 25.0)
    check_performance(
        analytics.performance("EV-T", end=at(12)),
        start=at(12) - DAY,
        end=at(12),
        totals=touching,
        sessions=[SessionExpected("CHG-T", t - MINUTE, t + 2 * MINUTE, touching)],
    )
    # CHG-T2: t-119..t-59 overlaps the span by 1 s: in, all 1.0 of it; then 2.0, 4.0, and
    # t+61..t+121 (8.0) overlapping by 59 s: in; t+121..t+181 starts after the span: out. AC 1 +
    # 2 + 4 + 8 = 15.0 over 4 readings, covering 1 + 60 + 60 + 59 = 180 s of 180. 10.5 / 15 =
    # 0.7; loss 4.5.
    overlapping = Figures(15.0, 10.5, (25.0,) * 3, 4, 0.7, 4.5, 25.0)
    check_performance(
        analytics.performance("EV-T2", end=at(12)),
        start=at(12) - DAY,
        end=at(12),
        totals=overlapping,
        sessions=[SessionExpected("CHG-T2", t - MINUTE, t + 2 * MINUTE, overlapping)],
    )


# --- 5. clocks offset by half a reporting period --------------------------------------------


def test_vehicle_clocks_30_seconds_off_the_meter_share_the_minute_they_straddle(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # Back-to-back vehicles whose clocks are 30 s off the meter's: EV-O1 on CHG-O at
    # 10:00..10:29, EV-O2 at 10:30..10:59 (30 readings each at :00, 0.375 kWh DC); CHG-O reports
    # 0.5 kWh at :30 of every minute 09:00:30..11:59:30 (180 readings, one-minute intervals).
    ingest_vehicles(
        vehicle_server,
        [vehicle("EV-O1", "CHG-O", at(10, m), 0.375) for m in range(30)]
        + [vehicle("EV-O2", "CHG-O", at(10, m), 0.375) for m in range(30, 60)],
    )
    ingest_meters(meter_server, every_minute("CHG-O", at(9, 0, 30), at(11, 59, 30), 0.5))
    # EV-O1 spans 09:59..10:29; EV-O2's first reading covers 10:29..10:30 (one minute), so it
    # spans 10:29..10:59, starting where EV-O1 ends: back to back, nothing shared, no flag.
    # EV-O1: meter intervals 09:58:30..09:59:30 (overlapping it by 30 s, nobody else: all 0.5),
    # 09:59:30..10:00:30 .. 10:27:30..10:28:30 (29 inside: 14.5) and 10:28:30..10:29:30, 30 s in
    # each span: split by overlap, 0.25 each. AC 0.5 + 14.5 + 0.25 = 15.25 over 31 meter
    # readings, covering 30 + 29 * 60 + 30 = 1800 s of 1800.
    # EV-O2 likewise: 0.25 + 29 * 0.5 + all of 10:58:30..10:59:30 (0.5) = 15.25, 31 readings.
    # DC 30 * 0.375 = 11.25 each; efficiency 11.25 / 15.25 = 45/61; loss 4.0.
    figures = Figures(15.25, 11.25, (25.0,) * 30, 31, 45 / 61, 4.0, 25.0)
    o1 = analytics.performance("EV-O1", end=at(24))
    o2 = analytics.performance("EV-O2", end=at(24))
    for response, span_start in ((o1, at(9, 59)), (o2, at(10, 29))):
        check_performance(
            response,
            start=at(0),
            end=at(24),
            totals=figures,
            sessions=[SessionExpected("CHG-O", span_start, span_start + 30 * MINUTE, figures)],
        )
    # Nothing lost between them and nothing counted twice: 30.5 kWh, the 61 meter intervals
    # (ending 09:59:30 .. 10:59:30) that overlap either session.
    assert o1.total_energy_consumed_ac + o2.total_energy_consumed_ac == exact(61 * 0.5)


# --- 6. zeros, unset fields and the exact average --------------------------------------------


def test_unknown_ac_leaves_ac_efficiency_and_loss_unset_zero_ac_only_efficiency(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # EV-Z1 charges on CHG-NEVER, which never reported; EV-Z2 on CHG-ZERO, which reported
    # 0 kWh every minute 09:55..10:10. Both at 10:00..10:03, 0.5 kWh DC each: DC 4 * 0.5 = 2.0,
    # spans 09:59..10:03 (the first reading covers the minute before it).
    ingest_meters(meter_server, every_minute("CHG-ZERO", at(9, 55), at(10, 10), 0.0))
    ingest_vehicles(
        vehicle_server,
        [vehicle("EV-Z1", "CHG-NEVER", at(10, m), 0.5) for m in range(4)]
        + [vehicle("EV-Z2", "CHG-ZERO", at(10, m), 0.5) for m in range(4)],
    )
    # CHG-NEVER: no meter reading overlaps the span: AC unknown, so AC, efficiency and loss are
    # unset (not 0 and -2.0), coverage 0, METER_DATA_MISSING on the session and the totals.
    unknown = Figures(None, 2.0, (25.0,) * 4, 0, None, None, 25.0, 0.0, (MISSING,))
    # CHG-ZERO: its intervals ending 10:00..10:03 cover the span (4 readings): AC is known to be
    # 0.0, so the loss is set, 0 - 2.0 = -2.0; efficiency (DC / 0) unset; coverage 1.0; DC with
    # no AC is impossible: EFFICIENCY_OUT_OF_RANGE.
    zero = Figures(
        0.0,
        2.0,
        (25.0,) * 4,
        4,
        None,
        -2.0,
        25.0,
        flags=(analytics_pb2.QualityFlag.QUALITY_FLAG_EFFICIENCY_OUT_OF_RANGE,),
    )
    for vehicle_id, charger_id, figures in (
        ("EV-Z1", "CHG-NEVER", unknown),
        ("EV-Z2", "CHG-ZERO", zero),
    ):
        check_performance(
            analytics.performance(vehicle_id, end=at(12)),
            start=at(12) - DAY,
            end=at(12),
            totals=figures,
            sessions=[SessionExpected(charger_id, at(9, 59), at(10, 3), figures)],
        )


def test_vehicle_silent_in_the_window_gets_zeros(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # EV-S charged on day D at 01:00..01:04 (CHG-Q reporting then); the window is day D+1.
    ingest_meters(meter_server, every_minute("CHG-Q", at(0, 55), at(1, 10), 0.5))
    ingest_vehicles(vehicle_server, [vehicle("EV-S", "CHG-Q", at(1, m), 0.5) for m in range(5)])
    response = analytics.performance("EV-S", end=at(48))
    # No session: AC 0 (nothing to attribute, known), loss 0 - 0 = 0, no efficiency, no
    # average temperature, coverage 0, no flags.
    silent = Figures(0.0, 0.0, (), 0, None, 0.0, None, 0.0)
    check_performance(response, start=at(24), end=at(48), totals=silent, sessions=[])
    # The window ends exactly where the first reading's interval starts (00:59; the reading at
    # 01:00 covers 00:59..01:00): still silent ([start, end) holds none of it).
    check_performance(
        analytics.performance("EV-S", end=at(0, 59), window=HOUR),
        start=at(0, 59) - HOUR,
        end=at(0, 59),
        totals=silent,
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
    # Session 1 spans 07:59..08:01 (the first reading covers the minute before it; usual period
    # 60 s): CHG-X1's intervals ending 08:00, 08:01 overlap it = 2.0 AC; DC 1.0; eff 0.5;
    # avg (10 + 20) / 2 = 15.0.
    first = Figures(2.0, 1.0, (10.0, 20.0), 2, 0.5, 1.0, 15.0)
    # Session 2 spans 14:59..15:03: CHG-X2's intervals ending 15:00..15:03 = 4.0 AC; DC 2.0;
    # eff 0.5; avg (30 + 40 + 50 + 60) / 4 = 45.0.
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
            SessionExpected("CHG-X1", at(7, 59), at(8, 1), first),
            SessionExpected("CHG-X2", at(14, 59), at(15, 3), second),
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
    # Usual periods 60 s (gaps over 30 min are silences, left out of the median). The gap from
    # the older session to the recent one (over 2 h) is beyond the reach: two sessions, each
    # starting a minute before its first reading (the stale reading is more than 30 min before
    # the window, not even read). Recent session recent-1 min..recent+9 min: 10 readings, DC
    # 2.5; the meter intervals ending recent .. recent+9 min overlap it = 10 * 0.5 = 5.0 AC.
    # Older session older-1 min..older+4 min: 5 readings, DC 1.25; 5 meter readings = 2.5 AC.
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
            SessionExpected("CHG-NOW", older - MINUTE, older + 4 * MINUTE, older_figures),
            SessionExpected("CHG-NOW", recent - MINUTE, recent + 9 * MINUTE, recent_figures),
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
        sessions=[SessionExpected("CHG-NOW", recent - MINUTE, recent + 9 * MINUTE, recent_figures)],
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
            vehicle("EV-L", "CHG-L1", t - MINUTE, 4.0, 99.0),  # covers t-2 min..t-1 min: out
            vehicle("EV-L", "CHG-L1", t, 0.5, 10.0),  # exactly at the start: out (ends there)
            vehicle("EV-L", "CHG-L1", t + 1 * MINUTE, 0.5, 20.0),
            vehicle("EV-L", "CHG-L1", t + 2 * MINUTE, 0.5, 30.0),
            # 10 min later: within the reach (900 s), it covers those 10 min, same session
            vehicle("EV-L", "CHG-L1", t + 12 * MINUTE, 0.25, 40.0),
            vehicle("EV-L", "CHG-L1", t + 13 * MINUTE, 0.25, 50.0),
            # another charger one minute later: a session of its own, one usual minute long
            vehicle("EV-L", "CHG-L2", t + 14 * MINUTE, 1.0, 60.0),
            # back on the first charger: its previous reading there (t+13 min) is within the
            # reach, so the CHG-L1 session goes on, covering t+13 min..t+15 min
            vehicle("EV-L", "CHG-L1", t + 15 * MINUTE, 2.0, 70.0),
            vehicle("EV-L", "CHG-L1", t + 16 * MINUTE, 8.0, 80.0),  # exactly at the end: in
            # 20 min later: beyond the reach; it covers one usual period, t+34.5..t+36 min,
            # leaving 18.5 min (1110 s) uncovered since t+16 min
            vehicle("EV-L", "CHG-L1", t + 36 * MINUTE, 0.125, 90.0),
        ],
    )
    # The reach is 900 s. The usual period where it matters: at t-1 min (no previous reading),
    # CHG-L1's gaps within 30 min of it, 60, 60, 60, 600 s: 60 s; at t+36 min, its gaps within
    # 30 min, 60, 120, 60, 1200 s: 90 s. The CHG-L2 reading is one stray reading elsewhere: the
    # CHG-L1 session goes on across it.
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

        # (charger, start, end, DC, readings, temperature sum, temperature count) in the window
        # [t, t+16 min): the CHG-L1 session's readings cover t-2 min..t+16 min, cut to t..t+16
        # min; those reaching into the window are t+1, t+2, t+12, t+13, t+15, t+16 min: DC 0.5 +
        # 0.5 + 0.25 + 0.25 + 2.0 + 8.0 = 11.5, temperatures 20+30+40+50+70+80 = 290. The
        # CHG-L2 reading covers t+13 min..t+14 min: 1.0, 60. The reading at t+36 min (its own
        # session, the gap being over 300 s) covers nothing of the window.
        expected = [
            ("CHG-L1", t, t + 16 * MINUTE, 11.5, 6, 290.0, 6),
            ("CHG-L2", t + 13 * MINUTE, t + 14 * MINUTE, 1.0, 1, 60.0, 1),
        ]
        end = t + 16 * MINUTE
        assert sessions(_sessions_request("EV-L", t, end, 5 * MINUTE)) == expected
        assert sessions(_sessions_request("EV-L", t, end)) == expected  # default gap 5 min
        # The session's first and last readings are not cut: t-1 min (before the window) and
        # t+16 min; the vehicle is named.
        response = stub.ListChargingSessions(_sessions_request("EV-L", t, end), timeout=60)
        assert [
            (s.vehicle_id, ts_micros(s.first_reading_time), ts_micros(s.last_reading_time))
            for s in response.sessions
        ] == [("EV-L", t - MINUTE, t + 16 * MINUTE), ("EV-L", t + 14 * MINUTE, t + 14 * MINUTE)]
        # The window [t+30 s, t+15 min 30 s) cuts the intervals at both edges by time: the
        # reading at t+1 min counts for half (0.25), the one at t+16 min for half (4.0): DC 0.25
        # + 0.5 + 0.25 + 0.25 + 2.0 + 4.0 = 7.25, still 6 readings.
        assert sessions(
            _sessions_request("EV-L", t + 30 * SECOND, t + 15 * MINUTE + 30 * SECOND)
        ) == [
            ("CHG-L1", t + 30 * SECOND, t + 15 * MINUTE + 30 * SECOND, 7.25, 6, 290.0, 6),
            expected[1],
        ]
        # An hour from t: the reading at t+36 min is a third session, t+34.5..t+36 min, 0.125.
        hour = t + HOUR
        late = ("CHG-L1", t + 34 * MINUTE + 30 * SECOND, t + 36 * MINUTE, 0.125, 1, 90.0, 1)
        assert sessions(_sessions_request("EV-L", t, hour)) == [*expected, late]
        # A gap of 1110 s exactly joins it (the boundary continues a session): t..t+36 min,
        # 11.5 + 0.125 = 11.625 DC, 7 readings, 290 + 90 = 380 °C; 1 µs less splits it again.
        assert sessions(_sessions_request("EV-L", t, hour, 1110 * SECOND)) == [
            ("CHG-L1", t, t + 36 * MINUTE, 11.625, 7, 380.0, 7),
            expected[1],
        ]
        assert sessions(_sessions_request("EV-L", t, hour, 1110 * SECOND - 1)) == [
            *expected,
            late,
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


def test_200_sessions_in_a_day_are_attributed_in_one_call(
    monkeypatch: pytest.MonkeyPatch,
    analytics: Analytics,
    meter_server: InProcessServer,
    vehicle_server: InProcessServer,
) -> None:
    """A vehicle with 200 sessions in a day gets every session's AC from one
    AttributeConsumption call, whatever their number."""
    from services.analytics import downstream

    calls: list[int] = []
    attribute = downstream.Downstream.attribute

    def counted(self: Any, sessions: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(sessions))
        return attribute(self, sessions, *args, **kwargs)

    monkeypatch.setattr(downstream.Downstream, "attribute", counted)
    # Session k (k = 0..199) starts at D + k * 432 s (200 * 432 s = 24 h) on CHG-(k mod 5):
    # the vehicle reports 0.375 kWh DC at +60, +120, +180 s, and so does the charger's meter
    # with 0.5 kWh, plus 0.125 kWh at +300 s (standby, after the vehicle left).
    starts = [D + k * 432 * SECOND for k in range(200)]
    chargers = [f"CHG-{k % 5}" for k in range(200)]
    ingest_vehicles(
        vehicle_server,
        [
            vehicle("EV-MANY", c, s + m * MINUTE, 0.375)
            for c, s in zip(chargers, starts, strict=True)
            for m in (1, 2, 3)
        ],
    )
    ingest_meters(
        meter_server,
        [
            meter(c, s + offset, kwh)
            for c, s in zip(chargers, starts, strict=True)
            for offset, kwh in ((MINUTE, 0.5), (2 * MINUTE, 0.5), (3 * MINUTE, 0.5))
        ]
        + [meter(c, s + 5 * MINUTE, 0.125) for c, s in zip(chargers, starts, strict=True)],
    )
    performance = analytics.performance("EV-MANY", end=D + DAY, window=DAY)
    # On one charger, the vehicle comes back 5 * 432 = 2160 s later: 2040 s after its last
    # reading there, beyond the reach (and a silence, left out of the usual period: 60 s). So
    # each visit is a session of its own, start..start+180 s, its first reading covering the
    # usual minute before it. The meter likewise (1920 s after its standby reading): intervals
    # start..+60, +60..+120, +120..+180 overlap the session alone, 3 * 0.5 = 1.5 AC; the standby
    # one, +180..+300, only touches its end. DC 3 * 0.375 = 1.125; efficiency 0.75; loss 0.375.
    session = Figures(1.5, 1.125, (25.0,) * 3, 3, 0.75, 0.375, 25.0)
    # Totals: AC 200 * 1.5 = 300.0, DC 200 * 1.125 = 225.0, efficiency 0.75, loss 75.0,
    # 600 readings and 600 meter readings.
    check_performance(
        performance,
        start=D,
        end=D + DAY,
        totals=Figures(300.0, 225.0, (25.0,) * 600, 600, 0.75, 75.0, 25.0),
        sessions=[
            SessionExpected(c, s, s + 3 * MINUTE, session)
            for c, s in zip(chargers, starts, strict=True)
        ],
    )
    assert calls == [200]
