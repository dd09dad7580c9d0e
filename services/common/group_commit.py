"""Group commit: writer threads gather the readings of every concurrent call and write them
in one transaction each (COPY → staging, natural-key insert, newer-only hot upsert, commit).
A caller is answered only after the commits that cover all of its readings."""

from __future__ import annotations

import collections
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq

from services.common.durability import UnsafeDatabase, durability_problem
from services.common.errors import DATABASE_UNAVAILABLE, ResourceExhausted, Unavailable
from services.common.partitions import DailyPartitions, day_of

log = logging.getLogger(__name__)

# A validated reading as COPY writes it: (entity id, micros since epoch, *values, position),
# position being its index in its stream (what a conflict is reported under).
Row = tuple[Any, ...]


@dataclass(frozen=True)
class ReadingTable:
    """The SQL one service needs for group commit; each service's repository defines it.

    A batch of up to PREPARED_BATCH_READINGS distinct readings is one round trip:
    `write_rows_sql`, prepared once per connection, whose parameters are the rows as one JSON
    array ($1: [[id, micros, *values, position], …]) and their number ($2), run straight on
    libpq (psycopg's cursor machinery cost more Python than the rest of a unary call's write).
    A larger batch costs two: COPY into a session-local temp table (its own transaction, which
    touches no WAL and so waits for no flush), then `write_sql`, one simple-protocol query (one
    transaction) over that table, which empties it; `{staged}` in it is the number of staged
    rows. Either statement inserts the new readings into history, upserts the newest reading per
    entity (newer-only) and returns one row: (readings newly stored, JSON text of the
    "id micros" keys of the readings not stored, or NULL when all were). Only then, and only
    for those keys, `stored_sql` (parameters: the ids, the micros) returns
    (id, micros, *stored values) of each, to tell a duplicate from a conflict. `value_names`
    name the values of a row, for telling a conflict. `conflicts_sql` (parameters: the ids,
    the micros, the sent values as JSON objects) records the conflicting readings, once per
    distinct reading, before their callers are answered. `partitions`, when the history is
    partitioned by day, makes the days a batch needs before it is written.
    """

    staging_ddl: str
    copy_sql: str
    copy_types: Sequence[str]
    write_sql: str
    value_names: Sequence[str] = ()
    write_rows_sql: str = ""
    stored_sql: str = ""
    conflicts_sql: str = ""
    partitions: DailyPartitions | None = None


# Up to this many readings a batch goes as JSON to the prepared statement; above, COPY's binary
# stream is cheaper per reading than JSON text that PostgreSQL parses.
PREPARED_BATCH_READINGS = 1_000
# The prepared statement's name on every writer connection.
_WRITE_ROWS = b"energy_ingest_write_rows"


@dataclass(frozen=True)
class Conflict:
    """A reading not stored because its key is stored with other values (first write wins):
    its index in its stream, the first differing field, and every difference."""

    index: int
    field: str
    description: str


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return repr(value)


def conflict_of(names: Sequence[str], stored: Sequence[Any], sent: Row) -> Conflict | None:
    """The Conflict of `sent` (a Row) against the stored values of its key, or None when they
    are the same (a duplicate)."""
    differing = [
        (name, old, new)
        for name, old, new in zip(names, stored, sent[2:-1], strict=True)
        if old != new
    ]
    if not differing:
        return None
    return Conflict(
        index=sent[-1],
        field=differing[0][0],
        description="stored with other values, not stored (first write wins): "
        + "; ".join(
            f"{name} stored {_shown(old)}, sent {_shown(new)}" for name, old, new in differing
        ),
    )


