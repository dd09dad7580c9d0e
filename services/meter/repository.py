"""SQL of MeterService: the only module that knows the meter schema's tables. The ingest and
status SQL is the shared one (services.readings.repository), made from the METER declaration."""

from __future__ import annotations

from typing import NamedTuple, Self

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.config import Settings
from services.common.reads import ReadGate
from services.common.timeconv import MICROS_SQL, TIMESTAMPTZ_SQL
from services.meter.kind import METER
from services.readings.kind import ReadingKind
from services.readings.repository import (
    DEFAULT_REACH_US,
    StatusRepository,
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
        }
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(_ATTRIBUTE_SQL, params).all()
        return [
            AttributionRow(float(row[0]), int(row[1]), float(row[2]), int(row[3]), int(row[4]))
            for row in rows
        ]


def make_rollups_sql(first_us: int, end_us: int, reach_us: int) -> str:
    """The rollups of every meter for the hours [first_us, end_us): each reading's energy as
    _SUMMARIZE_SQL takes it (register readings lagged among themselves from the reach before),
    summed per meter and hour."""
    start, end = (TIMESTAMPTZ_SQL.format(us=str(us)) for us in (first_us, end_us))
    scan_from = TIMESTAMPTZ_SQL.format(us=str(first_us - reach_us))
    reach = f"{int(reach_us)} * interval '1 microsecond'"
    energy = register_energy_sql(
        "kwh_consumed_ac_register", "previous", "read_time - previous_time", reach
    )
    return f"""
    INSERT INTO meter.meter_rollups_hourly AS r
        (meter_id, hour, reading_count, unknown_energy_count, kwh_consumed_ac)
    SELECT meter_id, date_trunc('hour', read_time, 'UTC'), count(*), count(*) - count(energy),
           coalesce(sum(energy), 0)
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
    ON CONFLICT (meter_id, hour) DO UPDATE SET
        reading_count = excluded.reading_count,
        unknown_energy_count = excluded.unknown_energy_count,
        kwh_consumed_ac = excluded.kwh_consumed_ac"""


# Every interval in one statement: the arrays are unnested in request order. The whole hours of
# an interval that the rollups cover (before rolled_until, not marked stale) are summed from
# meter_rollups_hourly; the rest of it (the partial hours at its ends, hours not yet rolled up,
# stale hours) is read from the readings: each piece by a range scan of the primary key
# (meter_id, read_time), from `reach` before its start so that its first register reading finds
# the previous one. Register readings are lagged among themselves (the window's partition), in
# time order whatever order they arrived in. A reading's energy does not depend on the piece it
# is read in, so the pieces add up to what one scan of the interval would give (the rollups are
# made with the same rule: make_rollups_sql).
_HOUR_US = 3_600_000_000
_SUMMARIZE_SQL = text(
    f"""
    WITH wanted AS (
        SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:starts AS int8[]), CAST(:ends AS int8[]))
             WITH ORDINALITY AS w(meter_id, start_us, end_us, position)
    ), state AS (
        SELECT coalesce({MICROS_SQL.format(col="rolled_until")}, 0) AS rolled_us
        FROM meter.rollup_state
    ), spans AS (
        SELECT w.position, w.meter_id, w.start_us, w.end_us, b.h1,
               greatest(b.h1, least(b.whole_end, state.rolled_us)) AS h2
        FROM wanted w
        CROSS JOIN state
        CROSS JOIN LATERAL (
            SELECT (w.start_us + {_HOUR_US} - 1) / {_HOUR_US} * {_HOUR_US} AS h1,
                   w.end_us / {_HOUR_US} * {_HOUR_US} AS whole_end
        ) AS b
    ), stale AS (
        SELECT DISTINCT {MICROS_SQL.format(col="hour")} AS hour_us FROM meter.rollup_invalidations
    ), rolled AS (
        SELECT s.position, sum(r.kwh_consumed_ac) AS kwh, sum(r.reading_count) AS readings,
               sum(r.unknown_energy_count) AS unknown
        FROM spans s
        JOIN meter.meter_rollups_hourly r
          ON r.meter_id = s.meter_id
         AND r.hour >= {TIMESTAMPTZ_SQL.format(us="s.h1")}
         AND r.hour < {TIMESTAMPTZ_SQL.format(us="s.h2")}
        WHERE s.h2 > s.h1
          AND NOT EXISTS (SELECT 1 FROM meter.rollup_invalidations i WHERE i.hour = r.hour)
        GROUP BY s.position
    ), pieces AS (
        SELECT position, meter_id, start_us, CASE WHEN h2 > h1 THEN h1 ELSE end_us END AS end_us
        FROM spans
        UNION ALL
        SELECT position, meter_id, h2, end_us FROM spans WHERE h2 > h1
        UNION ALL
        SELECT s.position, s.meter_id, st.hour_us, st.hour_us + {_HOUR_US}
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
# - `ranges` / `scanned`: each charger's readings around the sessions asked about (runs of them
#   closer than twice the lookaround read as one range), `intervals` their intervals and energy
#   (each reading's usual period taken from the readings around it).
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
    ), islands AS (
        SELECT position, charger_id, s, e,
               count(*) FILTER (WHERE previous_e IS NULL OR s - previous_e > 2 * :lookaround_s)
                   OVER (PARTITION BY charger_id ORDER BY s) AS island
        FROM (
            SELECT position, charger_id, s, e,
                   max(e) OVER (PARTITION BY charger_id ORDER BY s
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_e
            FROM wanted
        ) AS ordered
    ), ranges AS (
        SELECT charger_id, island, min(s) - :lookaround_s AS lo, max(e) + :lookaround_s AS hi
        FROM islands GROUP BY charger_id, island
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
        SELECT charger_id, island, t, chained_start AS i_start, kwh,
               kwh IS NOT NULL AND kwh <= :max_kwh_per_s * (t - chained_start) AS usable
        FROM intervals
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
    SELECT coalesce(a.kwh, 0), coalesce(j.readings, 0), coalesce(j.covered, 0),
           coalesce(j.implausible, 0), coalesce(j.unknown, 0)
    FROM wanted w
    LEFT JOIN attributed a USING (position)
    LEFT JOIN judged_per_session j USING (position)
    ORDER BY w.position
    """
)
