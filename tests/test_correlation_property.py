"""A property of the correlation rule over random fleets, end to end: AnalyticsService in
process, dialling real in-process MeterService and VehicleService servers over gRPC, on real
PostgreSQL (as tests/test_correlation_e2e.py does).

Nothing is counted twice: for every charger, the AC attributed to all sessions on it (summed
over every vehicle's GetVehiclePerformance for one window) never exceeds what its meter measured
in the window. That bound is computed here by hand from the generated readings, by the rule's
meter side alone (README, "How correlation works"): each meter reading covers the interval back
to the meter's previous reading when that is within the reach (900 s, or twice the meter's usual
period around the reading if larger), else one usual period; the part of it inside the window
[start, end) counts, in proportion to time. And the figures are coherent: coverage within
[0, 1], efficiency only with AC, loss exactly when AC.

Each fleet is drawn from a seed (its ids carry the seed): 1-3 chargers whose meters report every
10 s, 1, 5 or 15 min (a little jitter, sometimes a silence longer than the reach), a few vehicles
each polled every 10 s to 15 min, booked onto the chargers back to back, sometimes two on one
charger at once (interleaving readings), switching chargers; the window cuts intervals at both
edges, and some readings arrive late, shuffled, in a second stream. Two small fleets made by
hand pin down the two ways the random ones found of giving a meter interval out more than once
(see their docstrings)."""

from __future__ import annotations

import itertools
import random
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
from energy.analytics.v1 import analytics_pb2
from energy.meter.v1 import meter_pb2
from energy.vehicle.v1 import vehicle_pb2

from tests.conftest import InProcessServer
from tests.test_analytics_e2e import (
    HOUR,
    MINUTE,
    SECOND,
    StartAnalytics,
    analytics,
    analytics_factory,
    at,
    ingest_meters,
    ingest_vehicles,
    meter,
    ts_micros,
    vehicle,
)

__all__ = ["analytics", "analytics_factory"]  # fixtures used by name

pytestmark = pytest.mark.e2e

FLEETS = 40  # seeded random fleets, about half a second each
METER_PERIODS = (10 * SECOND, MINUTE, 5 * MINUTE, 15 * MINUTE)
VEHICLE_PERIODS = (
    10 * SECOND,
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
)
JITTER = 0.03  # each gap is its period ± 3 %
REACH = 900 * SECOND  # MAX_READING_INTERVAL_SECONDS
LOOKAROUND = 2 * REACH  # usual periods are taken up to this long
LATE = 0.15  # the share of readings sent late, shuffled, in a second stream
RELATIVE = 1e-9

MeterPoint = tuple[int, float]  # (time, kWh of the interval ending then)
VehiclePoint = tuple[str, str, int, float]  # (vehicle, charger, time, DC kWh)


@dataclass(frozen=True)
class Fleet:
    name: str
    start: int  # the window [start, end), micros
    end: int
    meters: dict[str, list[MeterPoint]]  # by charger, in time order
    vehicles: list[VehiclePoint]
    late_meters: list[tuple[str, int, float]]
    late_vehicles: list[VehiclePoint]
    bookings: list[tuple[str, str, int, int]]  # (vehicle, charger, from, to): how it was drawn
    session_gap_seconds: float = 300.0  # SESSION_GAP_SECONDS of the AnalyticsService asked

    def describe(self) -> str:
        lines = [f"fleet {self.name}: window [{self.start}, {self.end})"]
        for charger, points in self.meters.items():
            lines.append(f"  meter {charger}: {len(points)} readings {points[:3]}...")
        for vehicle_id, charger, begin, until in self.bookings:
            count = sum(1 for v, c, t, _ in self.vehicles if v == vehicle_id and begin < t <= until)
            lines.append(f"  {vehicle_id} on {charger} ({begin}, {until}]: {count} readings")
        return "\n".join(lines)


def jittered(rng: random.Random, period: int) -> int:
    return round(period * (1 + rng.uniform(-JITTER, JITTER)))


def gaps(points: list[MeterPoint]) -> list[int]:
    return [later - earlier for (earlier, _), (later, _) in itertools.pairwise(points)]


