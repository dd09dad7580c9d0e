"""SQL of MeterService: the only module that knows the meter schema's tables. The ingest and
status SQL is the shared one (services.readings.repository), made from the METER declaration."""

from __future__ import annotations

from typing import NamedTuple, Self

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.config import Settings
from services.common.reads import ReadGate
from services.common.rollups import HOUR_US, rolled_until_sql, rollup_rule
from services.common.timeconv import MICROS_SQL, TIMESTAMPTZ_SQL
from services.meter.kind import METER
from services.readings.kind import ReadingKind
from services.readings.repository import (
    DEFAULT_REACH_US,
    StatusRepository,
    inline_seconds,
    reading_intervals_sql,
    reading_table,
    register_energy_sql,
    seconds_to_micros_sql,
)

READINGS_TABLE = reading_table(METER)
DEFAULT_MAX_POWER_KW = 1000.0


class ConsumptionRow(NamedTuple):
    """One interval's AC energy (kWh), its readings, and those of unknown energy."""

    kwh_consumed_ac: float
    reading_count: int
    unknown_energy_count: int


class AttributionRow(NamedTuple):
    """The AC attributed to one session: kWh, the meter readings attributed, seconds of the span
    covered by known, plausible meter intervals, readings excluded as implausible, readings of
    unknown energy."""

    kwh_consumed_ac: float
    reading_count: int
    covered_seconds: float
    implausible_count: int
    unknown_energy_count: int


class SpanColumns(NamedTuple):
    """Sessions as parallel arrays: charger ids, span starts and ends (micros), DC kWh."""

    charger_ids: list[str]
    starts_us: list[int]
    ends_us: list[int]
    kwh_delivered_dc: list[float]


class MeterRepository(StatusRepository):
    """The charger statuses, the AC energy sums of SummarizeConsumption and the attributions of
    AttributeConsumption. `max_power_kw` (MAX_CHARGER_POWER_KW): a meter interval implying more
    is implausible and excluded from attributions."""

    def __init__(
        self,
        kind: ReadingKind,
        engine: Engine,
        reads: ReadGate | None = None,
        reach_us: int = DEFAULT_REACH_US,
        max_power_kw: float = DEFAULT_MAX_POWER_KW,
    ) -> None:
        super().__init__(kind, engine, reads, reach_us)
        self._max_power_kw = max_power_kw
        self._rollup_rule = rollup_rule(reach_us, meter_rollup_rule(max_power_kw))

    @classmethod
    def from_settings(
        cls, kind: ReadingKind, engine: Engine, reads: ReadGate, settings: Settings
    ) -> Self:
        return cls(
            kind,
            engine,
            reads,
            round(settings.max_reading_interval_seconds * 1_000_000),
            settings.max_charger_power_kw,
        )

    def summarize(
        self, meter_ids: list[str], starts_us: list[int], ends_us: list[int]
    ) -> list[ConsumptionRow]:
        """AC kWh, reading count and unknown-energy count of each (meter, [start, end)), in the
        order given; a register reading's energy is its difference from the previous one."""
        params = {
            "ids": meter_ids,
            "starts": starts_us,
            "ends": ends_us,
            "reach_us": self._reach_us,
            "rollup_rule": self._rollup_rule,
        }
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(_SUMMARIZE_SQL, params).all()
        return [ConsumptionRow(float(row[0]), int(row[1]), int(row[2])) for row in rows]

    def attribute(
        self,
        sessions: SpanColumns,
        others: SpanColumns,
        window_start_us: int,
        window_end_us: int,
    ) -> list[AttributionRow]:
        """The AC attributed to each of `sessions`, in their order: each meter interval's energy
        inside the window [window_start_us, window_end_us), split among the sessions and
        `others` on its charger that overlap it (see _ATTRIBUTE_SQL). Intervals implying more
        than the maximum power are excluded and counted."""
        params = {
            "ids": sessions.charger_ids,
            "starts": sessions.starts_us,
            "ends": sessions.ends_us,
            "dcs": sessions.kwh_delivered_dc,
            "other_ids": others.charger_ids,
            "other_starts": others.starts_us,
            "other_ends": others.ends_us,
            "other_dcs": others.kwh_delivered_dc,
            "start_s": window_start_us / 1_000_000,
            "end_s": window_end_us / 1_000_000,
            "max_kwh_per_s": self._max_power_kw / 3600,
            "reach_s": self._reach_us / 1_000_000,
            "lookaround_s": self._lookaround_us / 1_000_000,
            "rollup_rule": self._rollup_rule,
        }
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(_ATTRIBUTE_SQL, params).all()
        return [
            AttributionRow(float(row[0]), int(row[1]), float(row[2]), int(row[3]), int(row[4]))
            for row in rows
        ]


