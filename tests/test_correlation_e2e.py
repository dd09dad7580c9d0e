"""The correlation rule on the data real fleets send, end to end: AnalyticsService in process,
dialling real in-process MeterService and VehicleService servers over gRPC, on real PostgreSQL.

Every reading covers the interval that ends at its timestamp (back to the previous reading of
its entity, or one usual period); sessions of different vehicles on one charger never share
time; each meter interval's energy goes to the sessions overlapping it; window edges cut by
time; and a figure that cannot be known is unset and flagged. Every expected figure is computed
by hand in the comments."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from energy.analytics.v1 import analytics_pb2
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc

from services.common.timeconv import micros_to_timestamp
from tests.conftest import InProcessServer, start_in_process
from tests.test_analytics_e2e import (
    HOUR,
    MINUTE,
    SECOND,
    Analytics,
    StartAnalytics,
    analytics,
    analytics_factory,
    at,
    exact,
    ingest_meters,
    ingest_vehicles,
    meter,
    start_analytics,
    ts_micros,
    vehicle,
)

__all__ = ["analytics", "analytics_factory"]  # fixtures used by name

pytestmark = pytest.mark.e2e

Q = analytics_pb2.QualityFlag
MISSING = Q.QUALITY_FLAG_METER_DATA_MISSING
PARTIAL = Q.QUALITY_FLAG_METER_DATA_PARTIAL
CONCURRENT = Q.QUALITY_FLAG_CONCURRENT_SESSIONS
IMPLAUSIBLE = Q.QUALITY_FLAG_IMPLAUSIBLE_METER_DATA
TWO_CHARGERS = Q.QUALITY_FLAG_VEHICLE_ON_TWO_CHARGERS
OUT_OF_RANGE = Q.QUALITY_FLAG_EFFICIENCY_OUT_OF_RANGE


def every(first: int, step: int, count: int) -> list[int]:
    return [first + i * step for i in range(count)]


def span(message: analytics_pb2.SessionPerformance) -> tuple[str, int, int]:
    return (message.charger_id, ts_micros(message.start_time), ts_micros(message.end_time))


def check(
    message: analytics_pb2.VehiclePerformance | analytics_pb2.SessionPerformance,
    *,
    ac: float | None,
    dc: float,
    coverage: float,
    flags: Sequence[int] = (),
    meter_points: int | None = None,
) -> None:
    """AC, DC, efficiency and loss (derived from the hand-computed AC and DC), coverage and
    flags of a session or of the totals."""
    if isinstance(message, analytics_pb2.VehiclePerformance):
        ac_field, got_dc = "total_energy_consumed_ac", message.total_energy_delivered_dc
    else:
        ac_field, got_dc = "energy_consumed_ac", message.energy_delivered_dc
    assert got_dc == exact(dc)
    if ac is None:
        assert not message.HasField(ac_field)
        assert not message.HasField("efficiency_ratio")
        assert not message.HasField("energy_loss_kwh")
    else:
        assert getattr(message, ac_field) == exact(ac)
        assert message.energy_loss_kwh == exact(ac - dc)
        assert message.efficiency_ratio == exact(dc / ac)
    assert message.ac_coverage == exact(coverage)
    assert sorted(message.quality_flags) == sorted(flags)
    if meter_points is not None:
        assert message.meter_data_points == meter_points


# --- the worked cases -------------------------------------------------------------------------


def ingest_15_minute_meter_and_minute_vehicle(
    meter_server: InProcessServer, vehicle_server: InProcessServer
) -> None:
    """CHG-15M's 15-minute intervals: 3.0 kWh to 10:15, 3.0 to 10:30, 2.0 to 10:45; VH-15M on it
    reports 0.18 kWh a minute 10:01..10:40."""
    ingest_meters(
        meter_server,
        [
            meter("CHG-15M", at(10, 15), 3.0),
            meter("CHG-15M", at(10, 30), 3.0),
            meter("CHG-15M", at(10, 45), 2.0),
        ],
    )
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-15M", "CHG-15M", t, 0.18) for t in every(at(10, 1), MINUTE, 40)],
    )


def test_a_15_minute_meter_beside_a_vehicle_reporting_every_minute(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # A billing meter's 15-minute intervals: 3.0 kWh to 10:15, 3.0 to 10:30, 2.0 to 10:45. The
    # vehicle reports 0.18 kWh a minute 10:01..10:40: its session spans 10:00..10:40 (its first
    # reading's interval starts a minute earlier). All three meter intervals overlap it and no
    # other session: AC 3 + 3 + 2 = 8.0 (the 10:30-10:45 interval's energy was drawn inside the
    # session), DC 40 * 0.18 = 7.2, efficiency 0.9. Meter intervals cover all of 10:00..10:40.
    ingest_15_minute_meter_and_minute_vehicle(meter_server, vehicle_server)
    response = analytics.performance("VH-15M", end=at(12), window=4 * HOUR)
    [session] = response.sessions
    assert span(session) == ("CHG-15M", at(10), at(10, 40))
    check(session, ac=8.0, dc=7.2, coverage=1.0, meter_points=3)
    check(response, ac=8.0, dc=7.2, coverage=1.0, meter_points=3)
    assert session.efficiency_ratio == pytest.approx(0.9, rel=1e-12)


def test_a_window_edge_cuts_a_15_minute_interval_by_time(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # The same meter and vehicle, asked about the window ending at 10:35: the 10:30-10:45 meter
    # interval counts for its 5 minutes inside, 2.0 * 5 / 15; AC 3 + 3 + 2/3 = 6.6667. The
    # vehicle's readings 10:01..10:35 are inside: DC 35 * 0.18 = 6.3. Span 10:00..10:35.
    ingest_15_minute_meter_and_minute_vehicle(meter_server, vehicle_server)
    response = analytics.performance("VH-15M", end=at(10, 35), window=HOUR)
    [session] = response.sessions
    assert span(session) == ("CHG-15M", at(10), at(10, 35))
    check(session, ac=6.0 + 2.0 * 5 / 15, dc=35 * 0.18, coverage=1.0)
    # And a window starting at 10:20 takes 10/15 of the 10:15-10:30 interval (2.0), all of the
    # 10:30-10:45 one that the session overlaps inside (2.0): 4.0; DC 10:21..10:40 = 20 * 0.18.
    response = analytics.performance("VH-15M", end=at(11, 20), window=HOUR)
    [session] = response.sessions
    assert span(session) == ("CHG-15M", at(10, 20), at(10, 40))
    check(session, ac=4.0, dc=20 * 0.18, coverage=1.0)


def test_back_to_back_vehicles_on_one_charger_never_share_a_meter_interval(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # The meter reports at :00 of every minute: 1.0 kWh 10:01..10:30 (VH-SWA charging), then
    # 0.5 kWh 10:31..10:44 and 0.1667 (20 s of 0.5/min) at 10:45 (VH-SWB). VH-SWA reports 0.9 at
    # 10:01..10:30; VH-SWB plugs in at 10:30:00 and reports at :20, 0.15 at 10:30:20, then 0.45
    # at 10:31:20..10:44:20.
    tail = round(0.5 * 20 / 60, 6)
    ingest_meters(
        meter_server,
        [meter("CHG-SWAP", t, 1.0) for t in every(at(10, 1), MINUTE, 30)]
        + [meter("CHG-SWAP", t, 0.5) for t in every(at(10, 31), MINUTE, 14)]
        + [meter("CHG-SWAP", at(10, 45), tail)],
    )
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-SWA", "CHG-SWAP", t, 0.9) for t in every(at(10, 1), MINUTE, 30)]
        + [vehicle("VH-SWB", "CHG-SWAP", at(10, 30, 20), 0.15)]
        + [vehicle("VH-SWB", "CHG-SWAP", t, 0.45) for t in every(at(10, 31, 20), MINUTE, 14)],
    )
    a = analytics.performance("VH-SWA", end=at(12), window=4 * HOUR)
    b = analytics.performance("VH-SWB", end=at(12), window=4 * HOUR)
    # VH-SWA spans 10:00..10:30 and takes the 30 meter minutes inside it: AC 30.0, DC 27.0.
    [session_a] = a.sessions
    assert span(session_a) == ("CHG-SWAP", at(10), at(10, 30))
    check(session_a, ac=30.0, dc=27.0, coverage=1.0, meter_points=30)
    # VH-SWB's first interval would start at 10:29:20 (one usual minute back) but VH-SWA's
    # session ends at 10:30: VH-SWB spans 10:30..10:44:20. The meter intervals 10:30..10:31 ..
    # 10:44..10:45 overlap it alone: AC 14 * 0.5 + 0.166667 = 7.166667, DC 0.15 + 14 * 0.45 =
    # 6.45, efficiency 0.9. Coverage: the span (860 s) lies inside meter intervals.
    [session_b] = b.sessions
    assert span(session_b) == ("CHG-SWAP", at(10, 30), at(10, 44, 20))
    check(session_b, ac=14 * 0.5 + tail, dc=0.15 + 14 * 0.45, coverage=1.0, meter_points=15)
    assert session_b.efficiency_ratio == pytest.approx(0.9, rel=1e-5)
    # Nothing counted twice: the two add up to what the charger drew, 30 + 7.166667.
    assert a.total_energy_consumed_ac + b.total_energy_consumed_ac == exact(30.0 + 7.0 + tail)


def test_a_vehicle_that_charges_elsewhere_and_comes_back_starts_a_new_session(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # VH-AWAY charges on CHG-RA 10:01..10:10, on CHG-RB 10:12..10:15, and back on CHG-RA
    # 10:21..10:30, 0.9 kWh DC a minute; VH-MID charges on CHG-RA 10:12..10:19 in between. Back
    # on CHG-RA at 10:21, VH-AWAY's previous reading there (10:10) is within the reach, but it
    # reported on CHG-RB since: its interval is one usual minute (CHG-RA's gaps around it are
    # 60 s, and one of 660 s), not 11 minutes over VH-MID's session. CHG-RA's meter reads 1.0
    # kWh a minute 10:01..10:30, CHG-RB's 10:12..10:15.
    ingest_meters(
        meter_server,
        [meter("CHG-RA", t, 1.0) for t in every(at(10, 1), MINUTE, 30)]
        + [meter("CHG-RB", t, 1.0) for t in every(at(10, 12), MINUTE, 4)],
    )
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-AWAY", "CHG-RA", t, 0.9) for t in every(at(10, 1), MINUTE, 10)]
        + [vehicle("VH-AWAY", "CHG-RB", t, 0.9) for t in every(at(10, 12), MINUTE, 4)]
        + [vehicle("VH-AWAY", "CHG-RA", t, 0.9) for t in every(at(10, 21), MINUTE, 10)]
        + [vehicle("VH-MID", "CHG-RA", t, 0.9) for t in every(at(10, 12), MINUTE, 8)],
    )
    away = analytics.performance("VH-AWAY", end=at(11), window=2 * HOUR)
    mid = analytics.performance("VH-MID", end=at(11), window=2 * HOUR)
    # Three sessions, none flagged: CHG-RA 10:00..10:10 takes the meter minutes to 10:10 (10.0
    # AC, 9.0 DC); CHG-RB 10:11..10:15 its four minutes (4.0, 3.6); CHG-RA 10:20..10:30 the
    # minutes (10:20, 10:21] .. (10:29, 10:30] (10.0, 9.0).
    assert [span(s) for s in away.sessions] == [
        ("CHG-RA", at(10), at(10, 10)),
        ("CHG-RB", at(10, 11), at(10, 15)),
        ("CHG-RA", at(10, 20), at(10, 30)),
    ]
    check(away.sessions[0], ac=10.0, dc=9.0, coverage=1.0, meter_points=10)
    check(away.sessions[1], ac=4.0, dc=3.6, coverage=1.0, meter_points=4)
    check(away.sessions[2], ac=10.0, dc=9.0, coverage=1.0, meter_points=10)
    check(away, ac=24.0, dc=21.6, coverage=1.0)
    # VH-MID, 10:11..10:19, alone on CHG-RA then: its eight meter minutes (8.0, 7.2), no flag.
    [session] = mid.sessions
    assert span(session) == ("CHG-RA", at(10, 11), at(10, 19))
    check(session, ac=8.0, dc=7.2, coverage=1.0, meter_points=8)
    # CHG-RA gave 10 + 8 + 10 of its 30 kWh; (10:10, 10:11] and (10:19, 10:20] are standby.


def test_no_interval_is_longer_than_the_lookaround_whatever_the_reach(database_url: str) -> None:
    # MAX_READING_INTERVAL_SECONDS = 20 on all three services: the lookaround is 40 s, and a
    # reading with no other within 40 s has a usual period of 40 s, not 60 s (a longer interval
    # would reach past the ranges read around the sessions). CHG-SHORT's meter reads 0.0 at
    # T-600 s, 1.0 at T+50 s, 0.0 at T+650 s: the 1.0 covers (T+10, T+50]. VH-Y reads 0.01 on it
    # every 10 s T-100..T (span T-110..T), twice on CHG-ELSE (T+20, T+30), and again T+90..T+150
    # (a new session, span T+80..T+150); VH-X reads at T+55 and T+65 (span T+45..T+65).
    settings = {"max_reading_interval_seconds": 20.0}
    meters = start_in_process("meter", database_url, **settings)
    vehicles = start_in_process("vehicle", database_url, **settings)
    analytics = start_analytics(database_url, meters.target, vehicles.target, **settings)
    try:
        t = at(10)
        ingest_meters(
            meters,
            [
                meter("CHG-SHORT", t - 600 * SECOND, 0.0),
                meter("CHG-SHORT", t + 50 * SECOND, 1.0),
                meter("CHG-SHORT", t + 650 * SECOND, 0.0),
            ],
        )
        ingest_vehicles(
            vehicles,
            [vehicle("VH-Y", "CHG-SHORT", t + k * 10 * SECOND, 0.01) for k in range(-10, 1)]
            + [vehicle("VH-Y", "CHG-ELSE", t + k * 10 * SECOND, 0.01) for k in (2, 3)]
            + [vehicle("VH-Y", "CHG-SHORT", t + k * 10 * SECOND, 0.01) for k in range(9, 16)]
            + [vehicle("VH-X", "CHG-SHORT", t + k * SECOND, 0.01) for k in (55, 65)],
        )
        x = analytics.performance("VH-X", end=at(11), window=2 * HOUR)
        y = analytics.performance("VH-Y", end=at(11), window=2 * HOUR)
        # Only VH-X overlaps (T+10, T+50] (for its last 5 s): it takes the 1.0, covering 5 of
        # its 20 s. With a 60 s period the interval would start at T-10 and overlap VH-Y's
        # first session too: VH-X's request (VH-Y's session beyond its 40 s margin) took all
        # of it and VH-Y's 10 / 15 of it, 1.67 in all.
        [session] = x.sessions
        assert span(session) == ("CHG-SHORT", t + 45 * SECOND, t + 65 * SECOND)
        check(session, ac=1.0, dc=0.02, coverage=0.25, flags=[PARTIAL, OUT_OF_RANGE])
        assert [span(s) for s in y.sessions] == [
            ("CHG-SHORT", t - 110 * SECOND, t),
            ("CHG-ELSE", t + 10 * SECOND, t + 30 * SECOND),
            ("CHG-SHORT", t + 80 * SECOND, t + 150 * SECOND),
        ]
        for item in y.sessions:  # no meter interval reaches any of them
            assert not item.HasField("energy_consumed_ac")
            assert list(item.quality_flags) == [MISSING]
    finally:
        analytics.close()
        vehicles.running.shutdown(5)
        meters.running.shutdown(5)


def test_a_session_on_a_charger_that_never_reported_has_no_ac_figures(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # The meter reports as CHG-CASE; the vehicle's gateway names it chg-case (another id: ids
    # are case-sensitive). Nothing is known of the AC side of the session: AC, efficiency and
    # loss unset (not 0 and -5.4), coverage 0, METER_DATA_MISSING on the session and the totals.
    ingest_meters(meter_server, [meter("CHG-CASE", t, 0.2) for t in every(at(14, 1), MINUTE, 30)])
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-CASE", "chg-case", t, 0.18) for t in every(at(14, 1), MINUTE, 30)],
    )
    response = analytics.performance("VH-CASE", end=at(15), window=HOUR)
    [session] = response.sessions
    assert span(session) == ("chg-case", at(14), at(14, 30))
    check(session, ac=None, dc=30 * 0.18, coverage=0.0, flags=[MISSING], meter_points=0)
    check(response, ac=None, dc=30 * 0.18, coverage=0.0, flags=[MISSING], meter_points=0)


def test_wh_sent_as_kwh_is_excluded_and_flagged(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # A charger sends 250 "kWh" a minute (it means Wh): 250 kWh in 60 s is 15,000 kW, above
    # MAX_CHARGER_POWER_KW (1000). Every interval is excluded: nothing covers the span, AC and
    # efficiency unset, IMPLAUSIBLE_METER_DATA and METER_DATA_PARTIAL (readings there, none usable).
    ingest_meters(meter_server, [meter("CHG-WH", t, 250.0) for t in every(at(10, 1), MINUTE, 30)])
    ingest_vehicles(
        vehicle_server, [vehicle("VH-WH", "CHG-WH", t, 0.225) for t in every(at(10, 1), MINUTE, 30)]
    )
    response = analytics.performance("VH-WH", end=at(11), window=HOUR)
    [session] = response.sessions
    check(session, ac=None, dc=30 * 0.225, coverage=0.0, flags=[PARTIAL, IMPLAUSIBLE])
    check(response, ac=None, dc=30 * 0.225, coverage=0.0, flags=[PARTIAL, IMPLAUSIBLE])


def test_one_implausible_interval_is_excluded_and_the_rest_counts(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # 1.0 kWh a minute 10:01..10:10, but 10:05 says 500 (30,000 kW): excluded. AC = 9 * 1.0,
    # coverage 9/10 of the span 10:00..10:10 (PARTIAL), DC 10 * 0.8 = 8.0: efficiency 0.889.
    ingest_meters(
        meter_server,
        [
            meter("CHG-SPIKE", t, 500.0 if t == at(10, 5) else 1.0)
            for t in every(at(10, 1), MINUTE, 10)
        ],
    )
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-SPIKE", "CHG-SPIKE", t, 0.8) for t in every(at(10, 1), MINUTE, 10)],
    )
    response = analytics.performance("VH-SPIKE", end=at(11), window=HOUR)
    check(response, ac=9.0, dc=8.0, coverage=0.9, flags=[PARTIAL, IMPLAUSIBLE], meter_points=9)


def test_a_15_minute_meter_split_between_back_to_back_vehicles(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    #          10:00           10:15           10:30           10:45
    # meter    |---- 3.0 ------|---- 3.0 ------|---- 1.5 ------|
    # VH-X     [==== 10:00 .. 10:20 ====]
    # VH-Y                              [=== 10:20 .. 10:40 ===]
    # VH-X reports 0.135 a minute 10:01..10:20 (its span 10:00..10:20), VH-Y 0.135 a minute
    # 10:21..10:40 (its first interval starts at 10:20 where VH-X's ended). The 10:15-10:30
    # interval is split by overlap: 5 min to VH-X, 10 to VH-Y (1.0 and 2.0). VH-X: 3.0 + 1.0 =
    # 4.0; VH-Y: 2.0 + all of the last interval (no one else overlaps it) 1.5 = 3.5. Together
    # 7.5, all the meter measured. DC: VH-X 20 * 0.135 = 2.7, VH-Y 2.7.
    ingest_meters(
        meter_server,
        [
            meter("CHG-BB", at(10, 15), 3.0),
            meter("CHG-BB", at(10, 30), 3.0),
            meter("CHG-BB", at(10, 45), 1.5),
        ],
    )
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-X", "CHG-BB", t, 0.135) for t in every(at(10, 1), MINUTE, 20)]
        + [vehicle("VH-Y", "CHG-BB", t, 0.135) for t in every(at(10, 21), MINUTE, 20)],
    )
    x = analytics.performance("VH-X", end=at(12), window=4 * HOUR)
    y = analytics.performance("VH-Y", end=at(12), window=4 * HOUR)
    assert [span(s) for s in x.sessions] == [("CHG-BB", at(10), at(10, 20))]
    assert [span(s) for s in y.sessions] == [("CHG-BB", at(10, 20), at(10, 40))]
    check(x, ac=4.0, dc=2.7, coverage=1.0, flags=[], meter_points=2)
    check(y, ac=3.5, dc=2.7, coverage=1.0, flags=[], meter_points=2)


def test_a_register_meter_reset_in_mid_session(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # The meter sends its register a minute apart: 120.0 at 10:00 (starts the count: its
    # interval's energy is unknown), 120.5, 121.0, 121.5 at 10:01..10:03, reset to 0.0 at 10:04
    # (a reboot: counted from zero, 0.0), then 0.5, 1.0 at 10:05, 10:06. The vehicle reports
    # 0.45 a minute 10:01..10:06: span 10:00..10:06. AC = 0.5 * 3 + 0 + 0.5 * 2 = 2.5; every
    # minute of the span is covered by a known interval (the unknown one ends at 10:00).
    values = [120.0, 120.5, 121.0, 121.5, 0.0, 0.5, 1.0]
    with meter_server.channel() as channel:
        readings = [
            meter_pb2.MeterReading(
                meter_id="CHG-REG",
                kwh_consumed_ac_register=value,
                voltage=230.0,
                timestamp=micros_to_timestamp(at(10, m)),
            )
            for m, value in enumerate(values)
        ]
        response = meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
            iter([meter_service_pb2.IngestReadingsRequest(readings=readings)]), timeout=60
        )
        assert response.accepted == len(values)
    ingest_vehicles(
        vehicle_server, [vehicle("VH-REG", "CHG-REG", t, 0.45) for t in every(at(10, 1), MINUTE, 6)]
    )
    response = analytics.performance("VH-REG", end=at(11), window=HOUR)
    # DC 6 * 0.45 = 2.7: efficiency 2.7 / 2.5 = 1.08, flagged.
    check(response, ac=2.5, dc=2.7, coverage=1.0, flags=[OUT_OF_RANGE], meter_points=6)


def test_a_dual_outlet_charger_shares_ac_by_dc_and_is_flagged(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # One meter behind two outlets: 1.0 kWh a minute 10:01..10:30. VH-L1 reports 0.54 a minute
    # at :00, VH-L2 0.36 at :30 (10:00:30..10:29:30): their readings interleave, concurrent.
    # VH-L1 spans 10:00..10:30; VH-L2 09:59:30..10:29:30, cut by nothing (they are concurrent,
    # not back to back). In time both cover, the meter's energy is shared by average DC power:
    # VH-L1 16.2 kWh / 1800 s, VH-L2 10.8 / 1800 s: 0.6 / 0.4. Each meter minute 10:01..10:30
    # is covered by both except 10:29:30..10:30 (VH-L1 alone) ... written out per interval:
    # interval (10:00, 10:01]: both cover all of it → 0.6 / 0.4; same to (10:29, 10:30] but its
    # last 30 s are VH-L1's alone: of the covered 60 s, 30 s shared (0.6/0.4) and 30 s VH-L1:
    # VH-L1 gets (30 * 0.6 + 30) / 60 = 0.8, VH-L2 0.2. VH-L1: 29 * 0.6 + 0.8 = 18.2;
    # VH-L2: 29 * 0.4 + 0.2 = 11.8 (meter interval (09:59, 10:00] does not exist: the first
    # reading's interval is (10:00, 10:01]). Together 30.0: the meter, once.
    ingest_meters(meter_server, [meter("CHG-DUAL", t, 1.0) for t in every(at(10, 1), MINUTE, 30)])
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-L1", "CHG-DUAL", t, 0.54) for t in every(at(10, 1), MINUTE, 30)]
        + [vehicle("VH-L2", "CHG-DUAL", t, 0.36) for t in every(at(10, 0, 30), MINUTE, 30)],
    )
    l1 = analytics.performance("VH-L1", end=at(11), window=2 * HOUR)
    l2 = analytics.performance("VH-L2", end=at(11), window=2 * HOUR)
    assert [span(s) for s in l1.sessions] == [("CHG-DUAL", at(10), at(10, 30))]
    assert [span(s) for s in l2.sessions] == [("CHG-DUAL", at(9, 59, 30), at(10, 29, 30))]
    check(l1, ac=18.2, dc=30 * 0.54, coverage=1.0, flags=[CONCURRENT])
    # VH-L2's span starts 30 s before the first meter interval: 1770 of 1800 s covered.
    check(l2, ac=11.8, dc=30 * 0.36, coverage=1770 / 1800, flags=[CONCURRENT])
    assert l1.total_energy_consumed_ac + l2.total_energy_consumed_ac == exact(30.0)


def test_a_vehicle_reporting_two_chargers_at_once_is_flagged(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # VH-TWO's gateway alternates between CHG-P (at :00) and CHG-Q (at :30) 10:00..10:09: two
    # sessions whose readings interleave, both flagged. Each charger's meter reports 1.0 a
    # minute at :00 10:00..10:10 and each session takes the meter intervals it overlaps:
    # CHG-P session 09:59..10:09 (10 readings): intervals (09:59, 10:00] .. (10:08, 10:09]: 10.0;
    # CHG-Q session 09:59:30..10:09:30: intervals (09:59, 10:00] .. (10:09, 10:10]: 11.0.
    ingest_meters(
        meter_server,
        [meter(c, t, 1.0) for c in ("CHG-P", "CHG-Q") for t in every(at(9, 59), MINUTE, 12)],
    )
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-TWO", "CHG-P", t, 0.5) for t in every(at(10), MINUTE, 10)]
        + [vehicle("VH-TWO", "CHG-Q", t, 0.5) for t in every(at(10, 0, 30), MINUTE, 10)],
    )
    response = analytics.performance("VH-TWO", end=at(11), window=2 * HOUR)
    assert [span(s) for s in response.sessions] == [
        ("CHG-P", at(9, 59), at(10, 9)),
        ("CHG-Q", at(9, 59, 30), at(10, 9, 30)),
    ]
    # Efficiency 5 / 10 = 0.5 (the edge of the plausible range) and 5 / 11 = 0.45 (below it).
    p, q = response.sessions
    check(p, ac=10.0, dc=5.0, coverage=1.0, flags=[TWO_CHARGERS])
    check(q, ac=11.0, dc=5.0, coverage=1.0, flags=[TWO_CHARGERS, OUT_OF_RANGE])
    check(response, ac=21.0, dc=10.0, coverage=1.0, flags=[TWO_CHARGERS, OUT_OF_RANGE])


def test_a_vehicle_polled_every_10_minutes_has_one_session(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # A vehicle polled every 10 minutes (1.5 kWh each, 10:10..11:00) beside a minute meter
    # (0.2 kWh 10:01..11:00): one session 10:00..11:00 (intervals chain within the reach), not
    # six; AC 60 * 0.2 = 12.0, DC 6 * 1.5 = 9.0.
    ingest_meters(meter_server, [meter("CHG-POLL", t, 0.2) for t in every(at(10, 1), MINUTE, 60)])
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-POLL", "CHG-POLL", t, 1.5) for t in every(at(10, 10), 10 * MINUTE, 6)],
    )
    response = analytics.performance("VH-POLL", end=at(12), window=4 * HOUR)
    assert [span(s) for s in response.sessions] == [("CHG-POLL", at(10), at(11))]
    check(response, ac=12.0, dc=9.0, coverage=1.0, meter_points=60)


def test_a_meter_that_stops_in_mid_session_is_partial(
    meter_server: InProcessServer, vehicle_server: InProcessServer, analytics: Analytics
) -> None:
    # The meter reports 1.0 a minute 10:01..10:15, then nothing; the vehicle 0.9 a minute
    # 10:01..10:30. Meter intervals cover 10:00..10:15 of the span 10:00..10:30: coverage 0.5,
    # AC 15.0 (of the covered half), DC 27.0: efficiency 1.8, flagged partial and out of range.
    ingest_meters(meter_server, [meter("CHG-STOP", t, 1.0) for t in every(at(10, 1), MINUTE, 15)])
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-STOP", "CHG-STOP", t, 0.9) for t in every(at(10, 1), MINUTE, 30)],
    )
    response = analytics.performance("VH-STOP", end=at(11), window=HOUR)
    check(response, ac=15.0, dc=27.0, coverage=0.5, flags=[PARTIAL, OUT_OF_RANGE])


def test_a_reading_stamped_at_the_window_start_belongs_to_the_window_before(
    meter_server: InProcessServer,
    vehicle_server: InProcessServer,
    analytics_factory: StartAnalytics,
) -> None:
    # Readings 09:58, 09:59, 10:00 (0.5 each, meter 1.0): the window [10:00, 11:00) holds none
    # of their intervals, so no session; the window [09:00, 10:00) holds all three.
    analytics = analytics_factory()
    ingest_meters(meter_server, [meter("CHG-EDGE", t, 1.0) for t in every(at(9, 58), MINUTE, 3)])
    ingest_vehicles(
        vehicle_server,
        [vehicle("VH-EDGE", "CHG-EDGE", t, 0.5) for t in every(at(9, 58), MINUTE, 3)],
    )
    after = analytics.performance("VH-EDGE", end=at(11), window=HOUR)
    assert list(after.sessions) == []
    before = analytics.performance("VH-EDGE", end=at(10), window=HOUR)
    assert [span(s) for s in before.sessions] == [("CHG-EDGE", at(9, 57), at(10))]
    check(before, ac=3.0, dc=1.5, coverage=1.0, meter_points=3)
