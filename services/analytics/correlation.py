"""The correlation rule (README, "How correlation works"): pure functions, no I/O.

A charging session is a maximal run of a vehicle's readings on one charger with no gap longer
than session_gap (VehicleService computes them). The AC energy attributed to a session is the
charger's meter readings with start - tolerance <= read_time < end + tolerance, clipped to the
window. So a charger shared by several vehicles over a day is split between them by time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Session:
    """One session as VehicleService reports it (times in microseconds since the epoch)."""

    charger_id: str
    start_us: int
    end_us: int
    kwh_delivered_dc: float
    reading_count: int
    battery_temp_sum: float
    battery_temp_count: int


@dataclass(frozen=True)
class Interval:
    """Where to sum a charger's AC energy: [start_us, end_us)."""

    charger_id: str
    start_us: int
    end_us: int


@dataclass(frozen=True)
class Consumption:
    kwh_consumed_ac: float
    reading_count: int


@dataclass(frozen=True)
class Figures:
    """What VehiclePerformance reports, for one session or for the whole window."""

    energy_consumed_ac: float
    energy_delivered_dc: float
    efficiency_ratio: float | None
    energy_loss_kwh: float
    avg_battery_temperature: float | None
    data_points: int
    meter_data_points: int


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


def attribution_intervals(
    sessions: Sequence[Session], window_start_us: int, window_end_us: int, tolerance_us: int
) -> list[Interval]:
    """The meter interval of each session, widened by the tolerance and clipped to the window.

    Two sessions on one charger never share a meter reading: a later interval starts no earlier
    than where the previous one on that charger ended (possible only if the deployment sets
    session_gap below twice the tolerance)."""
    intervals: list[Interval] = []
    last_end: dict[str, int] = {}
    for session in sessions:
        start = max(session.start_us - tolerance_us, window_start_us)
        start = max(start, last_end.get(session.charger_id, start))
        end = min(session.end_us + tolerance_us, window_end_us)
        end = max(end, start)
        last_end[session.charger_id] = end
        intervals.append(Interval(session.charger_id, start, end))
    return intervals


def figures(
    *, ac: float, dc: float, temp_sum: float, temp_count: int, data_points: int, meter_points: int
) -> Figures:
    return Figures(
        energy_consumed_ac=ac,
        energy_delivered_dc=dc,
        efficiency_ratio=dc / ac if ac > 0 else None,
        energy_loss_kwh=ac - dc,
        avg_battery_temperature=temp_sum / temp_count if temp_count else None,
        data_points=data_points,
        meter_data_points=meter_points,
    )


def compose(
    vehicle_id: str,
    window_start_us: int,
    window_end_us: int,
    sessions: Sequence[Session],
    consumption: Sequence[Consumption],
) -> Performance:
    """Per-session and total figures; averages are exact over all readings, not of averages."""
    per_session = [
        SessionPerformance(
            session,
            figures(
                ac=used.kwh_consumed_ac,
                dc=session.kwh_delivered_dc,
                temp_sum=session.battery_temp_sum,
                temp_count=session.battery_temp_count,
                data_points=session.reading_count,
                meter_points=used.reading_count,
            ),
        )
        for session, used in zip(sessions, consumption, strict=True)
    ]
    totals = figures(
        ac=sum(used.kwh_consumed_ac for used in consumption),
        dc=sum(session.kwh_delivered_dc for session in sessions),
        temp_sum=sum(session.battery_temp_sum for session in sessions),
        temp_count=sum(session.battery_temp_count for session in sessions),
        data_points=sum(session.reading_count for session in sessions),
        meter_points=sum(used.reading_count for used in consumption),
    )
    return Performance(vehicle_id, window_start_us, window_end_us, totals, per_session)