class Ticket:
    """What one call waits on: the outcome of every part it handed to the writers. Conflicts
    are counted in full and the first `listed` of them kept (a replay of another device's data
    must not hold one object per reading).

    Two plain locks, not a Condition: one ticket is made per unary call, and a Condition (an
    RLock and a waiter lock per wait) cost more than the rest of the ticket. `_pending` is held
    while any part is outstanding, so waiting is acquiring it."""

    __slots__ = (
        "_listed",
        "_lock",
        "_outstanding",
        "_pending",
        "accepted",
        "conflict_count",
        "conflicts",
        "duplicates",
        "error",
    )

    def __init__(self, listed: int = 100) -> None:
        self._lock = threading.Lock()
        self._pending = threading.Lock()
        self._outstanding = 0
        self._listed = listed
        self.accepted = 0
        self.duplicates = 0
        self.conflict_count = 0
        self.conflicts: list[Conflict] = []
        self.error: Exception | None = None

    def _add_part(self) -> None:
        with self._lock:
            self._outstanding += 1
            if self._outstanding == 1:
                self._pending.acquire()

    def _settle(
        self,
        accepted: int,
        duplicates: int,
        error: Exception | None = None,
        conflicts: Sequence[Conflict] = (),
    ) -> None:
        with self._lock:
            self.accepted += accepted
            self.duplicates += duplicates
            if conflicts:
                self.conflict_count += len(conflicts)
                room = self._listed - len(self.conflicts)
                self.conflicts += conflicts[: max(room, 0)]
            if error is not None and self.error is None:
                self.error = error
            self._outstanding -= 1
            if self._outstanding == 0:
                self._pending.release()

    def wait(self) -> None:
        """Blocks until every part is committed; raises the first failure."""
        with self._pending:
            pass
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

    @property
    def readings(self) -> int:
        return self._readings

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
        `linger` seconds; parts that queued during the previous commit go at once. Returns []
        only once the queue is closed and empty: a caller's commit_now may take the parts while
        this lingers, and then it waits for the next."""
        with self._condition:
            while True:
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
                batch = self.take_ready(max_readings)  # the condition's lock is reentrant
                if batch:
                    return batch

    def take_ready(self, max_readings: int) -> list[_Part]:
        """The parts queued now, up to `max_readings` readings (at least one part); no wait."""
        with self._condition:
            batch: list[_Part] = []
            taken = 0
            while self._parts and (not batch or taken + len(self._parts[0].rows) <= max_readings):
                part = self._parts.popleft()
                taken += len(part.rows)
                batch.append(part)
            if batch:
                self._readings -= taken
                self._condition.notify_all()
            return batch

    def close(self) -> None:
        with self._condition:
            self.closed = True
            self._condition.notify_all()


class Writer:
    """One connection, one transaction per batch, and a thread that commits what is queued.

    Classic group commit: a caller that will wait for its commit (a unary call) commits itself
    when the writer is idle, with whatever else is queued (`commit_now`: no thread hand-off, no
    wait); when a commit is running, its part queues and the thread commits everything that
    queued meanwhile as the next batch. `_committing` is held for each batch's commit, by the
    thread or by a caller."""

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
        on_commit: Callable[[int, float], None] = lambda readings, seconds: None,
    ) -> None:
        self.name = name
        self._on_commit = on_commit
        self._allow_unsafe_commit = allow_unsafe_commit
        self._table = table
        self._connect = connect
        self._batch_size = batch_size
        self._linger = linger
        self.queue = _BoundedQueue(capacity)
        self._connection: psycopg.Connection | None = None
        self._committing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Writes what is queued, then closes; call after the server stopped taking calls."""
        self.queue.close()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)
        if self._committing.acquire(timeout=timeout):  # a caller's commit_now may be running
            self._drop_connection()
            self._committing.release()

    def commit_now(self, rows: list[Row], ticket: Ticket) -> bool:
        """Commits `rows` (a part of `ticket`) and whatever is queued, in the caller's thread, if
        no commit is running (True); else leaves them to the caller to queue (False)."""
        if not self._committing.acquire(blocking=False):
            return False
        try:
            if self.queue.closed:
                return False
            ticket._add_part()
            batch = [_Part(rows, ticket), *self.queue.take_ready(self._batch_size - len(rows))]
            self._write_or_fail(batch)
            return True
        finally:
            self._committing.release()

    def _run(self) -> None:
        while True:
            batch = self.queue.take_batch(self._batch_size, self._linger)
            if not batch:
                return
            with self._committing:
                self._write_or_fail(batch)
            del batch  # its rows and tickets go now, not when the next batch has arrived

    def _write_or_fail(self, batch: list[_Part]) -> None:
        began = time.perf_counter()
        try:
            outcomes = self._write_batch(batch)
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
        self._on_commit(sum(len(part.rows) for part in batch), time.perf_counter() - began)
        for part, (accepted, duplicates, conflicts) in zip(batch, outcomes, strict=True):
            part.ticket._settle(accepted, duplicates, conflicts=conflicts)

    def _write_batch(self, batch: list[_Part]) -> list[tuple[int, int, list[Conflict]]]:
        connection = self._ensure_connection()
        try:
            return self._write(connection, batch)
        except psycopg.errors.CheckViolation:
            # The history has no CHECK constraint: this is a row with no partition for its day,
            # a day this process took for made having been dropped or never made (another
            # replica's retention, a database restored or recreated). Forget what is known,
            # and write again on a new session (the failed one's staging table holds rows).
            partitions = self._table.partitions
            if partitions is None:
                raise
            log.warning("a day's partition was missing; making it", extra={"writer": self.name})
            partitions.forget()
            self._drop_connection()
            return self._write(self._ensure_connection(), batch)

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
            # No automatic prepared statements: psycopg answers DDL (a partition attached by
            # ensure) with DEALLOCATE ALL, which would take the write statement with them.
            connection.prepare_threshold = None
            # A batch statement's estimates (a function scan, a few CTEs) can pass jit_above_cost:
            # compiling it took 360 ms for a write of 10 readings that runs in 1 ms.
            connection.execute("SET jit = off")
            problem = durability_problem(lambda name: _show(connection, name))
            if problem and not self._allow_unsafe_commit:
                connection.close()
                raise UnsafeDatabase(problem)
            try:
                connection.execute(self._table.staging_ddl)
                if self._table.write_rows_sql:
                    prepared = connection.pgconn.prepare(
                        _WRITE_ROWS, self._table.write_rows_sql.encode()
                    )
                    _raise_unless(connection, prepared, pq.ExecStatus.COMMAND_OK)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _drop_connection(self) -> None:
        """Also the cleanup after a failed batch: the staging table goes with the session."""
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None

    def _write(
        self, connection: psycopg.Connection, batch: list[_Part]
    ) -> list[tuple[int, int, list[Conflict]]]:
        """Writes the batch; returns (accepted, duplicates, conflicts) per part."""
        first: dict[tuple[str, int], Row] = {}  # natural key → the first row of the batch with it
        repeated: list[tuple[int, Row]] = []  # (part, row) of the later rows with a key seen
        table = self._table
        for index, part in enumerate(batch):
            for row in part.rows:
                key = (row[0], row[1])
                if key in first:
                    repeated.append((index, row))
                else:
                    first[key] = row
        if table.partitions is not None:
            table.partitions.ensure(connection, {day_of(key[1]) for key in first})
        payload = None
        if len(first) <= PREPARED_BATCH_READINGS and table.write_rows_sql:
            payload = _json_rows(list(first.values()))
        if payload is not None:
            result = _write_rows(connection, payload, len(first))
        else:
            with connection.cursor() as cursor:
                with cursor.copy(table.copy_sql) as copy:
                    copy.set_types(table.copy_types)
                    for row in first.values():
                        copy.write_row(row)
                cursor.execute(table.write_sql.format(staged=len(first)).encode())
                fetched = cursor.fetchone()
            result = (0, None) if fetched is None else tuple(fetched)
        _, not_inserted_json = result
        if not repeated and not not_inserted_json:
            return [(len(part.rows), 0, []) for part in batch]  # the common case: all new
        not_inserted = json.loads(not_inserted_json) if not_inserted_json else []
        stored = self._stored(connection, not_inserted)
        if len(stored) < len(not_inserted):
            # Stored when the write ran, gone by the read (retention dropped the day between
            # the two statements): counted as duplicates, their values unknown now.
            gone = {(key[0], int(key[1])) for key in (k.rsplit(" ", 1) for k in not_inserted)}
            gone -= stored.keys()
            log.warning("readings vanished between write and read-back", extra={"n": len(gone)})
            stored.update({key: first[key][2:-1] for key in gone})
        outcomes, conflicting = self._outcomes(batch, first, repeated, stored)
        self._record_conflicts(connection, conflicting)
        return outcomes

    def _record_conflicts(self, connection: psycopg.Connection, rows: list[Row]) -> None:
        """Keeps the conflicting readings (each distinct one once: a retry adds nothing), in
        their own transaction, committed before any caller hears of them."""
        if not rows or not self._table.conflicts_sql:
            return
        names = self._table.value_names
        connection.execute(
            self._table.conflicts_sql,
            (
                [row[0] for row in rows],
                [row[1] for row in rows],
                [
                    json.dumps(dict(zip(names, row[2:-1], strict=True)), allow_nan=False)
                    for row in rows
                ],
            ),
        )

    def _stored(
        self, connection: psycopg.Connection, keys: list[str]
    ) -> dict[tuple[str, int], Sequence[Any]]:
        """The stored values of the "id micros" keys the write did not insert. Read by a later
        statement than the write, which waited for any concurrent writer of those keys, so
        every one of them is there (unless its partition was dropped meanwhile: retention)."""
        if not keys:
            return {}
        ids, micros = zip(*(key.rsplit(" ", 1) for key in keys), strict=True)
        rows = connection.execute(
            self._table.stored_sql, (list(ids), [int(m) for m in micros])
        ).fetchall()
        return {(row[0], int(row[1])): tuple(row[2:]) for row in rows}

    def _outcomes(
        self,
        batch: list[_Part],
        first: dict[tuple[str, int], Row],
        repeated: list[tuple[int, Row]],
        stored: dict[tuple[str, int], Sequence[Any]],
    ) -> tuple[list[tuple[int, int, list[Conflict]]], list[Row]]:
        """Rare (retries, corrections, shared ids): tells each part which of its readings were
        already stored as sent (duplicates) and which are stored with other values (conflicts),
        `stored` holding the stored values of every key the write did not insert. A later row
        of the batch with a key seen earlier is judged against the row that keeps the key: the
        stored one, or the batch's first if that was stored now. Also returned: the rows that
        conflict."""
        names = self._table.value_names
        owner = {id(row): index for index, part in enumerate(batch) for row in part.rows}
        duplicates = [0] * len(batch)
        conflicts: list[list[Conflict]] = [[] for _ in batch]
        conflicting: list[Row] = []
        for key, values in stored.items():
            row = first[key]
            conflict = conflict_of(names, values, row)
            if conflict is None:
                duplicates[owner[id(row)]] += 1
            else:
                conflicts[owner[id(row)]].append(conflict)
                conflicting.append(row)
        for index, row in repeated:
            key = (row[0], row[1])
            conflict = conflict_of(names, stored.get(key, first[key][2:-1]), row)
            if conflict is None:
                duplicates[index] += 1
            else:
                conflicts[index].append(conflict)
                conflicting.append(row)
        return [
            (
                len(part.rows) - duplicates[index] - len(conflicts[index]),
                duplicates[index],
                conflicts[index],
            )
            for index, part in enumerate(batch)
        ], conflicting