def meter_rollup_rule(max_power_kw: float) -> str:
    """The meter rollups' own setting: which intervals are plausible (see rollup_rule)."""
    return f"max_charger_power_kw={max_power_kw!r}"


def make_rollups_sql(first_us: int, end_us: int, reach_us: int, max_power_kw: float) -> str:
    """The rollups of every meter for the hours [first_us, end_us), summed per meter and hour:
    each reading's energy as _SUMMARIZE_SQL takes it (register readings lagged among themselves
    from the reach before), and each reading's interval as _ATTRIBUTE_SQL takes it (the
    correlation rule: from the lookaround before, the usual period from the readings around),
    split into the attributable (known and plausible at `max_power_kw`), the implausible and
    the unknown."""
    start, end = (TIMESTAMPTZ_SQL.format(us=str(us)) for us in (first_us, end_us))
    lookaround_us = 2 * reach_us
    scan_from = TIMESTAMPTZ_SQL.format(us=str(first_us - lookaround_us))
    reach = f"{int(reach_us)} * interval '1 microsecond'"
    energy = register_energy_sql(
        "kwh_consumed_ac_register", "previous", "read_time - previous_time", reach
    )
    intervals = inline_seconds(
        reading_intervals_sql(
            device="charger_id", table="meter.meter_readings", table_device="meter_id"
        ),
        reach_s=reach_us / 1_000_000,
        lookaround_s=lookaround_us / 1_000_000,
    )
    max_kwh_per_s = f"CAST({max_power_kw / 3600!r} AS float8)"
    return f"""
    WITH summed AS (
        SELECT meter_id, date_trunc('hour', read_time, 'UTC') AS hour, count(*) AS readings,
               count(*) - count(energy) AS unknown, coalesce(sum(energy), 0) AS kwh
        FROM (
            SELECT meter_id, read_time, coalesce(kwh_consumed_ac, {energy}) AS energy
            FROM (
                SELECT meter_id, read_time, kwh_consumed_ac, kwh_consumed_ac_register,
                       lag(kwh_consumed_ac_register) OVER registers AS previous,
                       lag(read_time) OVER registers AS previous_time
                FROM meter.meter_readings
                WHERE read_time >= {scan_from} AND read_time < {end}
                WINDOW registers AS (
                    PARTITION BY meter_id, kwh_consumed_ac_register IS NULL ORDER BY read_time)
            ) AS lagged
            WHERE read_time >= {start}
        ) AS energies
        GROUP BY 1, 2
    ), scanned AS (
        SELECT meter_id AS charger_id, read_time, kwh_consumed_ac AS energy,
               kwh_consumed_ac_register AS register
        FROM meter.meter_readings
        WHERE read_time >= {scan_from} AND read_time < {end}
        ORDER BY meter_id, read_time
    ), {intervals},
    judged AS (
        SELECT charger_id AS meter_id, to_timestamp(floor(t / 3600) * 3600) AS hour, kwh,
               t - chained_start AS length,
               kwh IS NOT NULL AND kwh <= {max_kwh_per_s} * (t - chained_start) AS usable
        FROM intervals
        WHERE t >= CAST({first_us / 1_000_000!r} AS float8)
    ), attributable AS (
        SELECT meter_id, hour,
               count(*) FILTER (WHERE usable) AS readings,
               coalesce(sum(kwh) FILTER (WHERE usable), 0) AS kwh,
               coalesce(sum(length) FILTER (WHERE usable), 0) AS covered,
               count(*) FILTER (WHERE kwh IS NOT NULL AND NOT usable) AS implausible,
               count(*) FILTER (WHERE kwh IS NULL) AS unknown
        FROM judged GROUP BY 1, 2
    )
    INSERT INTO meter.meter_rollups_hourly AS r
        (meter_id, hour, reading_count, unknown_energy_count, kwh_consumed_ac,
         attributable_count, attributable_kwh, covered_seconds, implausible_count,
         interval_unknown_count)
    SELECT s.meter_id, s.hour, s.readings, s.unknown, s.kwh,
           a.readings, a.kwh, a.covered, a.implausible, a.unknown
    FROM summed s JOIN attributable a USING (meter_id, hour)
    ON CONFLICT (meter_id, hour) DO UPDATE SET
        reading_count = excluded.reading_count,
        unknown_energy_count = excluded.unknown_energy_count,
        kwh_consumed_ac = excluded.kwh_consumed_ac,
        attributable_count = excluded.attributable_count,
        attributable_kwh = excluded.attributable_kwh,
        covered_seconds = excluded.covered_seconds,
        implausible_count = excluded.implausible_count,
        interval_unknown_count = excluded.interval_unknown_count"""


