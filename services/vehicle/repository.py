"""SQL of VehicleService: the only module that knows the vehicle schema's tables. The ingest and
status SQL is the shared one (services.readings.repository), made from the VEHICLE declaration."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

from services.common.rollups import HOUR_US, rolled_until_sql, rollup_rule
from services.common.timeconv import MICROS_SQL, TIMESTAMPTZ_SQL
from services.readings.repository import (
    StatusRepository,
    inline_seconds,
    reading_intervals_sql,
    reading_table,
    seconds_to_micros_sql,
)
from services.vehicle.kind import ROLLUP_MAX_GAP_US, VEHICLE

READINGS_TABLE = reading_table(VEHICLE)
# `bounds` (h1, h2): the whole hours [h1, h2) a sessions statement may take from the rollups,
# micros: from `served_from_us` up to `served_to_us` or rolled_until (when made with this
# service's rule), none when `rollups_on` is false (see VehicleRepository._rollup_scope).
_SERVED_HOURS_SQL = f"""state AS (
            {rolled_until_sql("vehicle")}
        ), bounds AS (
            SELECT CAST(:served_from_us AS int8) AS h1,
                   CASE WHEN CAST(:rollups_on AS boolean)
                        THEN greatest(CAST(:served_from_us AS int8),
                                      least(CAST(:served_to_us AS int8), rolled_us))
                        ELSE CAST(:served_from_us AS int8) END AS h2
            FROM state
        )"""


class ChargerRange(NamedTuple):
    """A charger and a time range [start_us, end_us] (micros, inclusive) on it."""

    charger_id: str
    start_us: int
    end_us: int


class VehicleRepository(StatusRepository):
    """The vehicle statuses, and the charging sessions of ListChargingSessions and
    ListChargerSessions."""

    reporting_place = "charger_id"

    def list_sessions(
        self, vehicle_id: str, start_us: int, end_us: int, gap_us: int
    ) -> list[SessionRow]:
        """The vehicle's charging sessions whose readings' intervals reach into
        [start_us, end_us), ordered by start. Whole hours inside the window come from the
        rollups where they can (see _rolled_sessions_sql): the same sessions."""
        scope = {"vehicle_id": vehicle_id, **self._rollup_scope(start_us, end_us, gap_us)}
        return self._sessions(_VEHICLE_SESSIONS_SQL, scope, start_us, end_us, gap_us)

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
        short there (its span and DC too); inside, it is what list_sessions gives the vehicle.
        Without ranges, when the rollups serve at least half of the window, each such vehicle
        is read over the whole window as list_sessions reads it (whole hours from the
        rollups): the same sessions on the chargers."""
        scope = self._rollup_scope(start_us, end_us, gap_us)
        if not ranges and self._rollups_serve_most(scope, start_us, end_us):
            # Whole windows only (a fleet-wide listing): every vehicle that reported on the
            # chargers is read as list_sessions reads it, whole hours from the rollups. (Read
            # from the readings, a vehicle's whole window costs more than the ranges around its
            # readings on the chargers.)
            scope = {**scope, "charger_ids": charger_ids, "excluded": excluded_vehicle_id}
            return self._sessions(_CHARGERS_SESSIONS_SQL, scope, start_us, end_us, gap_us)
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

    def charger_reports(
        self, thresholds: dict[str, float], start_us: int, end_us: int
    ) -> dict[str, ChargerReports]:
        """For each vehicle of `thresholds` (id → the step, in micros, beyond which its readings
        are in separate stretches), the chargers its readings in [start_us, end_us) named and
        the times it named two at once: a stretch of its readings on one charger (consecutive
        readings on that charger no further apart than the threshold) overlapping a stretch
        on another. Vehicles with neither are left out."""
        if not thresholds:
            return {}
        query = text(
            f"""
            WITH ids AS (
                SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:thresholds AS float8[]))
                    AS k(id, threshold)
            ), inside AS (
                SELECT r.vehicle_id AS id, r.charger_id, ids.threshold,
                       {MICROS_SQL.format(col="r.read_time")} AS t
                FROM ids JOIN vehicle.vehicle_readings r ON r.vehicle_id = ids.id
                WHERE r.read_time >= {TIMESTAMPTZ_SQL.format(us=":start_us")}
                  AND r.read_time < {TIMESTAMPTZ_SQL.format(us=":end_us")}
            ), numbered AS (
                SELECT id, charger_id, t,
                       count(*) FILTER (WHERE step IS NULL OR step > threshold)
                           OVER (PARTITION BY id, charger_id ORDER BY t) AS stretch
                FROM (
                    SELECT *, t - lag(t) OVER (PARTITION BY id, charger_id ORDER BY t) AS step
                    FROM inside
                ) AS stepped
            ), stretches AS (
                SELECT id, charger_id, min(t) AS first_t, max(t) AS last_t
                FROM numbered GROUP BY id, charger_id, stretch
            ), pairs AS (
                -- A vehicle's stretches on one charger never overlap each other: a pair that
                -- does is on two chargers. Joined on the vehicle (a hash join), never a scan of
                -- every stretch per vehicle.
                SELECT a.id, json_agg(json_build_array(
                           a.charger_id, b.charger_id,
                           greatest(a.first_t, b.first_t), least(a.last_t, b.last_t))
                       ORDER BY greatest(a.first_t, b.first_t), a.charger_id, b.charger_id)
                       AS found
                FROM stretches a JOIN stretches b
                  ON a.id = b.id AND a.charger_id < b.charger_id
                 AND a.first_t <= b.last_t AND b.first_t <= a.last_t
                GROUP BY a.id
            ), named AS (
                SELECT id, array_agg(DISTINCT charger_id ORDER BY charger_id) AS charger_ids
                FROM stretches GROUP BY id
            )
            SELECT named.id, named.charger_ids, pairs.found::text
            FROM named LEFT JOIN pairs USING (id)
            ORDER BY named.id
            """
        )
        parameters = {
            "ids": list(thresholds),
            "thresholds": list(thresholds.values()),
            "start_us": start_us,
            "end_us": end_us,
        }
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(query, parameters).all()
        return {
            vehicle_id: ChargerReports(
                charger_ids=list(charger_ids),
                overlaps=[
                    ChargerOverlapRow(vehicle_id, a, b, int(first), int(last))
                    for a, b, first, last in (json.loads(overlaps) if overlaps else [])
                ],
            )
            for vehicle_id, charger_ids, overlaps in rows
        }

    def _rollup_scope(self, start_us: int, end_us: int, gap_us: int) -> dict[str, Any]:
        """The whole hours a sessions statement may take from the rollups (_rolled_sessions_sql)."""
        return {
            # The first hour whose readings' intervals (at most the lookaround long) all start
            # after the window's start, and the window's last whole hour.
            "served_from_us": ((start_us + self._lookaround_us) // HOUR_US + 1) * HOUR_US,
            "served_to_us": end_us // HOUR_US * HOUR_US,
            "rollups_on": gap_us <= ROLLUP_MAX_GAP_US,
            "rollup_rule": rollup_rule(self._reach_us),
        }

    def _rollups_serve_most(self, scope: dict[str, Any], start_us: int, end_us: int) -> bool:
        """Whether the rollups (made with this service's rule, not stale, the gap served) hold at
        least half of [start_us, end_us): `scope` is _rollup_scope's."""
        if not scope["rollups_on"]:
            return False
        query = text(
            f"""
            WITH {_SERVED_HOURS_SQL}
            SELECT h2 - h1,
                   (SELECT count(DISTINCT hour) FROM vehicle.rollup_invalidations
                    WHERE hour >= {TIMESTAMPTZ_SQL.format(us="h1")}
                      AND hour < {TIMESTAMPTZ_SQL.format(us="h2")})
            FROM bounds
            """
        )
        with self._reads.connection() as connection:
            row = connection.execute(query, scope).one_or_none()
        if row is None:
            return False
        servable_us, stale_hours = row
        return 2 * (servable_us - stale_hours * HOUR_US) >= end_us - start_us

    def _context_us(self, gap_us: int) -> int:
        """How far beyond what a sessions statement needs it reads: a previous reading within
        the reach, and every reading that can still join a session across a silence (a
        reading's interval starts at most a lookaround back, and joins the session when it
        starts within the session gap of the previous one)."""
        return self._lookaround_us + gap_us


class ChargerOverlapRow(NamedTuple):
    """A vehicle naming two chargers at once over [start_us, end_us] (micros, inclusive)."""

    vehicle_id: str
    charger_id: str
    other_charger_id: str
    start_us: int
    end_us: int


class ChargerReports(NamedTuple):
    """The chargers a vehicle's readings named in a window, in id order, and its overlaps."""

    charger_ids: list[str]
    overlaps: list[ChargerOverlapRow]


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


def _vehicle_intervals_sql() -> str:
    """The correlation rule's intervals of a vehicle's readings (see reading_intervals_sql)."""
    return reading_intervals_sql(
        device="vehicle_id",
        place="charger_id",
        table="vehicle.vehicle_readings",
        table_device="vehicle_id",
        extra="battery_temp",
    )


def _sessions_sql(
    scope: str, order: str, chargers: str = "true", rolled: bool = False
) -> TextClause:
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
    returned.

    With `rolled`, the scope's CTEs also end in `served` (rollup rows of whole hours to take as
    they are: inside the window, none of their silences longer than the gap; their readings are
    read as context only), `served_hours` (served_vehicle_id, served_hours_s: each vehicle's
    served hours, epoch seconds, as one array) and `scope` reads the rest, each piece from the
    context before it. A
    rollup row is one unit of the gaps and islands, opening a session when the silence before
    its first reading is longer than the gap, as that reading would."""
    raw_filter, units = "", "SELECT * FROM raw"
    if rolled:
        # Each vehicle's served hours as one array, joined on the vehicle: a hash join of one
        # row per vehicle, not a range test per piece (a window of stale hours has hundreds of
        # pieces), nor a NOT IN over every vehicle's served hours (hashed only while the planner
        # thinks them few) or an anti-join it may run as a nested loop.
        raw_filter = """LEFT JOIN served_hours ON served_vehicle_id = intervals.vehicle_id
            WHERE served_hours_s IS NULL
               OR NOT (floor(intervals.t / 3600) * 3600 = ANY (served_hours_s))"""
        units = """SELECT * FROM raw
            UNION ALL
            SELECT vehicle_id, charger_id, first_t, last_t, kwh_delivered_dc, reading_count,
                   battery_temp_sum, battery_temp_count, unknown_energy_count, span_start,
                   first_break, true
            FROM served"""
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
        ), {_vehicle_intervals_sql()},
        raw AS (
            SELECT vehicle_id, charger_id, t, t AS last_t, kwh, 1 AS n, battery_temp AS temp_sum,
                   CAST(battery_temp IS NOT NULL AS int) AS temp_n,
                   CAST(kwh IS NULL AS int) AS unknown_n,
                   CASE WHEN kwh IS NULL THEN t ELSE chained_start END AS span_start,
                   CASE WHEN previous_t IS NULL THEN CAST('Infinity' AS float8)
                        ELSE chained_start - previous_t END AS silence,
                   false AS rolled
            FROM intervals
            {raw_filter}
        ), units AS (
            {units}
        ), numbered AS (
            SELECT *,
                   count(*) FILTER (WHERE silence > :gap_s)
                       OVER (PARTITION BY vehicle_id, charger_id ORDER BY t) AS session
            FROM units
        ), cut AS (
            SELECT *,
                   CASE WHEN rolled THEN 1.0 ELSE
                       greatest(least(t, :end_s) - greatest(span_start, :start_s), 0)
                           / nullif(t - span_start, 0) END AS inside,
                   (rolled OR least(t, :end_s) > greatest(span_start, :start_s)
                    OR (t = span_start AND t > :start_s AND t <= :end_s)) AS in_window
            FROM numbered
            WHERE {chargers}
        )
        SELECT vehicle_id, charger_id,
               {seconds_to_micros_sql("greatest(min(span_start), :start_s)")},
               {seconds_to_micros_sql("least(max(last_t), :end_s)")},
               coalesce(sum(kwh * inside), 0),
               CAST(coalesce(sum(n) FILTER (WHERE in_window), 0) AS int8),
               coalesce(sum(temp_sum) FILTER (WHERE in_window), 0),
               CAST(coalesce(sum(temp_n) FILTER (WHERE in_window), 0) AS int8),
               CAST(coalesce(sum(unknown_n) FILTER (WHERE in_window), 0) AS int8),
               {seconds_to_micros_sql("min(t)")},
               {seconds_to_micros_sql("max(last_t)")}
        FROM cut
        GROUP BY vehicle_id, charger_id, session
        HAVING bool_or(in_window)
        ORDER BY {order}
        """
    )


