"""GetVehiclePerformance from the hourly rollups equals GetVehiclePerformance from the readings,
end to end: AnalyticsService in process dialling real in-process MeterService and
VehicleService over gRPC, on real PostgreSQL.

Whole hours of a long window are taken from the rollups (VehicleService's sessions, MeterService's
attributions); the rest, and every hour marked stale, from the readings. The random fleets of
tests/test_correlation_property.py (meters every 10 s to 15 min with silences, vehicles sharing
chargers back to back and at once, switching chargers, late shuffled readings) are answered
once with every hour marked stale (the readings alone) and once after the maintenance loop made
the rollups; every figure must agree (times and counts exactly, energies to 1e-9: the sums are
taken in another order). A hand-computed fleet shows the rollups are what is read, that a late
reading sends its hours back to the readings until they are made again, and that a silence
inside an hour (a session ending in it) is read from the readings."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import psycopg
import pytest
from energy.analytics.v1 import analytics_pb2, analytics_service_pb2
from energy.vehicle.v1 import vehicle_service_pb2
from energy.vehicle.v1.vehicle_service_pb2 import IngestReadingsRequest
from energy.vehicle.v1.vehicle_service_pb2_grpc import VehicleServiceStub

from services.common.config import Settings
from services.common.maintenance import Maintenance, MaintenanceRun
from services.common.partitions import DailyPartitions
from services.meter.component import rollups as meter_rollups
from services.vehicle.component import rollups as vehicle_rollups
from tests.conftest import InProcessServer
from tests.test_analytics_e2e import (
    HOUR,
    MINUTE,
    StartAnalytics,
    analytics_factory,
    at,
    duration,
    ingest_meters,
    ingest_vehicles,
    meter,
    ts,
    vehicle,
)
from tests.test_correlation_property import FLEET_MAKERS, Fleet, generate, ingest

__all__ = ["analytics_factory"]  # fixture used by name

pytestmark = pytest.mark.e2e

RELATIVE = 1e-9
NOW = at(24 * 40)  # the maintenance runs' clock: every hour of the fleets long settled


class Loop(Maintenance):
    """A maintenance loop of the test's own, as another replica's would be: a run waits for
    the service's own run at start to end."""

    def run_once(self, now_us: int | None = None) -> MaintenanceRun:
        deadline = time.monotonic() + 30
        while not (run := super().run_once(now_us)).ran:
            assert time.monotonic() < deadline, "the service's own maintenance run never ended"
            time.sleep(0.05)
        return run


def loops(url: str) -> list[Loop]:
    settings = Settings(database_url=url)
    return [
        Loop(
            lambda: psycopg.connect(url),
            DailyPartitions(schema, table),
            rollups=made(settings),
            retention_days=0,
            interval_seconds=3600,
            name=schema,
        )
        for schema, table, made in (
            ("meter", "meter_readings", meter_rollups),
            ("vehicle", "vehicle_readings", vehicle_rollups),
        )
    ]


def make_rollups(url: str) -> None:
    """Both services' rollups made up to NOW, nothing left stale."""
    for loop in loops(url):
        loop.run_once(now_us=NOW)
    assert stale(url) == {"meter": 0, "vehicle": 0}


def mark_everything_stale(url: str) -> None:
    """Every hour holding readings marked: every answer comes from the readings alone."""
    for loop in loops(url):
        loop.run_once(now_us=NOW)  # the service's first run done; rollups there to be ignored
    with psycopg.connect(url) as connection:
        for schema, table in (("meter", "meter_readings"), ("vehicle", "vehicle_readings")):
            connection.execute(
                f"INSERT INTO {schema}.rollup_invalidations (hour) "
                f"SELECT DISTINCT date_trunc('hour', read_time, 'UTC') FROM {schema}.{table}"
            )


def mark_every_third_hour_stale(url: str) -> None:
    """Every third hour holding readings marked (the rest served from the rollups made)."""
    with psycopg.connect(url) as connection:
        for schema, table in (("meter", "meter_readings"), ("vehicle", "vehicle_readings")):
            connection.execute(
                f"INSERT INTO {schema}.rollup_invalidations (hour) "
                f"SELECT DISTINCT date_trunc('hour', read_time, 'UTC') FROM {schema}.{table} "
                "WHERE CAST(date_part('hour', read_time AT TIME ZONE 'UTC') AS int) % 3 = 0"
            )


def stale(url: str) -> dict[str, int]:
    with psycopg.connect(url) as connection:
        return {
            schema: connection.execute(
                f"SELECT count(*) FROM {schema}.rollup_invalidations"
            ).fetchone()[0]  # type: ignore[index]
            for schema in ("meter", "vehicle")
        }


