"""Daily range partitions of a history table on `read_time` (UTC days), made and dropped while
the service runs.

A partition covers [day 00:00Z, next day 00:00Z) and is named `<table>_pYYYYMMDD` in the table's
schema. There is no default partition: a reading is always stored in its day's partition, which
is created when a batch needs it (a backlog, a year-old import) and ahead of time by the
maintenance loop. A partition is made as a plain table and then attached (ATTACH PARTITION takes
a lock that does not stop writers or readers of the other partitions, where CREATE TABLE …
PARTITION OF would stop them all), under an advisory lock so that two writers or two replicas
creating the same day do not collide. Expired days are detached CONCURRENTLY (again without
stopping the others) and then dropped."""

from __future__ import annotations

import logging
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from services.common.timeconv import DAY_US

log = logging.getLogger(__name__)

_EPOCH = date(1970, 1, 1)
_SUFFIX = re.compile(r"_p(\d{8})$")


def day_of(micros: int) -> int:
    """The UTC day of a time in microseconds since the epoch, as days since the epoch."""
    return micros // DAY_US


def as_date(day: int) -> date:
    return _EPOCH + timedelta(days=day)


def day_number(value: date) -> int:
    return (value - _EPOCH).days


def bounds_sql(day: int) -> str:
    """The partition bound of a UTC day: `FOR VALUES FROM ('<day>T00:00Z') TO ('<next day>')`."""
    start = datetime.combine(as_date(day), datetime.min.time(), UTC)
    end = start + timedelta(days=1)
    return f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"


class DailyPartitions:
    """The daily partitions of `schema.table`. Remembers the days known to exist (shared by the
    threads of one process), so a batch whose days all exist costs one set lookup per day."""

    def __init__(self, schema: str, table: str) -> None:
        self.schema = schema
        self.table = table
        self._known: set[int] = set()
        self._lock = threading.Lock()

    @property
    def parent(self) -> str:
        return f"{self.schema}.{self.table}"

    def name(self, day: int) -> str:
        return f"{self.table}_p{as_date(day):%Y%m%d}"

    def existing(self, connection: psycopg.Connection) -> dict[int, str]:
        """Day → partition name of every partition attached now (not one being detached)."""
        rows = connection.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass AND NOT i.inhdetachpending",
            (self.parent,),
        ).fetchall()
        found: dict[int, str] = {}
        for (relname,) in rows:
            match = _SUFFIX.search(relname)
            if match:
                found[day_number(datetime.strptime(match.group(1), "%Y%m%d").date())] = relname
        return found

    def ensure(self, connection: psycopg.Connection, days: Iterable[int]) -> list[int]:
        """Creates the partitions of `days` that do not exist; returns the days created.
        `connection` must be in autocommit mode (each partition is its own transaction)."""
        with self._lock:
            missing = set(days) - self._known
        if not missing:
            return []
        present = self.existing(connection)
        created = []
        for day in sorted(missing - present.keys()):
            if self._create(connection, day):
                created.append(day)
        with self._lock:
            self._known |= missing | present.keys()
        return created

    def _create(self, connection: psycopg.Connection, day: int) -> bool:
        name = self.name(day)
        with connection.transaction():
            # Two writers (or replicas) may want the same day at once: the second waits here,
            # then finds the partition made.
            lock_key = zlib.crc32(f"{self.schema}.{name}".encode())
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
            made = connection.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f"{self.schema}.{name}",)
            ).fetchone()
            if made and made[0]:
                return False
            connection.execute(
                f"CREATE TABLE {self.schema}.{name} "
                f"(LIKE {self.parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            connection.execute(
                f"ALTER TABLE {self.parent} ATTACH PARTITION {self.schema}.{name} "
                + bounds_sql(day)
            )
        log.info("partition created", extra={"table": self.parent, "partition": name})
        return True

    def drop_before(self, connection: psycopg.Connection, first_kept_day: int) -> list[str]:
        """Detaches (CONCURRENTLY) and drops every partition of a day before `first_kept_day`;
        returns their names. `connection` must be in autocommit mode. A detach left pending by
        an interrupted run is finished first."""
        pending = connection.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass AND i.inhdetachpending",
            (self.parent,),
        ).fetchall()
        for (relname,) in pending:
            connection.execute(
                f"ALTER TABLE {self.parent} DETACH PARTITION {self.schema}.{relname} FINALIZE"
            )
            connection.execute(f"DROP TABLE {self.schema}.{relname}")
        dropped = [relname for (relname,) in pending]
        for day, relname in sorted(self.existing(connection).items()):
            if day < first_kept_day:
                self._drop(connection, day, relname)
                dropped.append(relname)
        return dropped

    def drop(self, connection: psycopg.Connection, day: int) -> bool:
        """Detaches (CONCURRENTLY) and drops the partition of `day`; False when there is none."""
        relname = self.existing(connection).get(day)
        if relname is None:
            return False
        self._drop(connection, day, relname)
        return True

    def _drop(self, connection: psycopg.Connection, day: int, relname: str) -> None:
        with self._lock:
            self._known.discard(day)
        connection.execute(
            f"ALTER TABLE {self.parent} DETACH PARTITION {self.schema}.{relname} CONCURRENTLY"
        )
        connection.execute(f"DROP TABLE {self.schema}.{relname}")
        log.info("partition dropped", extra={"table": self.parent, "partition": relname})

    def forget(self) -> None:
        """Forgets the days known to exist (another process may have dropped some)."""
        with self._lock:
            self._known.clear()


