"""Group commit: writer threads gather the readings of every concurrent call and write them
in one transaction each (COPY → staging, natural-key insert, newer-only hot upsert, commit).
A caller is answered only after the commits that cover all of its readings."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from services.common.durability import UnsafeDatabase, durability_problem
from services.common.errors import DATABASE_UNAVAILABLE, ResourceExhausted, Unavailable

log = logging.getLogger(__name__)

# A validated reading as COPY writes it: (entity id, micros since epoch, *values).
Row = tuple[Any, ...]


@dataclass(frozen=True)
class ReadingTable:
    """The SQL one service needs for group commit; each service's repository defines it.

    A batch costs two round trips: COPY into a session-local temp table (its own transaction,
    which touches no WAL and so waits for no flush), then `write_sql`: one simple-protocol
    query (one transaction) that inserts the new readings into history, upserts the newest
    reading per entity (newer-only), empties the staging table and returns one row:
    (readings newly stored, "id micros" keys that were already stored or NULL). The key list is
    only computed when some readings were duplicates; `{staged}` is the number of staged rows.
    """

    staging_ddl: str
    copy_sql: str
    copy_types: Sequence[str]
    write_sql: str


class Ticket:
    """What one call waits on: the outcome of every part it handed to the writers."""

    __slots__ = ("_condition", "_outstanding", "accepted", "duplicates", "error")

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._outstanding = 0
        self.accepted = 0
        self.duplicates = 0
        self.error: Exception | None = None

    def _add_part(self) -> None:
        with self._condition:
            self._outstanding += 1

    def _settle(self, accepted: int, duplicates: int, error: Exception | None = None) -> None:
        with self._condition:
            self.accepted += accepted
            self.duplicates += duplicates
            if error is not None and self.error is None:
                self.error = error
            self._outstanding -= 1
            if self._outstanding == 0:
                self._condition.notify_all()

    def wait(self) -> None:
        """Blocks until every part is committed; raises the first failure."""
        with self._condition:
            while self._outstanding:
                self._condition.wait()
        error = self.error
        if error is not None:
            # Not kept here once raised: the caller's frames (which hold this ticket) end up in
            # its traceback, and ticket -> error -> traceback -> frame -> ticket is a cycle.
            self.error = None
            raise error.with_traceback(None)


@dataclass
class _Part:
    rows: list[Row]
    ticket: Ticket
    enqueued: float = 0.0


class _BoundedQueue:
    """Parts waiting for one writer, bounded by the number of readings they hold."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._parts: collections.deque[_Part] = collections.deque()
        self._readings = 0
        self._condition = threading.Condition()
        self.closed = False

    def put(self, part: _Part, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._condition:
            # Checked under the lock that close() takes: a part put after close would never be
            # taken (the writer has drained and gone), and its caller would wait forever.
            if self.closed:
                return False
            # An empty queue admits any part, so one oversized part cannot wait forever.
            while self._parts and self._readings + len(part.rows) > self._capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    return False
                self._condition.wait(remaining)
            part.enqueued = time.monotonic()
            self._parts.append(part)
            self._readings += len(part.rows)
            self._condition.notify_all()
            return True

    def take_batch(self, max_readings: int, linger: float) -> list[_Part]:
        """Waits for a first part, then for the batch to fill until that part has waited
        `linger` seconds; parts that queued during the previous commit go at once."""
        with self._condition:
            while not self._parts:
                if self.closed:
                    return []
                self._condition.wait(0.5)
            deadline = self._parts[0].enqueued + linger
            while self._readings < max_readings and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch: list[_Part] = []
            taken = 0
            while self._parts and (not batch or taken + len(self._parts[0].rows) <= max_readings):
                part = self._parts.popleft()
                taken += len(part.rows)
                batch.append(part)
            self._readings -= taken
            self._condition.notify_all()
            return batch

    def close(self) -> None:
        with self._condition:
            self.closed = True
            self._condition.notify_all()


class Writer:
    """One thread, one connection, one transaction per batch."""

    def __init__(
        self,
        name: str,
        table: ReadingTable,
        connect: Callable[[], psycopg.Connection],
        *,
        batch_size: int,
        linger: float,
        capacity: int,
        allow_unsafe_commit: bool = False,
    ) -> None:
        self.name = name
        self._allow_unsafe_commit = allow_unsafe_commit
        self._table = table
        self._connect = connect
        self._batch_size = batch_size
        self._linger = linger
        self.queue = _BoundedQueue(capacity)
        self._connection: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Writes what is queued, then closes; call after the server stopped taking calls."""
        self.queue.close()
        self._thread.join(timeout)
        if self._connection is not None:
            self._connection.close()

    def _run(self) -> None:
        while True:
            batch = self.queue.take_batch(self._batch_size, self._linger)
            if not batch:
                return
            self._write_or_fail(batch)
            del batch  # its rows and tickets go now, not when the next batch has arrived

    def _write_or_fail(self, batch: list[_Part]) -> None:
        try:
            connection = self._ensure_connection()
            outcomes = self._write(connection, batch)
        except UnsafeDatabase as error:
            log.error(str(error), extra={"writer": self.name})
            self._fail(batch, error)
            return
        except DATABASE_UNAVAILABLE as error:
            log.warning("batch failed, database unavailable", extra={"writer": self.name})
            self._drop_connection()
            self._fail(batch, Unavailable(f"database unavailable: {error}"))
            return
        except Exception as error:
            log.exception("batch failed", extra={"writer": self.name})
            self._drop_connection()
            self._fail(batch, error)
            return
        for part, (accepted, duplicates) in zip(batch, outcomes, strict=True):
            part.ticket._settle(accepted, duplicates)

    def _fail(self, batch: list[_Part], error: Exception) -> None:
        # The error is kept by every ticket of the batch; its traceback's frames hold the
        # batch (every caller's rows) and, once a caller raises it, that caller's frames and
        # ticket: a reference cycle only the cyclic GC frees, minutes later. It was logged.
        _drop_frames(error)
        for part in batch:
            part.ticket._settle(0, 0, error)

    def _ensure_connection(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            connection = self._connect()
            connection.autocommit = True  # write_sql is one transaction on its own
            problem = durability_problem(lambda name: _show(connection, name))
            if problem and not self._allow_unsafe_commit:
                connection.close()
                raise UnsafeDatabase(problem)
            connection.execute(self._table.staging_ddl)
            self._connection = connection
        return self._connection

    def _drop_connection(self) -> None:
        """Also the cleanup after a failed batch: the staging table goes with the session."""
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _write(self, connection: psycopg.Connection, batch: list[_Part]) -> list[tuple[int, int]]:
        """Writes the batch; returns (accepted, duplicates) per part."""
        first_part: dict[tuple[str, int], int] = {}  # natural key → the part that wrote it first
        repeats = [0] * len(batch)
        table = self._table
        with connection.cursor() as cursor:
            with cursor.copy(table.copy_sql) as copy:
                copy.set_types(table.copy_types)
                for index, part in enumerate(batch):
                    for row in part.rows:
                        key = (row[0], row[1])
                        if key in first_part:
                            repeats[index] += 1
                        else:
                            first_part[key] = index
                            copy.write_row(row)
            cursor.execute(table.write_sql.format(staged=len(first_part)).encode())
            result = cursor.fetchone()
        if result is not None and result[1]:
            # Rare (retries): the readings that were stored before go to the parts that sent them.
            for key in result[1]:
                entity, micros = key.rsplit(" ", 1)
                repeats[first_part[(entity, int(micros))]] += 1
        return [(len(part.rows) - dup, dup) for part, dup in zip(batch, repeats, strict=True)]


def _drop_frames(error: BaseException) -> None:
    """Forgets the tracebacks of an error and of the errors it chains to."""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        current.__traceback__ = None
        pending += [current.__cause__, current.__context__]


def _show(connection: psycopg.Connection, setting: str) -> str:
    row = connection.execute(f"SHOW {setting}").fetchone()
    return str(row[0]) if row else ""


class GroupCommitWriters:
    """The writers of one service; a reading goes to the writer its entity id hashes to, so two
    writers never touch the same row (no lock waits, no deadlocks between them)."""

    def __init__(
        self,
        table: ReadingTable,
        connect: Callable[[], psycopg.Connection],
        *,
        count: int,
        batch_size: int,
        flush_seconds: float,
        queue_readings: int,
        enqueue_timeout: float,
        name: str,
        allow_unsafe_commit: bool = False,
    ) -> None:
        self._writers = [
            Writer(
                f"{name}-writer-{i}",
                table,
                connect,
                batch_size=batch_size,
                linger=flush_seconds,
                capacity=queue_readings,
                allow_unsafe_commit=allow_unsafe_commit,
            )
            for i in range(count)
        ]
        self._enqueue_timeout = enqueue_timeout

    def start(self) -> None:
        for writer in self._writers:
            writer.start()

    def stop(self, timeout: float = 30) -> None:
        for writer in self._writers:
            writer.stop(timeout)

    def submit(self, rows: list[Row], ticket: Ticket) -> None:
        """Hands validated rows to the writers without waiting for the commit (ticket.wait does).

        Blocks while the writers' queues are full; RESOURCE_EXHAUSTED past the enqueue timeout."""
        if not rows:
            return
        writers = self._writers
        count = len(writers)
        if count == 1 or len(rows) == 1:
            self._put(writers[hash(rows[0][0]) % count], rows, ticket)
            return
        shares: list[list[Row]] = [[] for _ in writers]
        for row in rows:
            shares[hash(row[0]) % count].append(row)
        for writer, share in zip(writers, shares, strict=True):
            if share:
                self._put(writer, share, ticket)

    def _put(self, writer: Writer, rows: list[Row], ticket: Ticket) -> None:
        if writer.queue.closed:
            raise Unavailable("server is shutting down")
        ticket._add_part()
        if not writer.queue.put(_Part(rows, ticket), self._enqueue_timeout):
            ticket._settle(0, 0)
            if writer.queue.closed:
                raise Unavailable("server is shutting down")
            raise ResourceExhausted("ingestion queue is full; retry later with backoff")