def stale_hours(url: str, schema: str) -> list[int]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT DISTINCT round(date_part('epoch', hour) * 1000000)::int8 "
            f"FROM {schema}.rollup_invalidations ORDER BY 1"
        ).fetchall()
    return [hour for (hour,) in rows]


def same(raw: object, rolled: object, where: str) -> None:
    """Two messages field by field: floats to RELATIVE, everything else exactly."""
    if isinstance(raw, float):
        assert isinstance(rolled, float) and math.isclose(
            raw, rolled, rel_tol=RELATIVE, abs_tol=1e-12
        ), f"{where}: {raw!r} from the readings, {rolled!r} from the rollups"
        return
    if hasattr(raw, "ListFields"):
        raw_fields = {f.name: v for f, v in raw.ListFields()}
        rolled_fields = {f.name: v for f, v in rolled.ListFields()}  # type: ignore[attr-defined]
        assert raw_fields.keys() == rolled_fields.keys(), (
            f"{where}: fields {sorted(raw_fields)} from the readings, {sorted(rolled_fields)}"
        )
        for name, value in raw_fields.items():
            same(value, rolled_fields[name], f"{where}.{name}")
        return
    if isinstance(raw, list | tuple) or (hasattr(raw, "__len__") and not isinstance(raw, str)):
        raw_items, rolled_items = list(raw), list(rolled)  # type: ignore[call-overload]
        assert len(raw_items) == len(rolled_items), f"{where}: {raw_items} vs {rolled_items}"
        for index, (a, b) in enumerate(zip(raw_items, rolled_items, strict=True)):
            same(a, b, f"{where}[{index}]")
        return
    assert raw == rolled, f"{where}: {raw!r} from the readings, {rolled!r} from the rollups"


# The property test's fleets have two to four hours of window; each is asked about over it and
# over six hours more on each side (mostly whole hours, some of them shared by two vehicles).
# Its slots last at most 80 minutes: a few of its seeds again with slots of up to 5 hours, so
# that sessions hold whole hours of meter readings.
FLEETS: dict[str, Callable[[], Fleet]] = {
    **{name: make for name, make in FLEET_MAKERS.items() if not name.startswith("seed-")},
    **{f"seed-{seed}": FLEET_MAKERS[f"seed-{seed}"] for seed in range(0, 40, 4)},
    **{f"long-seed-{seed}": partial(generate, seed, 5 * HOUR) for seed in range(10)},
}


@pytest.mark.parametrize("name", FLEETS)
def test_performance_and_charger_listing_from_rollups_equal_them_from_readings(
    name: str,
    database_url: str,
    meter_server: InProcessServer,
    vehicle_server: InProcessServer,
    analytics_factory: StartAnalytics,
) -> None:
    """Every vehicle's performance, every charger's efficiency (ListChargerEfficiencies), and
    VehicleService's sessions on every charger over whole windows (ListChargerSessions by
    charger_ids, whose whole hours come from the rollups) agree with the same asked of the
    readings alone; the latter also agree with the same sessions asked for by ranges covering
    the windows (read from the readings by another statement) in both states; and so does
    every answer with every third hour marked stale (the rest from the rollups)."""
    fleet = FLEETS[name]()
    # The fleet's own gap, and one longer than the rollups store silences for (VehicleService
    # then reads every hour; MeterService still takes whole hours from its rollups).
    services = {
        gap: analytics_factory(session_gap_seconds=gap)
        for gap in (fleet.session_gap_seconds, 5400.0)
    }
    ingest(meter_server, vehicle_server, fleet)
    windows = [(fleet.start, fleet.end), (fleet.start - 6 * HOUR, fleet.end + 6 * HOUR)]
    vehicles = sorted({v for v, _, _, _ in fleet.vehicles})
    chargers = sorted({c for _, c, _, _ in fleet.vehicles} | set(fleet.meters))
    sessions_stub = VehicleServiceStub(vehicle_server.channel())

    def charger_sessions(gap: float, start: int, end: int, by_ranges: bool) -> object:
        request = vehicle_service_pb2.ListChargerSessionsRequest(
            start_time=ts(start), end_time=ts(end), session_gap=duration(round(gap * 1e6))
        )
        if by_ranges:  # far wider than the window: each is cut to the window's context
            for charger_id in chargers:
                request.ranges.add(
                    charger_id=charger_id,
                    start_time=ts(start - 24 * HOUR),
                    end_time=ts(end + 24 * HOUR),
                )
        else:
            request.charger_ids.extend(chargers)
        return sessions_stub.ListChargerSessions(request, timeout=30).sessions

    def answers() -> dict[tuple[object, ...], object]:
        found: dict[tuple[object, ...], object] = {}
        for gap, service in services.items():
            for start, end in windows:
                for vehicle_id in vehicles:
                    found["performance", gap, vehicle_id, start] = service.performance(
                        vehicle_id, end=end, window=end - start
                    )
                request = analytics_service_pb2.ListChargerEfficienciesRequest(
                    end_time=ts(end), window=duration(end - start), page_size=1000
                )
                found["listing", gap, start] = service.stub.ListChargerEfficiencies(
                    request, timeout=30
                )
                found["sessions", gap, start] = charger_sessions(gap, start, end, False)
                found["by ranges", gap, start] = charger_sessions(gap, start, end, True)
        return found

    mark_everything_stale(database_url)
    from_readings = answers()
    make_rollups(database_url)
    from_rollups = answers()
    mark_every_third_hour_stale(database_url)
    from_both = answers()
    for key, raw in from_readings.items():
        same(raw, from_rollups[key], f"{key} of {fleet.describe()}")
        same(raw, from_both[key], f"{key}, every third hour stale, of {fleet.describe()}")
        if key[0] == "by ranges":
            whole = ("sessions", *key[1:])
            same(raw, from_readings[whole], f"{whole} of {fleet.describe()}")
            same(raw, from_rollups[whole], f"{whole} of {fleet.describe()}")
    assert any(from_rollups["sessions", gap, start] for gap in services for start, _ in windows)