def convert_to_daily(
    execute: Callable[[str], Any],
    schema: str,
    table: str,
    key: str,
    indexes: Sequence[tuple[str, str]] = (),
) -> None:
    """Migration: makes `schema.table` (primary key (key, read_time)) partitioned by day,
    keeping every row. `execute` runs one SQL statement and returns its result (Alembic's
    bind.exec_driver_sql). `indexes` are the table's other indexes as (name, column list).
    The rows are copied once into one partition per day they span; the old table is dropped."""
    partitions = DailyPartitions(schema, table)
    old = f"{table}_unpartitioned"
    execute(f"ALTER TABLE {schema}.{table} RENAME TO {old}")
    execute(f"ALTER INDEX {schema}.{table}_pkey RENAME TO {old}_pkey")
    for name, _ in indexes:
        execute(f"ALTER INDEX {schema}.{name} RENAME TO {name}_unpartitioned")
    execute(
        f"CREATE TABLE {schema}.{table} (LIKE {schema}.{old} INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (read_time)"
    )
    execute(f"ALTER TABLE {schema}.{table} ADD PRIMARY KEY ({key}, read_time)")
    for name, columns in indexes:
        execute(f"CREATE INDEX {name} ON {schema}.{table} ({columns})")
    days = execute(
        f"SELECT DISTINCT floor(date_part('epoch', read_time) / 86400)::int8 FROM {schema}.{old}"
    ).fetchall()
    for (day,) in sorted(days):
        execute(
            f"CREATE TABLE {schema}.{partitions.name(day)} PARTITION OF {schema}.{table} "
            + bounds_sql(day)
        )
    execute(f"INSERT INTO {schema}.{table} SELECT * FROM {schema}.{old}")
    execute(f"DROP TABLE {schema}.{old}")


def convert_to_unpartitioned(
    execute: Callable[[str], Any],
    schema: str,
    table: str,
    key: str,
    indexes: Sequence[tuple[str, str]] = (),
) -> None:
    """The reverse of convert_to_daily: one plain table holding every row of the partitions."""
    old = f"{table}_partitioned"
    execute(f"ALTER TABLE {schema}.{table} RENAME TO {old}")
    execute(f"ALTER INDEX {schema}.{table}_pkey RENAME TO {old}_pkey")
    for name, _ in indexes:
        execute(f"ALTER INDEX {schema}.{name} RENAME TO {name}_partitioned")
    execute(f"CREATE TABLE {schema}.{table} (LIKE {schema}.{old} INCLUDING DEFAULTS)")
    execute(f"INSERT INTO {schema}.{table} SELECT * FROM {schema}.{old}")
    execute(f"ALTER TABLE {schema}.{table} ADD PRIMARY KEY ({key}, read_time)")
    for name, columns in indexes:
        execute(f"CREATE INDEX {name} ON {schema}.{table} ({columns})")
    execute(f"DROP TABLE {schema}.{old}")
