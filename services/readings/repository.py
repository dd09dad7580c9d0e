"""SQL shared by both reading kinds: the group-commit statements and the status queries, made
from a kind's declaration. Each kind's own repository adds its kind-specific queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.group_commit import ReadingTable
from services.common.reads import ReadGate
from services.readings.kind import ReadingKind

# Times leave the database as integer microseconds since the epoch: cheap to convert, and
# exact (a double holds every microsecond of these centuries; extract() would be numeric, slower).
MICROS_SQL = "round(date_part('epoch', {col}) * 1000000)::int8"
# And they come in as integer microseconds, made timestamptz in SQL (exact, and cheaper than a
# datetime per reading): `{us}` is an int8 expression.
TIMESTAMPTZ_SQL = "timestamptz 'epoch' + {us} * interval '1 microsecond'"

# A status row: (id, *the kind's column values, read_micros, update_micros).
StatusRow = tuple[Any, ...]


def reading_table(kind: ReadingKind) -> ReadingTable:
    """The group-commit SQL of a kind (see ReadingTable for the protocol): COPY into a
    session-local staging table, then one statement that inserts the readings not yet stored
    (natural key: id and read_time), moves each id's status to its newest new reading if that
    is not older than the stored one, and lists the keys that were already stored."""
    schema, key = kind.service, kind.id_field
    staging = f"{kind.service}_staging"
    names = [column.name for column in kind.columns]
    values = ", ".join(names)
    staged_types = ", ".join(
        f"{c.name} {c.sql_type}" + (' COLLATE "C"' if c.sql_type == "text" else "")
        for c in kind.columns
    )
    read_time = TIMESTAMPTZ_SQL.format(us="read_us")
    staged_read_time = TIMESTAMPTZ_SQL.format(us="s.read_us")
    updates = ",\n                ".join(f"{name} = excluded.{name}" for name in names)
    return ReadingTable(
        staging_ddl=(
            f"CREATE TEMP TABLE IF NOT EXISTS {staging} ("
            f'{key} text COLLATE "C", read_us int8, {staged_types})'
        ),
        copy_sql=f"COPY {staging} ({key}, read_us, {values}) FROM STDIN (FORMAT BINARY)",
        copy_types=("text", "int8", *(column.sql_type for column in kind.columns)),
        write_sql=f"""
        WITH inserted AS (
            INSERT INTO {schema}.{kind.readings_table} ({key}, read_time, {values})
            SELECT {key}, {read_time}, {values}
            FROM {staging} ORDER BY {key}, read_us
            ON CONFLICT DO NOTHING
            RETURNING {key}, read_time, {values}
        ), upserted AS (
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
        SELECT stored.n, CASE WHEN stored.n < {{staged}} THEN (
            SELECT array_agg(s.{key} || ' ' || s.read_us) FROM {staging} s
            WHERE NOT EXISTS (
                SELECT 1 FROM inserted i
                WHERE i.{key} = s.{key} AND i.read_time = {staged_read_time})
        ) END
        FROM (SELECT count(*) AS n FROM inserted) AS stored;
        TRUNCATE {staging}""",
    )


class StatusRepository:
    """The hot table of one kind: each id's newest reading. Every read goes through `reads`
    (a statement timeout, a bounded pool: see ReadGate)."""

    def __init__(self, kind: ReadingKind, engine: Engine, reads: ReadGate | None = None) -> None:
        self._reads = reads or ReadGate(engine)
        self._table = f"{kind.service}.{kind.status_table}"
        self._key = kind.id_field
        self._columns = ", ".join(
            (
                *kind.status_fields,
                MICROS_SQL.format(col="read_time"),
                MICROS_SQL.format(col="update_time"),
            )
        )

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