# Every interval in one statement: the arrays are unnested in request order. The whole hours of
# an interval that the rollups cover (before rolled_until, made with this service's rule, not
# stale) are summed from meter_rollups_hourly; the rest of it (the partial hours at its ends,
# hours not yet rolled up, stale hours) is read from the readings: each piece by a range scan of
# the primary key (meter_id, read_time), from `reach` before its start so that its first
# register reading finds the previous one. Register readings are lagged among themselves (the
# window's partition), in time order whatever order they arrived in. A reading's energy does not
# depend on the piece it is read in, so the pieces add up to what one scan of the interval would
# give (the rollups are made with the same rule: make_rollups_sql).
_SUMMARIZE_SQL = text(
    f"""
    WITH wanted AS (
        SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:starts AS int8[]), CAST(:ends AS int8[]))
             WITH ORDINALITY AS w(meter_id, start_us, end_us, position)
    ), state AS (
        {rolled_until_sql("meter")}
    ), spans AS (
        SELECT w.position, w.meter_id, w.start_us, w.end_us, b.h1,
               greatest(b.h1, least(b.whole_end, state.rolled_us)) AS h2
        FROM wanted w
        CROSS JOIN state
        CROSS JOIN LATERAL (
            SELECT (w.start_us + {HOUR_US} - 1) / {HOUR_US} * {HOUR_US} AS h1,
                   w.end_us / {HOUR_US} * {HOUR_US} AS whole_end
        ) AS b
    ), stale AS (
        SELECT DISTINCT {MICROS_SQL.format(col="hour")} AS hour_us FROM meter.rollup_invalidations
    ), rolled AS (
        SELECT s.position, sum(r.kwh_consumed_ac) AS kwh, sum(r.reading_count) AS readings,
               sum(r.unknown_energy_count) AS unknown
        FROM spans s
        CROSS JOIN LATERAL (
            SELECT hour, kwh_consumed_ac, reading_count, unknown_energy_count
            FROM meter.meter_rollups_hourly
            WHERE meter_id = s.meter_id
              AND hour >= {TIMESTAMPTZ_SQL.format(us="s.h1")}
              AND hour < {TIMESTAMPTZ_SQL.format(us="s.h2")}
            OFFSET 0  -- a range scan of the key per span, never a scan of every rollup
        ) AS r
        WHERE s.h2 > s.h1
          AND NOT EXISTS (SELECT 1 FROM meter.rollup_invalidations i WHERE i.hour = r.hour)
        GROUP BY s.position
    ), pieces AS (
        SELECT position, meter_id, start_us, CASE WHEN h2 > h1 THEN h1 ELSE end_us END AS end_us
        FROM spans
        UNION ALL
        SELECT position, meter_id, h2, end_us FROM spans WHERE h2 > h1
        UNION ALL
        SELECT s.position, s.meter_id, st.hour_us, st.hour_us + {HOUR_US}
        FROM spans s JOIN stale st ON st.hour_us >= s.h1 AND st.hour_us < s.h2
        WHERE s.h2 > s.h1
    ), raw AS (
        SELECT p.position, sum(totals.kwh) AS kwh, sum(totals.readings) AS readings,
               sum(totals.unknown) AS unknown
        FROM pieces p
        CROSS JOIN LATERAL (
            SELECT sum(energy) AS kwh, count(*) AS readings, count(*) - count(energy) AS unknown
            FROM (
                SELECT read_time,
                       coalesce(kwh_consumed_ac, {
        register_energy_sql("kwh_consumed_ac_register", "previous", "read_time - previous_time")
    }) AS energy
                FROM (
                    SELECT read_time, kwh_consumed_ac, kwh_consumed_ac_register,
                           lag(kwh_consumed_ac_register) OVER registers AS previous,
                           lag(read_time) OVER registers AS previous_time
                    FROM meter.meter_readings r
                    WHERE r.meter_id = p.meter_id
                      AND r.read_time >= {TIMESTAMPTZ_SQL.format(us="(p.start_us - :reach_us)")}
                      AND r.read_time < {TIMESTAMPTZ_SQL.format(us="p.end_us")}
                    WINDOW registers AS (
                        PARTITION BY kwh_consumed_ac_register IS NULL ORDER BY read_time)
                ) AS lagged
                WHERE read_time >= {TIMESTAMPTZ_SQL.format(us="p.start_us")}
            ) AS energies
        ) AS totals
        WHERE p.end_us > p.start_us
        GROUP BY p.position
    )
    SELECT coalesce(rolled.kwh, 0) + coalesce(raw.kwh, 0),
           coalesce(rolled.readings, 0) + coalesce(raw.readings, 0),
           coalesce(rolled.unknown, 0) + coalesce(raw.unknown, 0)
    FROM wanted w
    LEFT JOIN rolled USING (position)
    LEFT JOIN raw USING (position)
    ORDER BY w.position
    """
)


