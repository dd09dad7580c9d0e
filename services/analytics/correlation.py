"""The correlation rule's composing half (README, "How correlation works"): pure functions, no
I/O. VehicleService finds the sessions (each reading covering the interval that ends at its
timestamp) and MeterService splits each meter interval's energy among the sessions overlapping
it; here the sessions of one charger, or of one vehicle, are kept from sharing time, and the
figures get their coverage and quality flags.

Times are microseconds since the epoch; a session's span is [start_us, end_us)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

# Below this fraction of the span covered by meter intervals, AC is flagged partial.
FULL_COVERAGE = 0.95
# DC / AC outside this range is flagged: a charger's losses are never negative nor half.
EFFICIENCY_RANGE = (0.5, 1.0)
# Thresholds hold this far (relative) beyond them: the sums behind a ratio are taken in
# whatever order the data is read in (whole hours from rollups, or reading by reading), and a
# lossless session must not be flagged because DC came out an ulp above AC.
SUM_ORDER_TOLERANCE = 1e-9


class Quality(enum.Enum):
    """Why a figure should not be taken at face value (QualityFlag on the wire, in this order)."""

    METER_DATA_MISSING = 1
    METER_DATA_PARTIAL = 2
    CONCURRENT_SESSIONS = 3
    IMPLAUSIBLE_METER_DATA = 4
    VEHICLE_ON_TWO_CHARGERS = 5
    EFFICIENCY_OUT_OF_RANGE = 6


@dataclass(frozen=True)
class Session:
    """One session as VehicleService reports it: span and DC cut to the window, the times of
    its first and last readings not cut."""

    vehicle_id: str
    charger_id: str
    start_us: int
    end_us: int
    kwh_delivered_dc: float
    reading_count: int
    battery_temp_sum: float
    battery_temp_count: int
    first_reading_us: int
    last_reading_us: int
    flags: frozenset[Quality] = frozenset()

    def interleaves(self, other: Session) -> bool:
        """True when their runs of readings overlap: each starts before the other's last
        reading, or both start at the same instant. Runs that only touch (one's last reading at
        the other's first) are back to back."""
        return self.first_reading_us == other.first_reading_us or (
            self.first_reading_us < other.last_reading_us
            and other.first_reading_us < self.last_reading_us
        )


@dataclass(frozen=True)
class Consumption:
    """What MeterService attributed to one session."""

    kwh_consumed_ac: float
    reading_count: int
    covered_us: int
    implausible_count: int
    unknown_energy_count: int


@dataclass(frozen=True)
class Figures:
    """What VehiclePerformance reports, for one session or for the whole window. None is a
    figure that cannot be known (sent unset)."""

    energy_consumed_ac: float | None
    energy_delivered_dc: float
    efficiency_ratio: float | None
    energy_loss_kwh: float | None
    avg_battery_temperature: float | None
    data_points: int
    meter_data_points: int
    ac_coverage: float
    flags: tuple[Quality, ...]


@dataclass(frozen=True)
class SessionPerformance:
    session: Session
    figures: Figures


@dataclass(frozen=True)
class Performance:
    vehicle_id: str
    start_us: int
    end_us: int
    totals: Figures
    sessions: list[SessionPerformance]


def _start_after(session: Session, end_us: int) -> Session:
    """The session starting no earlier than `end_us` (never past its own end)."""
    start = min(max(session.start_us, end_us), session.end_us)
    return session if start == session.start_us else replace(session, start_us=start)


def _flag(session: Session, flag: Quality) -> Session:
    return session if flag in session.flags else replace(session, flags=session.flags | {flag})


def separate(
    sessions: Sequence[Session], *, apart: str, flag: Quality, horizon_us: int, clip: bool = True
) -> list[Session]:
    """The sessions, in the given order, with every two that differ in `apart` ("vehicle_id" on
    one charger, "charger_id" for one vehicle) made not to share time: where their readings
    interleave, both get `flag` (they are at the same time, not separable); otherwise, with
    `clip`, the later starts no earlier than where the earlier ends (its first interval's start
    was inferred, and reached back into the other).

    `horizon_us` bounds how far before its first reading a session's span starts (the longest
    reading interval): sessions whose last reading is farther back cannot touch it, so a sweep
    in time order compares each session only with the few still near."""
    result = list(sessions)
    order = sorted(range(len(sessions)), key=lambda i: sessions[i].first_reading_us)
    near: list[int] = []
    for later in order:
        session = sessions[later]
        near = [
            i for i in near if sessions[i].last_reading_us > session.first_reading_us - horizon_us
        ]
        for earlier in near:
            other = sessions[earlier]
            if getattr(other, apart) == getattr(session, apart):
                continue
            if other.interleaves(session):
                result[earlier] = _flag(result[earlier], flag)
                result[later] = _flag(result[later], flag)
            elif clip:
                result[later] = _start_after(result[later], other.end_us)
        near.append(later)
    return result


@dataclass(frozen=True)
class ChargerSpan:
    """A time range [start_us, end_us] on one charger."""

    charger_id: str
    start_us: int
    end_us: int


def surroundings(own: Sequence[Session], margin_us: int, gap_us: int) -> list[ChargerSpan]:
    """Where other vehicles' sessions can matter to `own`, by charger, overlapping ranges
    merged: a session that comes within `margin_us` of one of them has a reading on its charger
    from `margin_us` before it to twice that after it (its span ends at its last reading and
    starts at most `margin_us` before its first); `gap_us` (the session gap) more on each side,
    as a session's readings may be that much farther apart."""
    ranges = sorted(
        (s.charger_id, s.start_us - margin_us - gap_us, s.end_us + 2 * margin_us + gap_us)
        for s in own
    )
    merged: list[ChargerSpan] = []
    for charger_id, start_us, end_us in ranges:
        last = merged[-1] if merged else None
        if last is not None and last.charger_id == charger_id and start_us <= last.end_us:
            merged[-1] = replace(last, end_us=max(last.end_us, end_us))
        else:
            merged.append(ChargerSpan(charger_id, start_us, end_us))
    return merged


def concurrent_chargers(sessions: Iterable[Session]) -> list[str]:
    """The chargers where some sessions were found concurrent, sorted."""
    return sorted({s.charger_id for s in sessions if Quality.CONCURRENT_SESSIONS in s.flags})


def near(others: Iterable[Session], own: Sequence[Session], margin_us: int) -> list[Session]:
    """The other sessions on the chargers of `own` that lie within `margin_us` of one of them:
    those that can share a meter interval with it (a meter interval is never longer)."""
    return [
        other
        for other in others
        if any(
            other.charger_id == session.charger_id
            and other.start_us < session.end_us + margin_us
            and session.start_us - margin_us < other.end_us
            for session in own
        )
    ]


def arrange(
    own: Sequence[Session], others: Sequence[Session], horizon_us: int
) -> tuple[list[Session], list[Session]]:
    """One vehicle's sessions (`own`) and every other vehicle's on its chargers (`others`), in
    their order: on each charger, sessions of different vehicles kept from sharing time (or
    flagged CONCURRENT_SESSIONS); the vehicle's own sessions on two chargers at once flagged
    VEHICLE_ON_TWO_CHARGERS (not cut: the other vehicles' sessions are cut by what happens on
    their charger alone, so every request about a charger and window cuts them alike, and a
    meter interval is never split two ways)."""
    combined = [
        *separate(
            own,
            apart="charger_id",
            flag=Quality.VEHICLE_ON_TWO_CHARGERS,
            horizon_us=horizon_us,
            clip=False,
        ),
        *others,
    ]
    places_by_charger: dict[str, list[int]] = {}
    for place, session in enumerate(combined):
        places_by_charger.setdefault(session.charger_id, []).append(place)
    for places in places_by_charger.values():
        apart = separate(
            [combined[i] for i in places],
            apart="vehicle_id",
            flag=Quality.CONCURRENT_SESSIONS,
            horizon_us=horizon_us,
        )
        for place, session in zip(places, apart, strict=True):
            combined[place] = session
    return combined[: len(own)], combined[len(own) :]


def figures(
    *,
    ac: float,
    covered_us: int,
    span_us: int,
    dc: float,
    temp_sum: float,
    temp_count: int,
    data_points: int,
    meter_points: int,
    meter_readings_seen: int,
    implausible: int,
    flags: Iterable[Quality],
    empty: bool = False,
) -> Figures:
    """The figures of one session or of the totals. AC is known when meter intervals cover some
    of the span; then efficiency (when AC > 0) and loss are set, else all three are unset.
    `meter_readings_seen` counts every meter reading overlapping the span (also those of
    unknown or implausible energy): none at all is METER_DATA_MISSING. `empty`: the totals of
    no session at all, whose AC is exactly 0 (nothing to attribute), not unknown."""
    found = set(flags)
    coverage = min(max(covered_us / span_us, 0.0), 1.0) if span_us > 0 else 0.0
    known = coverage > 0 or empty
    if not empty and meter_readings_seen == 0:
        found.add(Quality.METER_DATA_MISSING)
    elif not empty and coverage < FULL_COVERAGE * (1 - SUM_ORDER_TOLERANCE):
        found.add(Quality.METER_DATA_PARTIAL)
    if implausible:
        found.add(Quality.IMPLAUSIBLE_METER_DATA)
    efficiency = dc / ac if known and ac > 0 else None
    out_of_range = (
        not (
            EFFICIENCY_RANGE[0] * (1 - SUM_ORDER_TOLERANCE)
            <= efficiency
            <= EFFICIENCY_RANGE[1] * (1 + SUM_ORDER_TOLERANCE)
        )
        if efficiency is not None
        else known and ac <= 0 < dc  # DC with no AC: no ratio to report, and impossible
    )
    if out_of_range:
        found.add(Quality.EFFICIENCY_OUT_OF_RANGE)
    return Figures(
        energy_consumed_ac=ac if known else None,
        energy_delivered_dc=dc,
        efficiency_ratio=efficiency,
        energy_loss_kwh=ac - dc if known else None,
        avg_battery_temperature=temp_sum / temp_count if temp_count else None,
        data_points=data_points,
        meter_data_points=meter_points,
        ac_coverage=coverage,
        flags=tuple(sorted(found, key=lambda flag: flag.value)),
    )


def compose(
    vehicle_id: str,
    window_start_us: int,
    window_end_us: int,
    sessions: Sequence[Session],
    consumption: Sequence[Consumption],
) -> Performance:
    """Per-session and total figures; averages are exact over all readings, not of averages,
    and the totals carry every session's flags."""
    per_session = []
    for session, used in zip(sessions, consumption, strict=True):
        per_session.append(
            SessionPerformance(
                session,
                figures(
                    ac=used.kwh_consumed_ac,
                    covered_us=used.covered_us,
                    span_us=session.end_us - session.start_us,
                    dc=session.kwh_delivered_dc,
                    temp_sum=session.battery_temp_sum,
                    temp_count=session.battery_temp_count,
                    data_points=session.reading_count,
                    meter_points=used.reading_count,
                    meter_readings_seen=(
                        used.reading_count + used.implausible_count + used.unknown_energy_count
                    ),
                    implausible=used.implausible_count,
                    flags=session.flags,
                ),
            )
        )
    totals = summed_figures(
        sessions, consumption, flags=[flag for item in per_session for flag in item.figures.flags]
    )
    return Performance(vehicle_id, window_start_us, window_end_us, totals, per_session)


def summed_figures(
    sessions: Sequence[Session],
    consumption: Sequence[Consumption],
    *,
    flags: Iterable[Quality],
    implausible_elsewhere: int = 0,
) -> Figures:
    """The figures of several sessions together (a vehicle's window, a charger's), from their
    sums: averages are exact over all readings, not averages of averages. `flags` are those the
    total carries; `implausible_elsewhere` counts implausible meter intervals outside the
    sessions that flag the total too."""
    return figures(
        ac=sum(used.kwh_consumed_ac for used in consumption),
        covered_us=sum(used.covered_us for used in consumption),
        span_us=sum(session.end_us - session.start_us for session in sessions),
        dc=sum(session.kwh_delivered_dc for session in sessions),
        temp_sum=sum(session.battery_temp_sum for session in sessions),
        temp_count=sum(session.battery_temp_count for session in sessions),
        data_points=sum(session.reading_count for session in sessions),
        meter_points=sum(used.reading_count for used in consumption),
        meter_readings_seen=sum(
            used.reading_count + used.implausible_count + used.unknown_energy_count
            for used in consumption
        ),
        implausible=sum(used.implausible_count for used in consumption) + implausible_elsewhere,
        flags=flags,
        empty=not sessions,
    )