# -0.0 as json.dumps writes it (a float's repr, then the next separator); -0.01 does not match.
_NEGATIVE_ZERO = re.compile(rb"-0\.0[,\]]")


def _json_rows(rows: list[Row]) -> bytes | None:
    """The rows as the prepared write's JSON parameter; None when a value is -0.0, which jsonb
    (numeric) would store as 0: such a batch goes by COPY, which keeps it."""
    payload = json.dumps(rows, allow_nan=False, separators=(",", ":")).encode()
    return None if _NEGATIVE_ZERO.search(payload) else payload


def _write_rows(connection: psycopg.Connection, payload: bytes, count: int) -> tuple[Any, ...]:
    """Runs the prepared write on libpq (one round trip; the GIL is released while it waits)."""
    result = connection.pgconn.exec_prepared(_WRITE_ROWS, [payload, str(count).encode()])
    _raise_unless(connection, result, pq.ExecStatus.TUPLES_OK)
    inserted, not_inserted = (result.get_value(0, column) for column in range(2))
    return (int(inserted or 0), None if not_inserted is None else not_inserted.decode())


def _raise_unless(connection: psycopg.Connection, result: pq.abc.PGresult, status: int) -> None:
    """Raises what psycopg would have for a failed libpq call: OperationalError when the
    connection is gone (the writer reconnects), else the error of the result's SQLSTATE."""
    if result.status == status:
        return
    if connection.pgconn.status != pq.ConnStatus.OK:
        message = connection.pgconn.error_message.decode(errors="replace")
        raise psycopg.OperationalError(f"connection lost: {message.strip()}")
    raise psycopg.errors.error_from_result(result, encoding=connection.info.encoding)


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
        on_commit: Callable[[int, float], None] = lambda readings, seconds: None,
    ) -> None:
        """`on_commit(readings, seconds)` is told of every committed batch (metrics)."""
        self._writers = [
            Writer(
                f"{name}-writer-{i}",
                table,
                connect,
                batch_size=batch_size,
                linger=flush_seconds,
                capacity=queue_readings,
                allow_unsafe_commit=allow_unsafe_commit,
                on_commit=on_commit,
            )
            for i in range(count)
        ]
        self._enqueue_timeout = enqueue_timeout

    def start(self) -> None:
        for writer in self._writers:
            writer.start()

    def queued_readings(self) -> int:
        """Readings waiting for a writer, over all writers."""
        return sum(writer.queue.readings for writer in self._writers)

    def stop(self, timeout: float = 30) -> None:
        for writer in self._writers:
            writer.stop(timeout)

    def submit(self, rows: list[Row], ticket: Ticket, *, lead: bool = False) -> None:
        """Hands validated rows to the writers without waiting for the commit (ticket.wait does).
        `lead`: the caller will wait at once, so rows that go to one writer are committed in
        the caller's thread when that writer is idle (Writer.commit_now).

        Blocks while the writers' queues are full; RESOURCE_EXHAUSTED past the enqueue timeout."""
        if not rows:
            return
        writers = self._writers
        count = len(writers)
        if count == 1 or len(rows) == 1:
            writer = writers[hash(rows[0][0]) % count]
            if not (lead and writer.commit_now(rows, ticket)):
                self._put(writer, rows, ticket)
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
