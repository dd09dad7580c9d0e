"""SQL shared by both reading kinds: the group-commit statements and the status queries, made
from a kind's declaration. Each kind's own repository adds its kind-specific queries."""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple, Self

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.config import Settings
from services.common.group_commit import ReadingTable
from services.common.partitions import DailyPartitions
from services.common.reads import ReadGate
from services.common.timeconv import MICROS_SQL, TIMESTAMPTZ_SQL
from services.readings.kind import ReadingKind

# A status row: (id, *the kind's column values, read_micros, update_micros).
StatusRow = tuple[Any, ...]
# Readings before a window that a device's usual interval is also taken from, unless the window
# holds at least MIN_STEPS_INSIDE steps between its readings of its own.
USUAL_INTERVAL_READINGS_BEFORE = 100
MIN_STEPS_INSIDE = 3


class ReportingRow(NamedTuple):
    """One device's reporting over a window, as read (see reporting_summaries): its readings
    in the window, its usual interval (micros, None with fewer than two readings in the window
    and the 100 before it), its first and last reading in the window (micros, None when none),
    the time covered by its stretches (the steps between consecutive readings in the window no
    longer than the gap threshold, micros), its stretches of reporting, the silences between
    them ((start, end) micros) and its distinct conflicting readings in the window."""

    device_id: str
    received: int
    usual_interval_us: float | None
    first_us: int | None
    last_us: int | None
    covered_us: int
    stretches: int
    gaps: list[tuple[int, int]]
    conflicts: int


def reading_table(kind: ReadingKind) -> ReadingTable:
    """The group-commit SQL of a kind (see ReadingTable for the protocol).

    The rows to write are (id, read_us, *values, position), position being the reading's index
    in its stream. A large batch is COPYed into a session-local staging table; a small one is
    sent as one JSON array of rows to a statement prepared once per connection (one round trip,
    a cached plan). Either way one statement then inserts the readings not yet stored (natural
    key: id and read_time; `ON CONFLICT DO NOTHING`, which waits for a concurrent writer's
    uncommitted reading of the same key and skips it once committed) and moves each id's status
    to its newest new reading if that is not older than the stored one. Returned: (readings
    inserted, JSON text of the "id micros" keys not inserted, or NULL when all were). Those
    keys are then read back with `stored_sql` (a later statement, so it sees every reading that
    kept them) and told apart: stored as sent (a duplicate) or with other values (a
    conflict)."""
    key = kind.id_field
    staging = f"{kind.service}_staging"
    names = [column.name for column in kind.columns]
    values = ", ".join(names)
    staged_types = ", ".join(
        f"{c.name} {c.sql_type}" + (' COLLATE "C"' if c.sql_type == "text" else "")
        for c in kind.columns
    )
    copy_types = ("text", "int8", *(column.sql_type for column in kind.columns), "int8")
    # A small batch comes as one JSON array of rows ($1) and its length ($2): one text
    # parameter costs the writer far less Python than one typed array per column. jsonb keeps
    # each number's digits (numeric), and a float's repr reads back as the same float8,
    # subnormals included; numeric has no -0, so a batch holding -0.0 goes by COPY.
    extracted = ", ".join(
        f"(r ->> {n})::{sql_type}" + (' COLLATE "C"' if sql_type == "text" else "") + f" AS {name}"
        for n, (name, sql_type) in enumerate(
            zip([key, "read_us", *names, "position"], copy_types, strict=True)
        )
    )
    sent = (
        f"sent AS MATERIALIZED (SELECT {extracted} "
        "FROM jsonb_array_elements(CAST($1 AS jsonb)) AS r),"
    )
    stored_micros = MICROS_SQL.format(col="s.read_time")
    stored_values = ", ".join(f"s.{name}" for name in names)
    key_time = TIMESTAMPTZ_SQL.format(us="k.us")
    return ReadingTable(
        staging_ddl=(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} ("
            f'{key} text COLLATE "C", read_us int8, {staged_types}, position int8)'
        ),
        copy_sql=(
            f"COPY {staging} ({key}, read_us, {values}, position) FROM STDIN (FORMAT BINARY)"
        ),
        copy_types=copy_types,
        value_names=tuple(names),
        write_sql=_write_sql(kind, "", staging, "{staged}") + f";\n        TRUNCATE {staging}",
        write_rows_sql=_write_sql(kind, sent, "sent", "$2"),
        stored_sql=(
            f"SELECT s.{key}, {stored_micros}, {stored_values} "
            "FROM unnest(%s::text[], %s::int8[]) AS k(id, us) "
            f"JOIN {kind.service}.{kind.readings_table} s "
            f"ON s.{key} = k.id AND s.read_time = {key_time}"
        ),
        conflicts_sql=(
            f"INSERT INTO {kind.service}.reading_conflicts ({key}, read_time, sent) "
            f"SELECT k.id, {key_time}, CAST(k.sent AS jsonb) "
            "FROM unnest(%s::text[], %s::int8[], %s::text[]) AS k(id, us, sent) "
            "ON CONFLICT DO NOTHING"
        ),
        partitions=DailyPartitions(kind.service, kind.readings_table),
    )