def generate(seed: int, longest_slot: int = 80 * MINUTE) -> Fleet:
    """The fleet of `seed`; a charger's slots last 15 minutes to `longest_slot`."""
    rng = random.Random(seed)
    prefix = f"PROP{seed}"
    start = at(10) + rng.randrange(HOUR)
    end = start + rng.randrange(2 * HOUR, 4 * HOUR)
    chargers = [f"{prefix}-CHG-{i}" for i in range(rng.randint(1, 3))]

    # Meters report from an hour before the window to an hour after it: a meter's first
    # interval (one period back from its first reading) never reaches into the window. A
    # silence longer than twice the reach lies inside the window, so that the interval of the
    # reading ending it (one usual period long) is inside it as well.
    meters: dict[str, list[MeterPoint]] = {}
    for charger in chargers:
        period = rng.choice(METER_PERIODS)
        silence = (0, 0)
        if rng.random() < 0.3:
            quiet_from = rng.randrange(start + 10 * MINUTE, end - 60 * MINUTE)
            silence = (quiet_from, quiet_from + rng.randrange(35 * MINUTE, 50 * MINUTE))
        points = []
        t = start - HOUR + rng.randrange(period)
        while t <= end + HOUR:
            if not silence[0] <= t <= silence[1]:
                points.append((t, round(rng.uniform(0.01, 2.0), 4)))
            t += jittered(rng, period)
        meters[charger] = points

    # Each charger's time cut into slots (back to back, sometimes an idle gap between), each
    # taken by a free vehicle, sometimes with a second one plugged in for part of it (two
    # outlets behind one meter). A vehicle's first reading in a slot comes less than one of its
    # periods after the slot's start: its inferred first interval reaches back into the slot
    # before (another vehicle's on this charger, or its own on another charger).
    slots = []
    for charger in chargers:
        a = start - 40 * MINUTE
        while a < end + 40 * MINUTE:
            b = a + rng.randrange(15 * MINUTE, longest_slot)
            slots.append((a, b, charger))
            a = b + (rng.randrange(2 * MINUTE, 20 * MINUTE) if rng.random() < 0.25 else 0)
    slots.sort()
    periods = {f"{prefix}-VH-{i}": rng.choice(VEHICLE_PERIODS) for i in range(rng.randint(2, 5))}
    booked: dict[str, list[tuple[int, int]]] = defaultdict(list)
    bookings: list[tuple[str, str, int, int]] = []

    def book(charger: str, a: int, b: int, busy: str | None = None) -> None:
        free = [
            v
            for v in periods
            if v != busy and all(until <= a or b <= begin for begin, until in booked[v])
        ]
        if free:
            chosen = rng.choice(free)
            booked[chosen].append((a, b))
            bookings.append((chosen, charger, a, b))

    for a, b, charger in slots:
        book(charger, a, b)
        if bookings and bookings[-1][1:] == (charger, a, b) and rng.random() < 0.3:
            length = b - a
            book(
                charger,
                a + round(length * rng.uniform(0.1, 0.4)),
                b - round(length * rng.uniform(0.1, 0.4)),
                busy=bookings[-1][0],
            )

    vehicles: list[VehiclePoint] = []
    for vehicle_id, charger, a, b in bookings:
        period = periods[vehicle_id]
        meter_period = statistics.median(gaps(meters[charger]))
        # DC a fraction of the ~1 kWh a meter reading carries, per second of the gap.
        fraction = rng.uniform(0.2, 0.9) / meter_period
        t, gap = a + round(period * rng.uniform(0.2, 1.0)), period
        while t <= b:
            vehicles.append((vehicle_id, charger, t, round(fraction * gap, 6)))
            gap = jittered(rng, period)
            t += gap

    late_meters = [
        (charger, t, kwh)
        for charger, points in meters.items()
        for t, kwh in points
        if rng.random() < LATE
    ]
    late_vehicles = [point for point in vehicles if rng.random() < LATE]
    rng.shuffle(late_meters)
    rng.shuffle(late_vehicles)
    return Fleet(f"seed {seed}", start, end, meters, vehicles, late_meters, late_vehicles, bookings)


# --- two small fleets, made by hand, that the random ones found failing ---------------------