# Each vehicle of `vehicles` (a CTE of vehicle_id), from the context (see _context_us) before the
# window to the context after it. Whole hours from `served_from_us` (the first whose readings'
# intervals all lie inside the window) to `served_to_us` (the window's last whole hour) are taken
# from the vehicle's rollups when they are made (before rolled_until, with this service's rule),
# not marked stale, and none of the vehicle's silences in them is longer than the gap
# (`rollups_on`: the gap is at most ROLLUP_MAX_GAP_US). The rest is read from the readings, each
# piece from the context before it (the window's first from the scan's start, as the readings
# alone are read): a previous reading farther back than the context would leave a silence longer
# than the gap either way. A vehicle's answer does not depend on the others read with it.
def _rolled_sessions_sql(vehicles: str, order: str, chargers: str = "true") -> TextClause:
    return _sessions_sql(
        f"""vehicles AS (
            {vehicles}
        ), {_SERVED_HOURS_SQL}, rolled AS (
            SELECT r.*, {MICROS_SQL.format(col="r.hour")} AS hour_us,
                   date_part('epoch', r.hour) AS hour_s
            FROM bounds b
            CROSS JOIN vehicles v
            CROSS JOIN LATERAL (
                SELECT * FROM vehicle.vehicle_rollups_hourly
                WHERE vehicle_id = v.vehicle_id
                  AND hour >= {TIMESTAMPTZ_SQL.format(us="b.h1")}
                  AND hour < {TIMESTAMPTZ_SQL.format(us="b.h2")}
                OFFSET 0  -- a range scan of the key per vehicle, never a scan of every rollup
            ) AS r
        ), stale AS (
            SELECT DISTINCT {MICROS_SQL.format(col="i.hour")} AS hour_us
            FROM bounds b
            JOIN vehicle.rollup_invalidations i
              ON i.hour >= {TIMESTAMPTZ_SQL.format(us="b.h1")}
             AND i.hour < {TIMESTAMPTZ_SQL.format(us="b.h2")}
        ), unservable AS (
            -- A stale hour is read from the readings for every vehicle; an hour holding a
            -- silence longer than the gap, for its vehicle only.
            SELECT v.vehicle_id, s.hour_us FROM vehicles v CROSS JOIN stale s
            UNION
            SELECT vehicle_id, hour_us FROM rolled WHERE inner_break > :gap_s
        ), served AS (
            SELECT r.* FROM rolled r
            LEFT JOIN unservable u ON u.vehicle_id = r.vehicle_id AND u.hour_us = r.hour_us
            WHERE u.hour_us IS NULL
        ), served_hours AS (
            SELECT vehicle_id AS served_vehicle_id, array_agg(hour_s) AS served_hours_s
            FROM served GROUP BY vehicle_id
        ), pieces AS (
            SELECT v.vehicle_id, CAST(:scan_start_us AS int8) AS read_from_us, b.h1 AS read_to_us
            FROM bounds b CROSS JOIN vehicles v WHERE b.h2 > b.h1
            UNION ALL
            SELECT v.vehicle_id, b.h2 - CAST(:context_us AS int8), CAST(:scan_end_us AS int8) + 1
            FROM bounds b CROSS JOIN vehicles v WHERE b.h2 > b.h1
            UNION ALL
            SELECT vehicle_id, hour_us - CAST(:context_us AS int8), hour_us + {HOUR_US}
            FROM unservable
            UNION ALL
            SELECT v.vehicle_id, CAST(:scan_start_us AS int8), CAST(:scan_end_us AS int8) + 1
            FROM bounds b CROSS JOIN vehicles v WHERE b.h2 <= b.h1
        ), reads AS (
            SELECT vehicle_id, read_from_us, read_to_us,
                   max(read_to_us) OVER (PARTITION BY vehicle_id ORDER BY read_from_us
                                         ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                       AS before
            FROM pieces
        ), scope AS (
            SELECT vehicle_id, min(read_from_us) AS lo_us, max(read_to_us) - 1 AS hi_us
            FROM (
                SELECT *, count(*) FILTER (WHERE before IS NULL OR read_from_us > before)
                              OVER (PARTITION BY vehicle_id ORDER BY read_from_us) AS island
                FROM reads
            ) AS merged
            GROUP BY vehicle_id, island
        )""",
        order,
        chargers,
        rolled=True,
    )