def _write_sql(kind: ReadingKind, prelude: str, rows: str, staged: str) -> str:
    """The write statement over the rows of `rows` (the staging table, or a CTE that `prelude`
    defines); `staged` is the SQL of their number."""
    schema, key = kind.service, kind.id_field
    names = [column.name for column in kind.columns]
    values = ", ".join(names)
    read_time = TIMESTAMPTZ_SQL.format(us="read_us")
    staged_read_time = TIMESTAMPTZ_SQL.format(us="s.read_us")
    updates = ",\n                ".join(f"{name} = excluded.{name}" for name in names)
    return f"""
        WITH {prelude} inserted AS (
            INSERT INTO {schema}.{kind.readings_table} ({key}, read_time, {values})
            SELECT {key}, {read_time}, {values}
            FROM {rows} ORDER BY {key}, read_us
            ON CONFLICT ({key}, read_time) DO NOTHING
            RETURNING {key}, read_time, {values}
        ),{_invalidations_sql(kind) if kind.rolled_up else ""} upserted AS (
            -- Only readings stored just now: a resent one never rewrites the status.
            INSERT INTO {schema}.{kind.status_table} AS current
                ({key}, {values}, read_time, update_time)
            SELECT DISTINCT ON ({key}) {key}, {values}, read_time, now()
            FROM inserted ORDER BY {key}, read_time DESC
            ON CONFLICT ({key}) DO UPDATE SET
                {updates},
                read_time = excluded.read_time,
                update_time = excluded.update_time
            WHERE excluded.read_time >= current.read_time
        )
        SELECT
            (SELECT count(*) FROM inserted),
            CASE WHEN (SELECT count(*) FROM inserted) < {staged} THEN (
                SELECT json_agg(s.{key} || ' ' || s.read_us)::text FROM {rows} s
                WHERE NOT EXISTS (
                    SELECT 1 FROM inserted w
                    WHERE w.{key} = s.{key} AND w.read_time = {staged_read_time})
            ) END"""


def _invalidations_sql(kind: ReadingKind) -> str:
    """A CTE of the write: the hours whose rollups the readings stored now change, when they are
    already made (before `rolled_until`): from the lookaround (twice the reach) before a
    reading's hour to the lookaround after it, plus the kind's `rollup_trailing_us`. A reading's
    interval and energy depend on the entity's previous readings within the reach and on its
    usual period, taken from the readings a lookaround on either side. Taken per hour of the
    batch: a superset, which only costs an hour recomputed for nothing. The marks are appended,
    never merged with those there (no key, no lock), so concurrent writes never wait for each
    other on them, and a run that deletes the marks its snapshot sees leaves this one, if it
    commits later, for the next run. The state row is read FOR SHARE, so that the maintenance
    loop moves `rolled_until` only once the writes that read it have committed (a reading
    committed after rollups were made, but not marked, would be lost to them)."""
    schema = kind.service
    return f"""
        state AS (
            SELECT rolled_until, reach_us FROM {schema}.rollup_state LIMIT 1 FOR SHARE
        ), invalidated AS (
            INSERT INTO {schema}.rollup_invalidations (hour)
            SELECT DISTINCT h
            FROM (
                SELECT DISTINCT date_trunc('hour', read_time, 'UTC') AS hour FROM inserted
            ) AS late
            CROSS JOIN state
            CROSS JOIN LATERAL generate_series(
                date_trunc('hour', late.hour - 2 * state.reach_us * interval '1 microsecond',
                           'UTC'),
                date_trunc('hour', late.hour + interval '1 hour'
                                   + (2 * state.reach_us + {kind.rollup_trailing_us})
                                     * interval '1 microsecond', 'UTC'),
                interval '1 hour'
            ) AS h
            WHERE late.hour - 2 * state.reach_us * interval '1 microsecond' < state.rolled_until
              AND h < state.rolled_until
        ),"""


DEFAULT_REACH_US = 900 * 1_000_000