# --- by hand -------------------------------------------------------------------------------
# V on C from 01:00 to 07:00 (a reading every minute, 01:01..07:00, 0.125 kWh DC each) but for
# a silence from 03:20 to 03:41 (no readings 03:21..03:40): longer than the reach (15 min), so
# 03:41's interval is its usual minute back, from 03:40, 20 min after 03:20: two sessions at the
# 300 s gap. C's meter reads every minute 00:00..08:00, 0.25 kWh each. Every energy is dyadic:
# sums are exact in any order.
START, END = at(0), at(8)


def readings_by_hand() -> tuple[list, list]:
    silence = range(at(3, 21), at(3, 41), MINUTE)
    vehicles = [
        vehicle("V", "C", t, 0.125)
        for t in range(at(1, 1), at(7, 0) + 1, MINUTE)
        if t not in silence
    ]
    meters = [meter("C", t, 0.25) for t in range(at(0), at(8) + 1, MINUTE)]
    return meters, vehicles


def expected_sessions() -> list[tuple[int, int, int, float, float]]:
    """(start, end, DC readings, DC kWh, AC kWh): the first session's span starts a minute
    before 01:01 (its first interval is one usual period) and ends at 03:20; the second runs
    03:40-07:00. Each minute of span holds one meter interval."""
    first = (at(3, 20) - at(1, 0)) // MINUTE  # 140 readings, 01:01..03:20
    second = (at(7, 0) - at(3, 40)) // MINUTE  # 200 readings, 03:41..07:00
    return [
        (at(1, 0), at(3, 20), first, first * 0.125, first * 0.25),
        (at(3, 40), at(7, 0), second, second * 0.125, second * 0.25),
    ]


def figures(answer: analytics_pb2.VehiclePerformance) -> list[tuple[int, int, int, float, float]]:
    return [
        (
            session.start_time.seconds * 1_000_000,
            session.end_time.seconds * 1_000_000,
            session.data_points,
            session.energy_delivered_dc,
            session.energy_consumed_ac,
        )
        for session in answer.sessions
    ]


def bump(url: str, hour: int, kwh: float) -> None:
    """Adds `kwh` to hour `hour`'s rollups of V (DC) and C (attributable AC), by hand."""
    moment = datetime.fromtimestamp(hour / 1e6, UTC)
    with psycopg.connect(url) as connection:
        connection.execute(
            "UPDATE vehicle.vehicle_rollups_hourly SET kwh_delivered_dc = kwh_delivered_dc + %s "
            "WHERE vehicle_id = 'V' AND hour = %s",
            (kwh, moment),
        )
        connection.execute(
            "UPDATE meter.meter_rollups_hourly SET attributable_kwh = attributable_kwh + %s "
            "WHERE meter_id = 'C' AND hour = %s",
            (kwh, moment),
        )