# The correlation rule's AC side in one statement, times in epoch seconds (double precision).
# - `spans`: the sessions asked about (with their position) and the others on their chargers.
# - `active`: each charger's time cut at every span's start and end into segments, each with the
#   sessions covering it and their share: all of it for one session; several (concurrent) share
#   by their average DC power (equally when none has DC).
# - `served`: the whole hours of a session asked about that the rollups answer: its readings'
#   intervals lie inside the session and the window, no other session comes within the
#   lookaround of the hour (their intervals are all this session's), the hour is rolled up
#   with this service's rule and not stale. `rolled` sums their attribution figures.
# - `ranges` / `scanned`: each charger's readings around the rest of the sessions asked about
#   (each piece read from the lookaround before it; pieces whose reads overlap are one range),
#   `intervals` their intervals and energy (each reading's usual period taken from the
#   readings around it); readings of served hours are context only (`judged`).
# - `touching`: each (session asked about, meter interval overlapping it): coverage and counts.
#   Sessions meet intervals, and intervals meet segments, only within one range (`island`): a
#   month of sessions on a charger would otherwise compare every reading with every session.
# - `split`: each known, plausible interval's energy inside the window goes to the sessions
#   overlapping it in proportion to their share of the time the sessions cover in it.
_ATTRIBUTE_SQL = text(
    f"""
    WITH wanted AS (
        SELECT position, charger_id, start_us::float8 / 1000000 AS s,
               end_us::float8 / 1000000 AS e, dc
        FROM unnest(CAST(:ids AS text[]), CAST(:starts AS int8[]), CAST(:ends AS int8[]),
                    CAST(:dcs AS float8[]))
             WITH ORDINALITY AS w(charger_id, start_us, end_us, dc, position)
    ), spans AS (
        SELECT position, charger_id, s, e, dc FROM wanted
        UNION ALL
        SELECT NULL, charger_id, start_us::float8 / 1000000, end_us::float8 / 1000000, dc
        FROM unnest(CAST(:other_ids AS text[]), CAST(:other_starts AS int8[]),
                    CAST(:other_ends AS int8[]), CAST(:other_dcs AS float8[]))
             AS o(charger_id, start_us, end_us, dc)
        WHERE charger_id IN (SELECT charger_id FROM wanted)
    ), points AS (
        SELECT DISTINCT charger_id, p FROM spans CROSS JOIN LATERAL (VALUES (s), (e)) AS v(p)
    ), segments AS (
        SELECT charger_id, p AS g_start,
               lead(p) OVER (PARTITION BY charger_id ORDER BY p) AS g_end
        FROM points
    ), covering AS (
        SELECT g.charger_id, g.g_start, g.g_end, sp.position, sp.dc / (sp.e - sp.s) AS rate,
               count(*) OVER segment AS sessions, sum(sp.dc / (sp.e - sp.s)) OVER segment AS rates
        FROM segments g
        JOIN spans sp ON sp.charger_id = g.charger_id AND sp.s <= g.g_start AND sp.e >= g.g_end
        WHERE g.g_end > g.g_start AND sp.e > sp.s
        WINDOW segment AS (PARTITION BY g.charger_id, g.g_start)
    ), active AS (
        SELECT charger_id, g_start, g_end, position, sessions,
               CASE WHEN sessions = 1 THEN 1.0
                    WHEN rates > 0 THEN rate / rates
                    ELSE 1.0 / sessions END AS share
        FROM covering
    ), state AS (
        {rolled_until_sql("meter")}
    ), candidates AS (
        -- Each session's whole hours whose readings' intervals (at most the lookaround long)
        -- lie inside it and inside the window, up to rolled_until.
        SELECT w.position, w.charger_id, CAST(h AS float8) AS hour_s
        FROM wanted w
        CROSS JOIN state
        CROSS JOIN LATERAL generate_series(
            CAST(ceil((greatest(w.s, :start_s) + :lookaround_s) / 3600) * 3600 AS int8),
            CAST(least(floor(least(w.e, :end_s) / 3600) * 3600,
                       floor(state.rolled_us / 1000000.0)) AS int8) - 3600,
            3600
        ) AS h
    ), served AS (
        -- Those no other session on the charger comes near, not stale, whose rollup (if any:
        -- an hour without readings has none) holds the attribution figures.
        SELECT c.position, c.charger_id, c.hour_s, r.attributable_kwh, r.attributable_count,
               r.covered_seconds, r.implausible_count, r.interval_unknown_count
        FROM candidates c
        LEFT JOIN LATERAL (
            -- A look-up of the key per candidate: the candidates are estimated at 1000 an
            -- interval, and joined by hash the rollups of every meter and hour were scanned
            -- (a month of 10,000 meters is 7.2M rows) for each call.
            SELECT meter_id, attributable_kwh, attributable_count, covered_seconds,
                   implausible_count, interval_unknown_count
            FROM meter.meter_rollups_hourly
            WHERE meter_id = c.charger_id AND hour = to_timestamp(c.hour_s)
            OFFSET 0
        ) AS r ON true
        WHERE (r.meter_id IS NULL OR r.attributable_kwh IS NOT NULL)
          AND NOT EXISTS (
              SELECT 1 FROM spans o
              WHERE o.charger_id = c.charger_id AND o.position IS DISTINCT FROM c.position
                AND o.s < c.hour_s + 3600 AND o.e > c.hour_s - :lookaround_s)
          AND NOT EXISTS (
              SELECT 1 FROM meter.rollup_invalidations i WHERE i.hour = to_timestamp(c.hour_s))
    ), served_hours AS (
        SELECT charger_id, array_agg(hour_s) AS hours FROM served GROUP BY charger_id
    ), served_runs AS (
        SELECT position, charger_id, min(hour_s) AS lo_s, max(hour_s) + 3600 AS hi_s
        FROM (
            SELECT *, hour_s - 3600 * row_number() OVER (PARTITION BY position ORDER BY hour_s)
                          AS run
            FROM served
        ) AS numbered
        GROUP BY position, charger_id, run
    ), rolled AS (
        SELECT position, sum(attributable_kwh) AS kwh, sum(attributable_count) AS readings,
               sum(covered_seconds) AS covered, sum(implausible_count) AS implausible,
               sum(interval_unknown_count) AS unknown
        FROM served GROUP BY position
    ), raw_pieces AS (
        -- The reading times of each session taken from the readings: before, between and
        -- after its served runs, up to the lookaround after its end.
        SELECT r.charger_id,
               coalesce(lag(r.hi_s) OVER (PARTITION BY r.position ORDER BY r.lo_s), w.s) AS lo,
               r.lo_s AS hi
        FROM served_runs r JOIN wanted w USING (position)
        UNION ALL
        SELECT w.charger_id, coalesce(max(r.hi_s), w.s), w.e + :lookaround_s
        FROM wanted w LEFT JOIN served_runs r USING (position)
        GROUP BY w.position, w.charger_id, w.s, w.e
    ), reads AS (
        SELECT charger_id, lo - :lookaround_s AS lo, hi,
               max(hi) OVER (PARTITION BY charger_id ORDER BY lo
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before
        FROM raw_pieces WHERE hi > lo
    ), ranges AS (
        -- Each piece read from the lookaround before it; pieces whose reads overlap are one.
        SELECT charger_id, island, min(lo) AS lo, max(hi) AS hi
        FROM (
            SELECT *, count(*) FILTER (WHERE before IS NULL OR lo > before)
                          OVER (PARTITION BY charger_id ORDER BY lo) AS island
            FROM reads
        ) AS merged
        GROUP BY charger_id, island
    ), islands AS (
        -- Each session with the ranges holding readings that may touch it.
        SELECT w.position, w.charger_id, w.s, w.e, r.island
        FROM wanted w
        JOIN ranges r ON r.charger_id = w.charger_id AND r.lo < w.e + :lookaround_s
                     AND r.hi > w.s
    ), scanned AS (
        SELECT r.charger_id, r.island, m.read_time, m.kwh_consumed_ac AS energy,
               m.kwh_consumed_ac_register AS register
        FROM ranges r
        CROSS JOIN LATERAL (
            SELECT read_time, kwh_consumed_ac, kwh_consumed_ac_register
            FROM meter.meter_readings
            WHERE meter_id = r.charger_id
              AND read_time >= {TIMESTAMPTZ_SQL.format(us=seconds_to_micros_sql("r.lo"))}
              AND read_time <= {TIMESTAMPTZ_SQL.format(us=seconds_to_micros_sql("r.hi"))}
            OFFSET 0  -- a range scan of the key per range, never a join over the whole table
        ) AS m
    ), {
        reading_intervals_sql(
            device="charger_id",
            table="meter.meter_readings",
            table_device="meter_id",
            extra="island",
        )
    },
    judged AS (
        -- Readings of served hours were read as context only: their sessions take them from
        -- the rollups.
        SELECT i.charger_id, i.island, i.t, i.chained_start AS i_start, i.kwh,
               i.kwh IS NOT NULL AND i.kwh <= :max_kwh_per_s * (i.t - i.chained_start) AS usable
        FROM intervals i
        -- Each charger's served hours as one array, joined on the charger: a hash join of one
        -- row per charger whatever the estimates. (A NOT IN over the served hours was hashed
        -- only while the planner thought them few: estimated at 10^9, it compared each of 115k
        -- readings with every served hour, 4 s a call for 100 chargers' day of sessions; an
        -- anti-join was planned as a nested loop over every served hour.)
        LEFT JOIN served_hours h ON h.charger_id = i.charger_id
        WHERE h.hours IS NULL OR NOT (floor(i.t / 3600) * 3600 = ANY (h.hours))
    ), touching AS (
        -- Joined on the island too: a session meets only the readings read around it, not
        -- every reading of its charger (a month of sessions would compare them all).
        SELECT w.position, j.*, least(j.t, w.e) - greatest(j.i_start, w.s) AS overlap
        FROM islands w
        JOIN judged j ON j.charger_id = w.charger_id AND j.island = w.island
                     AND j.t > w.s AND j.i_start < w.e
    ), usable AS (
        SELECT DISTINCT charger_id, island, t, i_start,
               kwh * (least(t, :end_s) - greatest(i_start, :start_s)) / (t - i_start) AS kwh
        FROM touching WHERE usable
    ), placed AS MATERIALIZED (
        -- Each segment with the islands whose range it overlaps (an interval lies inside its
        -- island's range). Materialized, so that the planner joins intervals to it on charger
        -- and island (31 days: 0.7 s) rather than to the segments on the charger alone (14 s).
        SELECT a.*, r.island
        FROM active a
        JOIN ranges r ON r.charger_id = a.charger_id AND a.g_start < r.hi AND a.g_end > r.lo
    ), pieces AS (
        SELECT u.charger_id, u.t, u.kwh, a.position, a.share, a.sessions,
               least(a.g_end, u.t) - greatest(a.g_start, u.i_start) AS overlap
        FROM usable u
        JOIN placed a ON a.charger_id = u.charger_id AND a.island = u.island
                     AND a.g_start < u.t AND a.g_end > u.i_start
    ), split AS (
        SELECT position,
               kwh * overlap * share
                   / sum(overlap / sessions) OVER (PARTITION BY charger_id, t) AS kwh
        FROM pieces
    ), attributed AS (
        SELECT position, sum(kwh) AS kwh FROM split WHERE position IS NOT NULL GROUP BY position
    ), judged_per_session AS (
        SELECT position,
               count(*) FILTER (WHERE usable) AS readings,
               coalesce(sum(overlap) FILTER (WHERE usable), 0) AS covered,
               count(*) FILTER (WHERE kwh IS NOT NULL AND NOT usable) AS implausible,
               count(*) FILTER (WHERE kwh IS NULL) AS unknown
        FROM touching GROUP BY position
    )
    SELECT coalesce(a.kwh, 0) + coalesce(ro.kwh, 0),
           coalesce(j.readings, 0) + coalesce(ro.readings, 0),
           coalesce(j.covered, 0) + coalesce(ro.covered, 0),
           coalesce(j.implausible, 0) + coalesce(ro.implausible, 0),
           coalesce(j.unknown, 0) + coalesce(ro.unknown, 0)
    FROM wanted w
    LEFT JOIN attributed a USING (position)
    LEFT JOIN judged_per_session j USING (position)
    LEFT JOIN rolled ro USING (position)
    ORDER BY w.position
    """
)