_VEHICLE_SESSIONS_SQL = _rolled_sessions_sql(
    "SELECT CAST(:vehicle_id AS text) AS vehicle_id", "3, 2"
)
# Every vehicle (but the excluded one) with a reading on one of the chargers in the window's
# context (the (charger_id, read_time) index finds them), its sessions on those chargers.
_CHARGERS_SESSIONS_SQL = _rolled_sessions_sql(
    f"""SELECT DISTINCT h.vehicle_id
            FROM unnest(CAST(:charger_ids AS text[])) AS c(charger_id)
            CROSS JOIN LATERAL (
                SELECT DISTINCT vehicle_id FROM vehicle.vehicle_readings
                WHERE charger_id = c.charger_id
                  AND read_time >= {TIMESTAMPTZ_SQL.format(us=":scan_start_us")}
                  AND read_time <= {TIMESTAMPTZ_SQL.format(us=":scan_end_us")}
                  AND vehicle_id <> :excluded
            ) AS h""",
    "2, 3, 1",
    "charger_id = ANY(CAST(:charger_ids AS text[]))",
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


def make_rollups_sql(first_us: int, end_us: int, reach_us: int) -> str:
    """The rollups of every vehicle for the hours [first_us, end_us), per vehicle, charger and
    hour: the figures of _sessions_sql's readings, summed, and the silences that decide where
    sessions begin (a reading opens one when the silence before its interval is longer than the
    session gap). The readings are read from the lookaround and ROLLUP_MAX_GAP_US before: a
    previous reading farther back leaves a silence longer than the longest gap served, which
    is stored as infinite, as one farther than that is."""
    lookaround_us = 2 * reach_us
    scan_from, end = (
        TIMESTAMPTZ_SQL.format(us=str(us))
        for us in (first_us - lookaround_us - ROLLUP_MAX_GAP_US, end_us)
    )
    intervals = inline_seconds(
        _vehicle_intervals_sql(),
        reach_s=reach_us / 1_000_000,
        lookaround_s=lookaround_us / 1_000_000,
    )
    max_gap_s = ROLLUP_MAX_GAP_US / 1_000_000
    return f"""
    WITH scanned AS (
        SELECT vehicle_id, charger_id, read_time, battery_temp, kwh_delivered_dc AS energy,
               kwh_delivered_dc_register AS register
        FROM vehicle.vehicle_readings
        WHERE read_time >= {scan_from} AND read_time < {end}
        ORDER BY vehicle_id, read_time
    ), {intervals},
    silences AS (
        SELECT vehicle_id, charger_id, t, kwh, battery_temp, floor(t / 3600) * 3600 AS hour_s,
               CASE WHEN kwh IS NULL THEN t ELSE chained_start END AS span_start,
               CASE WHEN previous_t IS NULL OR chained_start - previous_t > {max_gap_s!r}
                    THEN CAST('Infinity' AS float8) ELSE chained_start - previous_t END
                   AS silence
        FROM intervals
        WHERE t >= CAST({first_us / 1_000_000!r} AS float8)
    ), ranked AS (
        SELECT *, row_number() OVER (PARTITION BY vehicle_id, charger_id, hour_s ORDER BY t)
                      AS nth
        FROM silences
    )
    INSERT INTO vehicle.vehicle_rollups_hourly AS r
        (vehicle_id, hour, charger_id, reading_count, unknown_energy_count, kwh_delivered_dc,
         battery_temp_sum, battery_temp_count, first_t, last_t, span_start, first_break,
         inner_break)
    SELECT vehicle_id, to_timestamp(hour_s), charger_id, count(*), count(*) - count(kwh),
           coalesce(sum(kwh), 0), coalesce(sum(battery_temp), 0), count(battery_temp), min(t),
           max(t), min(span_start), max(silence) FILTER (WHERE nth = 1),
           coalesce(max(silence) FILTER (WHERE nth > 1), CAST('-Infinity' AS float8))
    FROM ranked
    GROUP BY vehicle_id, charger_id, hour_s
    ON CONFLICT (vehicle_id, hour, charger_id) DO UPDATE SET
        reading_count = excluded.reading_count,
        unknown_energy_count = excluded.unknown_energy_count,
        kwh_delivered_dc = excluded.kwh_delivered_dc,
        battery_temp_sum = excluded.battery_temp_sum,
        battery_temp_count = excluded.battery_temp_count,
        first_t = excluded.first_t,
        last_t = excluded.last_t,
        span_start = excluded.span_start,
        first_break = excluded.first_break,
        inner_break = excluded.inner_break"""