def test_whole_hours_come_from_the_rollups_and_late_readings_send_them_back(
    database_url: str,
    meter_server: InProcessServer,
    vehicle_server: InProcessServer,
    analytics_factory: StartAnalytics,
) -> None:
    analytics = analytics_factory()
    meters, vehicles = readings_by_hand()
    ingest_meters(meter_server, meters)
    ingest_vehicles(vehicle_server, vehicles)
    mark_everything_stale(database_url)
    assert figures(analytics.performance("V", end=END, window=END - START)) == expected_sessions()

    make_rollups(database_url)
    assert figures(analytics.performance("V", end=END, window=END - START)) == expected_sessions()
    # 05:00-06:00 is whole inside the second session: both sides read it from the rollups.
    bump(database_url, at(5), 1000.0)
    first, second = expected_sessions()
    bumped = (*second[:3], second[3] + 1000.0, second[4] + 1000.0)
    assert figures(analytics.performance("V", end=END, window=END - START)) == [first, bumped]
    # 03:00-04:00 holds the silence (the second session's start): read from the readings, a
    # bumped rollup there changes nothing.
    bump(database_url, at(5), -1000.0)
    bump(database_url, at(3), 1000.0)
    assert figures(analytics.performance("V", end=END, window=END - START)) == expected_sessions()
    bump(database_url, at(3), -1000.0)

    # A late vehicle reading at 05:30 (already stored: a duplicate) marks nothing; a late new
    # meter reading at 05:30:30 (0.5 kWh) and a late vehicle reading there (0.25 kWh) mark their
    # hours: those are read from the readings until the loop makes them again.
    bump(database_url, at(5), 1000.0)
    with vehicle_server.channel() as channel:
        resent = VehicleServiceStub(channel).IngestReadings(
            iter([IngestReadingsRequest(readings=[vehicle("V", "C", at(5, 30), 0.125)])]),
            timeout=30,
        )
    assert (resent.accepted, resent.duplicates) == (0, 1)
    assert stale(database_url) == {"meter": 0, "vehicle": 0}
    ingest_meters(meter_server, [meter("C", at(5, 30, 30), 0.5)])
    ingest_vehicles(vehicle_server, [vehicle("V", "C", at(5, 30, 30), 0.25)])
    # Marked: from a lookaround (30 min) before 05:00 to a lookaround after 06:00, and for the
    # vehicle an hour more (the silences its rollups store).
    assert stale_hours(database_url, "meter") == [at(4), at(5), at(6)]
    assert stale_hours(database_url, "vehicle") == [at(4), at(5), at(6), at(7)]
    # 05:30:30 splits 05:31's minute: its 0.25 kWh meter interval and 0.125 kWh vehicle
    # interval now end at 05:31 from 05:30:30, and 05:30:30's own come in whole.
    late = (*second[:2], second[2] + 1, second[3] + 0.25, second[4] + 0.5)
    assert figures(analytics.performance("V", end=END, window=END - START)) == [first, late]
    make_rollups(database_url)
    assert figures(analytics.performance("V", end=END, window=END - START)) == [first, late]


OUT_OF_RANGE = analytics_pb2.QualityFlag.QUALITY_FLAG_EFFICIENCY_OUT_OF_RANGE


