"""SQL of VehicleService: the only module that knows the vehicle schema's tables. The ingest and
status SQL is the shared one (services.readings.repository), made from the VEHICLE declaration."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

from services.common.timeconv import MICROS_SQL, TIMESTAMPTZ_SQL
from services.readings.repository import (
    StatusRepository,
    reading_intervals_sql,
    reading_table,
    seconds_to_micros_sql,
)
from services.vehicle.kind import VEHICLE

READINGS_TABLE = reading_table(VEHICLE)


class ChargerRange(NamedTuple):
    """A charger and a time range [start_us, end_us] (micros, inclusive) on it."""

    charger_id: str
    start_us: int
    end_us: int


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
        self,
        charger_ids: list[str],
        ranges: list[ChargerRange],
        *,
        excluded_vehicle_id: str,
        start_us: int,
        end_us: int,
        gap_us: int,
    ) -> list[SessionRow]:
        """The sessions in [start_us, end_us) on each range's charger of every vehicle (but
        `excluded_vehicle_id`) with a reading on it within the range, and on each of
        `charger_ids` over the whole window, ordered by charger then start. A vehicle's readings
        are read from the context (the lookaround and the session gap) before its first reading
        in a range to the context after its last, so a session that runs on beyond that is cut
        short there (its span and DC too); inside, it is what list_sessions gives the vehicle."""
        context_us = self._context_us(gap_us)
        whole = [ChargerRange(c, start_us - context_us, end_us + context_us) for c in charger_ids]
        ranges = [*ranges, *whole]
        scope = {
            "range_charger_ids": [r.charger_id for r in ranges],
            "range_starts": [r.start_us for r in ranges],
            "range_ends": [r.end_us for r in ranges],
            "excluded": excluded_vehicle_id,
        }
        return self._sessions(_CHARGER_SESSIONS_SQL, scope, start_us, end_us, gap_us)

    def _sessions(
        self, query: TextClause, scope: dict[str, Any], start_us: int, end_us: int, gap_us: int
    ) -> list[SessionRow]:
        context_us = self._context_us(gap_us)
        params = {
            **scope,
            # Bounds are computed here: psycopg binds a small int as int4, and int4 arithmetic
            # in SQL would overflow for windows near 1970.
            "scan_start_us": start_us - context_us,
            "scan_end_us": end_us + context_us,
            "context_us": context_us,
            "start_s": start_us / 1_000_000,
            "end_s": end_us / 1_000_000,
            "gap_s": gap_us / 1_000_000,
            "reach_s": self._reach_us / 1_000_000,
            "lookaround_s": self._lookaround_us / 1_000_000,
        }
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(query, params).all()
        return [SessionRow(*row) for row in rows]

    def _context_us(self, gap_us: int) -> int:
        """How far beyond what a sessions statement needs it reads: a previous reading within
        the reach, and every reading that can still join a session across a silence (a
        reading's interval starts at most a lookaround back, and joins the session when it
        starts within the session gap of the previous one)."""
        return self._lookaround_us + gap_us


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


def _sessions_sql(scope: str, order: str, chargers: str = "true") -> TextClause:
    """Gaps and islands over the readings of the vehicles and time ranges of `scope` (CTEs
    ending in `scope` with vehicle_id, lo_us, hi_us: disjoint ranges of each vehicle, micros).
    Each reading gets its interval (reading_intervals_sql): it chains back to the vehicle's
    previous reading on the charger unless the vehicle reported twice or more on other chargers
    in between, so a vehicle that went to another charger and came back starts a new session
    (while one that reports two chargers at once keeps one on each); a reading whose energy is
    unknown spans no time (the count starts at it). A reading opens a session when it is its
    vehicle's first on the charger, follows a visit elsewhere, or its interval starts more than
    session_gap after the previous reading. Every figure is cut to the window [start, end) by
    time, and only the sessions on chargers meeting `chargers` (a condition on charger_id) are
    returned."""
    return text(
        f"""
        WITH {scope},
        scanned AS (
            SELECT r.vehicle_id, r.charger_id, r.read_time, r.battery_temp,
                   r.kwh_delivered_dc AS energy, r.kwh_delivered_dc_register AS register
            FROM scope s
            CROSS JOIN LATERAL (
                -- OFFSET 0: a range scan of the key per vehicle, never pulled up into a join
                -- that the planner may run as a scan of the whole table.
                SELECT * FROM vehicle.vehicle_readings
                WHERE vehicle_id = s.vehicle_id
                  AND read_time >= {TIMESTAMPTZ_SQL.format(us="s.lo_us")}
                  AND read_time <= {TIMESTAMPTZ_SQL.format(us="s.hi_us")}
                OFFSET 0
            ) AS r
            ORDER BY r.vehicle_id, r.read_time
        ), {
            reading_intervals_sql(
                device="vehicle_id",
                place="charger_id",
                table="vehicle.vehicle_readings",
                table_device="vehicle_id",
                extra="battery_temp",
            )
        },
        numbered AS (
            SELECT vehicle_id, charger_id, t, kwh, battery_temp,
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
            WHERE {chargers}
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


# One vehicle, from the context (see _context_us) before the window to the context after it.
_VEHICLE_SESSIONS_SQL = _sessions_sql(
    """scope AS (
        SELECT CAST(:vehicle_id AS text) AS vehicle_id,
               CAST(:scan_start_us AS int8) AS lo_us, CAST(:scan_end_us AS int8) AS hi_us
    )""",
    "3, 2",
)
# The vehicles with a reading on a range's charger within the range (the (charger_id,
# read_time) index finds them), each read from the context before its first such reading to
# the context after its last, within the window's context; one vehicle's ranges closer than
# twice the context are read as one (a reading beside a hole would chain across it).
_CHARGER_SESSIONS_SQL = _sessions_sql(
    f"""wanted AS (
        SELECT DISTINCT charger_id, greatest(lo_us, :scan_start_us) AS lo_us,
               least(hi_us, :scan_end_us) AS hi_us
        FROM unnest(CAST(:range_charger_ids AS text[]), CAST(:range_starts AS int8[]),
                    CAST(:range_ends AS int8[])) AS w(charger_id, lo_us, hi_us)
    ), hits AS (
        SELECT h.vehicle_id,
               greatest(h.first_us - :context_us, :scan_start_us) AS lo_us,
               least(h.last_us + :context_us, :scan_end_us) AS hi_us
        FROM wanted w
        CROSS JOIN LATERAL (
            SELECT vehicle_id, {MICROS_SQL.format(col="min(read_time)")} AS first_us,
                   {MICROS_SQL.format(col="max(read_time)")} AS last_us
            FROM vehicle.vehicle_readings
            WHERE charger_id = w.charger_id
              AND read_time >= {TIMESTAMPTZ_SQL.format(us="w.lo_us")}
              AND read_time <= {TIMESTAMPTZ_SQL.format(us="w.hi_us")}
              AND vehicle_id <> :excluded
            GROUP BY vehicle_id
        ) AS h
    ), hits_ordered AS (
        SELECT *, max(hi_us) OVER (PARTITION BY vehicle_id ORDER BY lo_us
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before_us
        FROM hits
    ), islands AS (
        SELECT *, count(*) FILTER (WHERE before_us IS NULL
                                      OR lo_us > before_us + 2 * CAST(:context_us AS int8))
                      OVER (PARTITION BY vehicle_id ORDER BY lo_us) AS island
        FROM hits_ordered
    ), scope AS (
        SELECT vehicle_id, min(lo_us) AS lo_us, max(hi_us) AS hi_us
        FROM islands GROUP BY vehicle_id, island
    )""",
    "2, 3, 1",
    "charger_id = ANY(CAST(:range_charger_ids AS text[]))",
)