def every(first: int, step: int, last: int) -> list[int]:
    return list(range(first, last + 1, step))


def a_concurrent_neighbour_seen_untrimmed() -> Fleet:
    """The meter reads 1.0 kWh a minute 10:01..11:25 (85 kWh). VH-A charges 10:01..10:30 (span
    10:00..10:30); VH-B is polled every 10 minutes 10:35..11:25: its first interval would start
    at 10:25, inside VH-A's session, so it starts at 10:30 (back to back). VH-C plugs into the
    second outlet for one reading at 11:10:30 (span 11:09:30..11:10:30), between two of VH-B's:
    concurrent with VH-B, and more than 30 minutes (twice the reach) after VH-A's session.

    VH-C's request leaves VH-A out (too far to share a meter interval with VH-C), so it sees
    VH-B's span from 10:25, not 10:30: 60 minutes for VH-B's 3.0 kWh DC instead of 55. The two
    meter minutes around 11:10 are split by average DC power, VH-B at 3.0 / 3300 s in its own
    request and at 3.0 / 3600 s in VH-C's, VH-C at 0.5 / 60 s: VH-B takes 30 s alone plus
    0.0984 of 30 s, VH-C 0.9091 of 30 s, of each minute: 1.0037 of each. All the meter's 85
    intervals are attributed and these two once and a bit: 85.0075 kWh > 85."""
    charger = "CHG-NEAR"
    return Fleet(
        "a concurrent neighbour seen untrimmed",
        at(9),
        at(13),
        {charger: [(t, 1.0) for t in every(at(10, 1), MINUTE, at(11, 25))]},
        [("VH-A", charger, t, 0.5) for t in every(at(10, 1), MINUTE, at(10, 30))]
        + [("VH-B", charger, t, 0.5) for t in every(at(10, 35), 10 * MINUTE, at(11, 25))]
        + [("VH-C", charger, at(11, 10, 30), 0.5)],
        [],
        [],
        [
            ("VH-A", charger, at(10), at(10, 30)),
            ("VH-B", charger, at(10, 30), at(11, 25)),
            ("VH-C", charger, at(11, 9, 30), at(11, 10, 30)),
        ],
    )


def a_meter_period_seen_differently() -> Fleet:
    """A 15-minute meter with a little jitter: 1.0 kWh every 920 s up to 09:00, silent for an
    hour (longer than the reach: the reading at 10:00 covers one usual period), then every 880
    s from 10:00. VH-X charges 08:31..09:52 (a reading a minute, span 08:30..09:52), VH-Y
    09:56..11:00 (span 09:55..11:00); the window is [08:30, 11:00).

    MeterService once took the usual period over the readings it scanned around the sessions
    asked about (now it takes it around each reading, whoever asks): 920 s for VH-X (its scan
    holds three 920 s gaps and one 880 s one), 880 s for VH-Y. The 10:00 interval was
    (09:44:40, 10:00] in VH-X's request, VH-X taking 440 / 740 of it; and (09:45:20, 10:00] in
    VH-Y's, VH-Y taking 300 / 700: 1.0232 of it in all."""
    charger = "CHG-JITTER"
    before = every(at(9) - 7 * 920 * SECOND, 920 * SECOND, at(9))
    after = every(at(10), 880 * SECOND, at(12))
    return Fleet(
        "a meter period seen differently",
        at(8, 30),
        at(11),
        {charger: [(t, 1.0) for t in before + after]},
        [("VH-X", charger, t, 0.5) for t in every(at(8, 31), MINUTE, at(9, 52))]
        + [("VH-Y", charger, t, 0.5) for t in every(at(9, 56), MINUTE, at(11))],
        [],
        [],
        [
            ("VH-X", charger, at(8, 30), at(9, 52)),
            ("VH-Y", charger, at(9, 55), at(11)),
        ],
    )