def test_a_lossless_session_is_not_flagged_out_of_range_from_the_rollups(
    database_url: str,
    meter_server: InProcessServer,
    vehicle_server: InProcessServer,
    analytics_factory: StartAnalytics,
) -> None:
    """V charges on C every minute 01:01..08:00, 1.1 kWh DC a reading; C's meter reads every
    minute 00:00..09:00, 1.1 kWh AC a reading. Window 00:00-09:00, session gap 300 s.

    By hand: one session, 01:00 (its first interval one usual minute back) to 08:00, 420 DC
    readings: DC = 420 x 1.1 = 462 kWh. The meter intervals inside the span are those of the
    readings 01:01..08:00, 420 of 1.1 kWh, each wholly the session's: AC = 462 kWh. Efficiency
    DC / AC = 1.0, inside [0.5, 1.0]: no EFFICIENCY_OUT_OF_RANGE, on the session nor the
    totals. From the readings the two sums are the same 420 additions of 1.1 (ratio exactly
    1.0, no flag). From the rollups DC is summed per hour and then over hours, AC as the
    served hours' sums plus the edges: they come out an ulp apart (DC 462.0000000000004, AC
    462.00000000000034), efficiency 1.0000000000000002: the range is held to 1e-9, so that a
    flag is never decided by the order of a sum."""
    analytics = analytics_factory()
    ingest_meters(meter_server, [meter("C", t, 1.1) for t in range(at(0), at(9) + 1, MINUTE)])
    ingest_vehicles(
        vehicle_server, [vehicle("V", "C", t, 1.1) for t in range(at(1, 1), at(8) + 1, MINUTE)]
    )
    start, end = at(0), at(9)

    mark_everything_stale(database_url)
    raw = analytics.performance("V", end=end, window=end - start)
    assert [s.data_points for s in raw.sessions] == [420]
    assert raw.sessions[0].energy_delivered_dc == raw.sessions[0].energy_consumed_ac
    assert OUT_OF_RANGE not in raw.quality_flags

    make_rollups(database_url)
    rolled = analytics.performance("V", end=end, window=end - start)
    assert [s.data_points for s in rolled.sessions] == [420]
    assert rolled.sessions[0].energy_delivered_dc == pytest.approx(462.0, rel=1e-12)
    assert rolled.sessions[0].energy_consumed_ac == pytest.approx(462.0, rel=1e-12)
    assert OUT_OF_RANGE not in rolled.sessions[0].quality_flags, (
        rolled.sessions[0].energy_delivered_dc,
        rolled.sessions[0].energy_consumed_ac,
        rolled.sessions[0].efficiency_ratio,
    )
    assert list(rolled.quality_flags) == list(raw.quality_flags)


def bump_meter(url: str, charger_id: str, hour: int, kwh: float) -> None:
    """Adds `kwh` to the attributable AC of hour `hour`'s rollup of `charger_id`, by hand."""
    with psycopg.connect(url) as connection:
        connection.execute(
            "UPDATE meter.meter_rollups_hourly SET attributable_kwh = attributable_kwh + %s "
            "WHERE meter_id = %s AND hour = %s",
            (kwh, charger_id, datetime.fromtimestamp(hour / 1e6, UTC)),
        )


def test_a_charger_shared_back_to_back_is_listed_from_the_rollups_across_the_hand_over(
    database_url: str,
    meter_server: InProcessServer,
    vehicle_server: InProcessServer,
    analytics_factory: StartAnalytics,
) -> None:
    # D's meter reads 0.25 kWh every minute 00:00..08:00. V1 charges on it 01:01..04:00 (0.125
    # kWh DC a minute), V2 right after, 04:01..07:00 (0.1875). Every energy is dyadic: sums are
    # exact in any order.
    analytics = analytics_factory()
    ingest_meters(meter_server, [meter("D", t, 0.25) for t in range(at(0), at(8) + 1, MINUTE)])
    ingest_vehicles(
        vehicle_server,
        [vehicle("V1", "D", t, 0.125) for t in range(at(1, 1), at(4, 0) + 1, MINUTE)]
        + [vehicle("V2", "D", t, 0.1875) for t in range(at(4, 1), at(7, 0) + 1, MINUTE)],
    )
    request = analytics_service_pb2.ListChargerEfficienciesRequest(
        end_time=ts(END), window=duration(END - START)
    )

    def listed() -> tuple[float, float, float, float, int, int, float]:
        (row,) = analytics.stub.ListChargerEfficiencies(request, timeout=30).charger_efficiencies
        now = row.current
        assert row.charger_id == "D" and list(now.quality_flags) == []
        return (
            now.energy_consumed_ac,
            now.energy_delivered_dc,
            now.efficiency_ratio,
            now.standby_energy_kwh,
            now.session_count,
            now.vehicle_count,
            now.ac_coverage,
        )

    # V1's session spans 01:00-04:00 (its first interval is one usual minute), V2's 04:00-07:00:
    # the 360 meter intervals ending 01:01..07:00 are theirs (90.0 kWh AC; the one ending at
    # 01:00 only touches V1's start), DC 180 x 0.125 + 180 x 0.1875 = 56.25, efficiency 0.625.
    # The meter's 480 intervals in the window hold 120.0 kWh: 30.0 of standby.
    expected = (90.0, 56.25, 0.625, 30.0, 2, 2, 1.0)
    mark_everything_stale(database_url)
    assert listed() == expected
    make_rollups(database_url)
    assert listed() == expected
    # The two sessions touch, so their meter intervals are asked about as one span: 04:00-05:00,
    # which the hand-over at 04:00 is within a lookaround of, comes from the rollups too (asked
    # session by session, V1's end would send it to the readings).
    bump_meter(database_url, "D", at(4), 10.0)
    assert listed() == (100.0, 56.25, 0.5625, 30.0, 2, 2, 1.0)
