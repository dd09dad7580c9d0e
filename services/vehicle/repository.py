"""SQL of VehicleService: the only module that knows the vehicle schema's tables. The ingest and
status SQL is the shared one (services.readings.repository), made from the VEHICLE declaration."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

from services.readings.repository import (
    TIMESTAMPTZ_SQL,
    StatusRepository,
    reading_intervals_sql,
    reading_table,
    seconds_to_micros_sql,
)
from services.vehicle.kind import VEHICLE

READINGS_TABLE = reading_table(VEHICLE)


class VehicleRepository(StatusRepository):
    """The vehicle statuses, and the charging sessions of ListChargingSessions and
    ListChargerSessions."""

    def list_sessions(
        self, vehicle_id: str, start_us: int, end_us: int, gap_us: int
    ) -> list[SessionRow]:
        """The vehicle's charging sessions whose readings' intervals reach into
        [start_us, end_us), ordered by start."""
        return self._sessions(
            _VEHICLE_SESSIONS_SQL, {"vehicle_id": vehicle_id}, start_us, end_us, gap_us
        )

    def list_charger_sessions(
        self, charger_ids: list[str], start_us: int, end_us: int, gap_us: int
    ) -> list[SessionRow]:
        """Every vehicle's sessions on the chargers in [start_us, end_us), ordered by charger
        then start; each vehicle's sessions are those list_sessions gives it."""
        return self._sessions(
            _CHARGER_SESSIONS_SQL, {"charger_ids": charger_ids}, start_us, end_us, gap_us
        )

    def _sessions(
        self, query: TextClause, scope: dict[str, Any], start_us: int, end_us: int, gap_us: int
    ) -> list[SessionRow]:
        params = {
            **scope,
            "start_us": start_us,
            "end_us": end_us,
            "start_s": start_us / 1_000_000,
            "end_s": end_us / 1_000_000,
            "gap_s": gap_us / 1_000_000,
            "reach_s": self._reach_us / 1_000_000,
            "lookaround_us": self._lookaround_us,
            "lookaround_s": self._lookaround_us / 1_000_000,
        }
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(query, params).all()
        return [SessionRow(*row) for row in rows]


class SessionRow(NamedTuple):
    """One charging session: its vehicle and charger, its span (micros, cut to the window), DC
    energy (kWh, cut to the window by time), readings in the window, the sum and count of the
    battery temperatures reported, the readings of unknown energy, and the times of its first
    and last readings (micros, not cut)."""

    vehicle_id: str
    charger_id: str
    start_micros: int
    end_micros: int
    kwh_delivered_dc: float
    reading_count: int
    battery_temp_sum: float
    battery_temp_count: int
    unknown_energy_count: int
    first_reading_micros: int
    last_reading_micros: int


def _sessions_sql(scope: str, order: str) -> TextClause:
    """Gaps and islands over the readings of `scope` (a WHERE condition on
    vehicle.vehicle_readings), one entity being a vehicle on one charger. Each reading gets its
    interval (reading_intervals_sql); a reading whose energy is unknown spans no time (the count
    starts at it). A reading opens a session when it is its entity's first, or when its interval
    starts more than session_gap after the previous reading. Readings are read from lookaround
    before the window (to find the previous ones) to lookaround after it (whose intervals reach
    back into it), and every figure is cut to the window [start, end) by time."""
    return text(
        f"""
        WITH scanned AS (
            SELECT vehicle_id, charger_id, read_time, battery_temp,
                   kwh_delivered_dc AS energy, kwh_delivered_dc_register AS register
            FROM vehicle.vehicle_readings
            WHERE {scope}
              AND read_time >= {TIMESTAMPTZ_SQL.format(us="(:start_us - :lookaround_us)")}
              AND read_time <= {TIMESTAMPTZ_SQL.format(us="(:end_us + :lookaround_us)")}
        ), {reading_intervals_sql("vehicle_id, charger_id", "battery_temp")},
        numbered AS (
            SELECT *,
                   CASE WHEN kwh IS NULL THEN t ELSE chained_start END AS span_start,
                   count(*) FILTER (
                       WHERE previous_t IS NULL OR chained_start - previous_t > :gap_s
                   ) OVER (PARTITION BY vehicle_id, charger_id ORDER BY t) AS session
            FROM intervals
        ), cut AS (
            SELECT *,
                   greatest(least(t, :end_s) - greatest(span_start, :start_s), 0)
                       / nullif(t - span_start, 0) AS inside,
                   (least(t, :end_s) > greatest(span_start, :start_s)
                    OR (t = span_start AND t > :start_s AND t <= :end_s)) AS in_window
            FROM numbered
        )
        SELECT vehicle_id, charger_id,
               {seconds_to_micros_sql("greatest(min(span_start), :start_s)")},
               {seconds_to_micros_sql("least(max(t), :end_s)")},
               coalesce(sum(kwh * inside), 0),
               count(*) FILTER (WHERE in_window),
               coalesce(sum(battery_temp) FILTER (WHERE in_window), 0),
               count(battery_temp) FILTER (WHERE in_window),
               count(*) FILTER (WHERE in_window AND kwh IS NULL),
               {seconds_to_micros_sql("min(t)")},
               {seconds_to_micros_sql("max(t)")}
        FROM cut
        GROUP BY vehicle_id, charger_id, session
        HAVING bool_or(in_window)
        ORDER BY {order}
        """
    )


_VEHICLE_SESSIONS_SQL = _sessions_sql("vehicle_id = :vehicle_id", "3, 2")
# The (charger_id, read_time) index finds every vehicle's readings on the chargers.
_CHARGER_SESSIONS_SQL = _sessions_sql("charger_id = ANY(CAST(:charger_ids AS text[]))", "2, 3, 1")