def a_sparse_neighbour_read_short() -> Fleet:
    """A 30-minute meter (1.0 kWh at :28:20 and :58:20). VH-X charges 09:01..10:00 every minute
    (span 09:00..10:00). VH-Y plugs in at 10:26:40 and is polled about every 30 minutes: its
    second reading comes 2050 s later (11:00:50), beyond the reach, yet its interval (one usual
    period, 1790 s, back) starts 260 s after the first reading, within the session gap: one
    session from 10:25:40 on.

    VH-X's request once read VH-Y only up to 1800 s after its reading near VH-X (10:26:40), so
    it saw VH-Y's session end at 10:26:40 and took 100 / 160 of the interval (09:58:20,
    10:28:20], while VH-Y's own request took 160 / 260 of it: 1.24 of it in all."""
    charger = "CHG-SPARSE"
    x_end = at(10)
    first_y = x_end + 1600 * SECOND
    y_times = [first_y, *every(first_y + 2050 * SECOND, 1790 * SECOND, first_y + 11_000 * SECOND)]
    meter_times = every(x_end - 5500 * SECOND, 1800 * SECOND, x_end + 16_100 * SECOND)
    return Fleet(
        "a sparse neighbour read short",
        at(9),
        at(13),
        {charger: [(t, 1.0) for t in meter_times]},
        [("VH-X", charger, t, 0.5) for t in every(at(9, 1), MINUTE, x_end)]
        + [("VH-Y", charger, t, 0.5) for t in y_times],
        [],
        [],
        [("VH-X", charger, at(9), x_end), ("VH-Y", charger, first_y, y_times[-1])],
    )


def a_neighbour_across_a_long_session_gap() -> Fleet:
    """SESSION_GAP_SECONDS = 1800. A 15-minute meter (1.0 kWh at :05, :20, :35, :50). VH-Y is
    polled every 10 minutes 08:00..09:00, then once more at 09:30:50, 1850 s later: that
    reading's interval (one usual minute back) starts 1790 s after 09:00, within the session
    gap, so VH-Y has one session 07:59..09:30:50. VH-X charges every minute 09:31:50..10:30.

    VH-X's request once read VH-Y only from 1800 s before 09:30:50, so it saw VH-Y's session as
    09:29:50..09:30:50 and the interval (09:20, 09:35] was given out 250 / 310 + 650 / 900 of
    it."""
    charger = "CHG-GAP"
    return Fleet(
        "a neighbour across a long session gap",
        at(8),
        at(10, 30),
        {charger: [(t, 1.0) for t in every(at(7, 5), 15 * MINUTE, at(12, 5))]},
        [("VH-Y", charger, t, 0.5) for t in [*every(at(8), 10 * MINUTE, at(9)), at(9, 30, 50)]]
        + [("VH-X", charger, t, 0.5) for t in every(at(9, 31, 50), MINUTE, at(10, 30))],
        [],
        [],
        [("VH-Y", charger, at(8), at(9, 30, 50)), ("VH-X", charger, at(9, 30, 50), at(10, 30))],
        session_gap_seconds=1800.0,
    )


FLEET_MAKERS: dict[str, Callable[[], Fleet]] = {
    **{f"seed-{seed}": partial(generate, seed) for seed in range(FLEETS)},
    "concurrent-neighbour-untrimmed": a_concurrent_neighbour_seen_untrimmed,
    "meter-period-seen-differently": a_meter_period_seen_differently,
    "sparse-neighbour-read-short": a_sparse_neighbour_read_short,
    "neighbour-across-a-long-session-gap": a_neighbour_across_a_long_session_gap,
}


# --- the property -----------------------------------------------------------------------------


def usual_period(points: list[MeterPoint], t: int) -> float:
    """The meter's usual period at `t`: the median gap between its readings within LOOKAROUND of
    `t` (gaps longer than LOOKAROUND are silences), a minute with none (at most LOOKAROUND)."""
    near = [p for p, _ in points if t - LOOKAROUND <= p <= t + LOOKAROUND]
    around = [later - earlier for earlier, later in itertools.pairwise(near)]
    return statistics.median(
        [gap for gap in around if gap <= LOOKAROUND] or [min(MINUTE, LOOKAROUND)]
    )