def register_energy_sql(
    value: str, previous: str, gap: str, reach: str = ":reach_us * interval '1 microsecond'"
) -> str:
    """SQL of the energy of a register reading's interval, in kWh: `value` minus the previous
    register reading's `previous`, or `value` itself when it went down (a reset counts from
    zero, as Prometheus' increase() does); NULL (unknown) when there is no previous reading
    within `reach` (by default `:reach_us`), `gap` being the time since it."""
    return (
        f"CASE WHEN {previous} IS NULL OR {gap} > {reach} "
        f"THEN NULL WHEN {value} >= {previous} THEN {value} - {previous} ELSE {value} END"
    )


def reading_intervals_sql(
    *, device: str, table: str, table_device: str, place: str = "", extra: str = ""
) -> str:
    """CTEs that give each reading of a `scanned` CTE its interval and energy: the correlation
    rule's view of a reading, shared by both kinds.

    `scanned` has the `device` column (the meter, or the vehicle), the `place` column when
    given (a vehicle's charger: one entity is a vehicle on one charger), `read_time`, `energy`
    (interval kWh or NULL), `register` (cumulative kWh or NULL) and the `extra` columns, which
    pass through; it should come in the device's time order. The last CTE, `intervals`, has
    `device`, `place`, the extra columns and, in epoch seconds (double precision): `t` (the
    reading's time), `previous_t` (the entity's previous reading, when the device was not
    elsewhere in between, one stray reading aside; else NULL), `chained_start` (the interval's
    start: `previous_t` when that is within the reach, else one usual period before `t`) and
    `kwh` (its energy: the interval energy, or the register's difference from the entity's
    previous reading when that is a register reading within the reach, a decrease counting from
    zero; NULL when unknown: a vehicle's first reading back from another charger starts the
    count again, so energy charged elsewhere is never put here), in the device's time order.

    An entity's usual period at a reading is the median of the gaps between its readings within
    `:lookaround_s` on either side of it (gaps longer than that are silences), 60 s with none
    (never more than `:lookaround_s`: no interval is longer, which every range read around a
    session counts on); its reach is the larger of `:reach_s` and twice the period, at most
    `:lookaround_s`. The
    period is local, read from `table` (whose device column is `table_device`) by an index range
    scan, so every request cuts a reading's interval alike whatever part of the history it
    scans; and it is only read where it matters (no previous reading within `:reach_s`). The
    caller scans at least `:lookaround_s` beyond what it needs on both sides, so that every
    previous reading within the reach and every reading whose interval reaches into its range
    is there.

    One window pass in the device's time order finds the previous readings: the entity's is one
    of the two before (the one between them a stray elsewhere)."""
    passed = f", {extra}" if extra else ""
    if place:
        previous, previous_register = (
            f"""CASE WHEN previous_place = {place} THEN previous_device_{column}
                    WHEN second_place = {place} THEN second_device_{column} END"""
            for column in ("t", "register")
        )
        lags = f"""lag({place}) OVER device AS previous_place,
                   lag({place}, 2) OVER device AS second_place,
                   date_part('epoch', lag(read_time, 2) OVER device) AS second_device_t,
                   lag(register, 2) OVER device AS second_device_register,"""
        at_place = f"AND {place} = l.{place}"
        keys = f"{device}, {place}"
    else:
        previous, previous_register = "previous_device_t", "previous_device_register"
        lags, at_place, keys = "", "", device
    reach = "least(greatest(:reach_s, 2 * period), :lookaround_s)"
    return f"""
    lagged AS (
        SELECT {keys}{passed}, read_time, energy, register, t,
               {previous_register} AS previous_register, {previous} AS previous_t
        FROM (
            SELECT *,
                   date_part('epoch', read_time) AS t,
                   date_part('epoch', lag(read_time) OVER device) AS previous_device_t,
                   {lags}
                   lag(register) OVER device AS previous_device_register
            FROM scanned
            WINDOW device AS (PARTITION BY {device} ORDER BY read_time)
        ) AS ordered
    ), periods AS (
        -- The period is read only where it matters: a scalar subquery in a CASE runs only
        -- where its branch is taken. OFFSET 0 keeps it from being copied into each use.
        SELECT l.*,
               CASE WHEN NOT coalesce(t - previous_t <= :reach_s, false)
                    THEN (
                        SELECT coalesce(
                            percentile_cont(0.5) WITHIN GROUP (ORDER BY gap),
                            least(60.0, :lookaround_s)
                        )
                        FROM (
                            SELECT date_part('epoch', read_time) - date_part(
                                       'epoch', lag(read_time) OVER (ORDER BY read_time)
                                   ) AS gap
                            FROM {table}
                            WHERE {table_device} = l.{device} {at_place}
                              AND read_time >= l.read_time - :lookaround_s * interval '1 second'
                              AND read_time <= l.read_time + :lookaround_s * interval '1 second'
                        ) AS around
                        WHERE gap <= :lookaround_s
                    )
                    ELSE 60.0 END AS period
        FROM lagged l
        OFFSET 0
    ), intervals AS (
        SELECT {keys}{passed}, t, previous_t,
               CASE WHEN t - previous_t <= {reach} THEN previous_t ELSE t - period END
                   AS chained_start,
               coalesce(energy, {
        register_energy_sql("register", "previous_register", "t - previous_t", reach)
    }) AS kwh
        FROM periods
        OFFSET 0
    )"""