def measured(points: list[MeterPoint], start: int, end: int) -> float:
    """What a meter measured in [start, end), by hand: each reading's interval goes back to the
    previous reading when that is within the reach (REACH, or twice the usual period there if
    larger, at most LOOKAROUND), else one usual period; the part of it inside the window
    counts, in proportion."""
    total = 0.0
    previous: int | None = None
    for t, kwh in points:
        period = usual_period(points, t)
        reach = min(max(REACH, 2 * period), LOOKAROUND)
        begin = previous if previous is not None and t - previous <= reach else t - period
        inside = min(t, end) - max(begin, start)
        if inside > 0:
            total += kwh * inside / (t - begin)
        previous = t
    return total


def ingest(meter_server: InProcessServer, vehicle_server: InProcessServer, fleet: Fleet) -> None:
    """The readings in time order, then the late ones, shuffled, in a second stream each."""
    late_meter_keys = {(charger, t) for charger, t, _ in fleet.late_meters}
    late_vehicle_keys = {(v, t) for v, _, t, _ in fleet.late_vehicles}
    early_meters = sorted(
        (t, charger, kwh)
        for charger, points in fleet.meters.items()
        for t, kwh in points
        if (charger, t) not in late_meter_keys
    )
    early_vehicles = sorted(
        (t, v, charger, dc)
        for v, charger, t, dc in fleet.vehicles
        if (v, t) not in late_vehicle_keys
    )
    ingest_meters(meter_server, [meter(charger, t, kwh) for t, charger, kwh in early_meters])
    ingest_vehicles(
        vehicle_server, [vehicle(v, charger, t, dc) for t, v, charger, dc in early_vehicles]
    )
    late_meters: list[meter_pb2.MeterReading] = [meter(*point) for point in fleet.late_meters]
    late_vehicles: list[vehicle_pb2.VehicleReading] = [
        vehicle(*point) for point in fleet.late_vehicles
    ]
    if late_meters:
        ingest_meters(meter_server, late_meters)
    if late_vehicles:
        ingest_vehicles(vehicle_server, late_vehicles)


def coherent(
    figures: analytics_pb2.VehiclePerformance | analytics_pb2.SessionPerformance,
    ac_field: str,
    where: str,
) -> None:
    """Coverage is a fraction; efficiency only with AC; loss exactly when AC."""
    assert 0.0 <= figures.ac_coverage <= 1.0, where
    has_ac = figures.HasField(ac_field)
    assert has_ac or not figures.HasField("efficiency_ratio"), where
    assert figures.HasField("energy_loss_kwh") == has_ac, where


@pytest.mark.parametrize("name", FLEET_MAKERS)
def test_no_charger_gives_more_ac_than_its_meter_measured(
    name: str,
    meter_server: InProcessServer,
    vehicle_server: InProcessServer,
    analytics_factory: StartAnalytics,
) -> None:
    fleet = FLEET_MAKERS[name]()
    analytics = analytics_factory(session_gap_seconds=fleet.session_gap_seconds)
    ingest(meter_server, vehicle_server, fleet)

    attributed: dict[str, float] = defaultdict(float)
    shares: dict[str, list[tuple[str, int, int, float]]] = defaultdict(list)
    for vehicle_id in sorted({v for v, _, _, _ in fleet.vehicles}):
        response = analytics.performance(vehicle_id, end=fleet.end, window=fleet.end - fleet.start)
        where = f"{vehicle_id} of fleet {fleet.describe()}\n{response}"
        coherent(response, "total_energy_consumed_ac", where)
        for session in response.sessions:
            coherent(session, "energy_consumed_ac", where)
            if session.HasField("energy_consumed_ac"):
                attributed[session.charger_id] += session.energy_consumed_ac
                shares[session.charger_id].append(
                    (
                        vehicle_id,
                        ts_micros(session.start_time),
                        ts_micros(session.end_time),
                        session.energy_consumed_ac,
                    )
                )

    assert set(attributed) <= set(fleet.meters)
    for charger, points in fleet.meters.items():
        bound = measured(points, fleet.start, fleet.end)
        assert attributed[charger] <= bound * (1 + RELATIVE), (
            f"{charger}: sessions were given {attributed[charger]!r} kWh AC, the meter measured "
            f"{bound!r} in the window; sessions (vehicle, start, end, AC): "
            f"{shares[charger]}\n{fleet.describe()}"
        )