def inline_seconds(sql: str, **values: float) -> str:
    """`sql` with each `:name` parameter of `values` written in as a float literal: for the
    statements the maintenance loop runs through psycopg, which binds no `:name`."""
    for name, value in values.items():
        sql = re.sub(rf"(?<!:):{name}\b", f"CAST({float(value)!r} AS float8)", sql)
    return sql


def seconds_to_micros_sql(seconds: str) -> str:
    """SQL of integer microseconds since the epoch from epoch seconds (double precision)."""
    return f"round({seconds} * 1000000)::int8"


class StatusRepository:
    """The hot table of one kind: each id's newest reading. Every read goes through `reads`
    (a statement timeout, a bounded pool: see ReadGate). `reach_us` (MAX_READING_INTERVAL_SECONDS)
    is how far back a register reading looks for the previous one of its entity; twice it is
    how far beyond a range the correlation reads look (an entity's usual period is taken up to
    that long)."""

    # A column that splits a device's readings into streams of their own for its usual interval
    # (a vehicle's charger: a vehicle naming two chargers at once is not reporting twice as
    # often); none by default.
    reporting_place = ""

    def __init__(
        self,
        kind: ReadingKind,
        engine: Engine,
        reads: ReadGate | None = None,
        reach_us: int = DEFAULT_REACH_US,
    ) -> None:
        self._reads = reads or ReadGate(engine)
        self._reach_us = reach_us
        # How far beyond a range the correlation reads reach (see reading_intervals_sql).
        self._lookaround_us = 2 * reach_us
        self._table = f"{kind.service}.{kind.status_table}"
        self._readings_table = f"{kind.service}.{kind.readings_table}"
        self._conflicts_table = f"{kind.service}.reading_conflicts"
        self._key = kind.id_field
        self._columns = ", ".join(
            (
                *kind.status_fields,
                MICROS_SQL.format(col="read_time"),
                MICROS_SQL.format(col="update_time"),
            )
        )

    @classmethod
    def from_settings(
        cls, kind: ReadingKind, engine: Engine, reads: ReadGate, settings: Settings
    ) -> Self:
        return cls(kind, engine, reads, round(settings.max_reading_interval_seconds * 1_000_000))

    def get_status(self, entity_id: str) -> StatusRow | None:
        query = text(f"SELECT {self._columns} FROM {self._table} WHERE {self._key} = :id")
        with self._reads.connection() as connection:
            row = connection.execute(query, {"id": entity_id}).first()
        return None if row is None else tuple(row)

    def list_statuses(self, after: str | None, limit: int) -> list[StatusRow]:
        """Up to `limit` statuses in id order after `after`; keyset paging on the primary key.

        The dashboards' hot path reads up to 10,000 rows: a binary psycopg cursor returns them
        about twice as fast as SQLAlchemy's result rows."""
        query = (
            f"SELECT {self._columns} FROM {self._table} "
            f"WHERE {self._key} > %s ORDER BY {self._key} LIMIT %s"
        )
        with self._reads.connection() as connection:
            driver = connection.connection.driver_connection
            with driver.cursor(binary=True) as cursor:  # type: ignore[union-attr]
                return cursor.execute(query, (after or "", limit)).fetchall()

    def exists(self, entity_id: str) -> bool:
        """True once the id has reported at least once."""
        query = text(f"SELECT 1 FROM {self._table} WHERE {self._key} = :id")
        with self._reads.connection() as connection:
            return connection.execute(query, {"id": entity_id}).first() is not None

    def reporting_summaries(
        self, after: str | None, limit: int, start_us: int, end_us: int, gap_us: int
    ) -> list[ReportingRow]:
        """Up to `limit` devices that ever reported, in id order after `after`, each with its
        reporting over [start_us, end_us) (see ReportingRow). A step between consecutive
        readings ends a stretch (a gap) when longer than `gap_us` and than twice the usual
        interval."""
        key, readings = self._key, self._readings_table
        micros = MICROS_SQL.format(col="read_time")
        place = f"r.{self.reporting_place}" if self.reporting_place else "''"
        place_bare = self.reporting_place or "''"
        query = text(
            f"""
            WITH ids AS (
                SELECT {key} AS id FROM {self._table}
                WHERE {key} > :after ORDER BY {key} LIMIT :limit
            ), inside AS (
                SELECT r.{key} AS id, {place} AS place,
                       {MICROS_SQL.format(col="r.read_time")} AS t
                FROM ids JOIN {readings} r ON r.{key} = ids.id
                WHERE r.read_time >= {TIMESTAMPTZ_SQL.format(us=":start_us")}
                  AND r.read_time < {TIMESTAMPTZ_SQL.format(us=":end_us")}
            ), before AS (
                SELECT ids.id, b.place, b.t FROM ids CROSS JOIN LATERAL (
                    SELECT {place_bare} AS place, {micros} AS t FROM {readings}
                    WHERE {key} = ids.id
                      AND read_time < {TIMESTAMPTZ_SQL.format(us=":start_us")}
                    ORDER BY read_time DESC LIMIT {USUAL_INTERVAL_READINGS_BEFORE}
                ) AS b
            ), usual AS (
                -- The window's own steps when it has a few (a meter that went from a reading a
                -- minute to one every 15 is judged by its new pace), else with those before.
                SELECT id,
                       CASE WHEN count(*) FILTER (WHERE both_inside) >= {MIN_STEPS_INSIDE}
                            THEN percentile_cont(0.5) WITHIN GROUP (ORDER BY step)
                                     FILTER (WHERE both_inside)
                            ELSE percentile_cont(0.5) WITHIN GROUP (ORDER BY step) END
                           AS period
                FROM (
                    SELECT id, t - lag(t) OVER around AS step,
                           inside AND lag(inside) OVER around AS both_inside
                    FROM (
                        SELECT id, place, t, true AS inside FROM inside
                        UNION ALL SELECT id, place, t, false FROM before
                    ) AS both_
                    WINDOW around AS (PARTITION BY id, place ORDER BY t)
                ) AS steps
                WHERE step IS NOT NULL
                GROUP BY id
            ), judged AS (
                SELECT s.id, s.t, s.step, greatest(:gap_us, 2 * u.period) AS threshold
                FROM (
                    SELECT id, t, t - lag(t) OVER (PARTITION BY id ORDER BY t) AS step
                    FROM inside
                ) AS s
                LEFT JOIN usual u USING (id)
            ), per_device AS (
                SELECT id, count(*) AS received, min(t) AS first_t, max(t) AS last_t,
                       coalesce(sum(step) FILTER (WHERE step <= threshold), 0) AS covered,
                       count(*) FILTER (WHERE step IS NULL OR step > threshold) AS stretches,
                       json_agg(json_build_array(t - step, t) ORDER BY t)
                           FILTER (WHERE step > threshold) AS gaps
                FROM judged GROUP BY id
            ), conflicts AS (
                SELECT c.{key} AS id, count(*) AS n
                FROM ids JOIN {self._conflicts_table} c ON c.{key} = ids.id
                WHERE c.read_time >= {TIMESTAMPTZ_SQL.format(us=":start_us")}
                  AND c.read_time < {TIMESTAMPTZ_SQL.format(us=":end_us")}
                GROUP BY c.{key}
            )
            SELECT ids.id, coalesce(p.received, 0), u.period, p.first_t, p.last_t,
                   coalesce(p.covered, 0), coalesce(p.stretches, 0), p.gaps::text,
                   coalesce(c.n, 0)
            FROM ids
            LEFT JOIN usual u USING (id)
            LEFT JOIN per_device p USING (id)
            LEFT JOIN conflicts c USING (id)
            ORDER BY ids.id
            """
        )
        parameters = {
            "after": after or "",
            "limit": limit,
            "start_us": start_us,
            "end_us": end_us,
            "gap_us": gap_us,
        }
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(query, parameters).all()
        return [
            ReportingRow(
                device_id=row[0],
                received=int(row[1]),
                usual_interval_us=None if row[2] is None else float(row[2]),
                first_us=row[3],
                last_us=row[4],
                covered_us=int(row[5]),
                stretches=int(row[6]),
                gaps=[(int(a), int(b)) for a, b in json.loads(row[7])] if row[7] else [],
                conflicts=int(row[8]),
            )
            for row in rows
        ]
