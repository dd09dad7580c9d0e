"""Reads that cannot starve ingest: every read transaction runs under a statement timeout taken
from the call's deadline (capped by MAX_READ_SECONDS), its statement is cancelled in PostgreSQL
when the call ends early (cancelled by the client or past its deadline), expensive reads take a
slot of a small semaphore so cheap reads keep connections, and a saturated pool answers
RESOURCE_EXHAUSTED after DB_POOL_TIMEOUT_SECONDS instead of INTERNAL."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import psycopg
import sqlalchemy.exc
from sqlalchemy.engine import Connection, Engine

from services.common import calls
from services.common.errors import DeadlineExceeded, ResourceExhausted, query_cancelled

log = logging.getLogger(__name__)

# One statement sets both for the transaction only (SET LOCAL semantics): the connection goes
# back to the pool with a rollback, which forgets them.
_LIMITS_SQL = (
    "SELECT set_config('statement_timeout', %(timeout)s, true), "
    "set_config('max_parallel_workers_per_gather', '0', true)"
)


class _Canceller:
    """Cancels the statement running on one connection once the call has ended, only while the
    read that registered it still holds the connection.

    gRPC runs a call's callbacks on the server's event thread, which must never wait on the
    network: the callback only hands the work to `executor`. A cancel request that reaches
    PostgreSQL between two statements (the read's limits and its query) cancels nothing, so it
    is sent again every RETRY_SECONDS until the read gives the connection back."""

    RETRY_SECONDS = 0.25

    def __init__(
        self, connection: psycopg.Connection, executor: futures.Executor, attempts: int
    ) -> None:
        self._connection = connection
        self._executor = executor
        self._attempts = attempts
        self._lock = threading.Lock()
        self._armed = True
        self._released = threading.Event()

    def cancel(self) -> None:
        """The call's callback: returns at once."""
        if not self._released.is_set():
            self._executor.submit(self._cancel_until_released)

    def _cancel_until_released(self) -> None:
        for _ in range(self._attempts):
            with self._lock:
                if not self._armed:
                    return
                try:
                    self._connection.cancel_safe(timeout=2)
                except Exception as error:  # the statement timeout ends the read anyway
                    log.warning("could not cancel a read: %s", error)
            if self._released.wait(self.RETRY_SECONDS):
                return

    def disarm(self) -> None:
        with self._lock:
            self._armed = False
        self._released.set()


class ReadGate:
    """Hands out read connections bounded in time, in number and in parallelism."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_read_seconds: float = 10.0,
        max_expensive_reads: int = 2,
        pool_timeout_seconds: float = 1.0,
    ) -> None:
        self._engine = engine
        self._max_read_seconds = max_read_seconds
        self._expensive = threading.BoundedSemaphore(max_expensive_reads)
        self._pool_timeout = pool_timeout_seconds
        # Sends the cancel requests of calls that ended (see _Canceller); daemon threads.
        self._cancels = futures.ThreadPoolExecutor(4, thread_name_prefix="read-cancel")
        self._cancel_attempts = math.ceil(max_read_seconds / _Canceller.RETRY_SECONDS) + 1

    def _budget(self, call: calls.Call | None) -> float:
        """Seconds this read may still run: the call's remaining time, capped by the setting."""
        remaining = call.time_remaining() if call is not None else None
        if remaining is None:
            return self._max_read_seconds
        if remaining <= 0:
            raise DeadlineExceeded("the call's deadline passed before its read ran")
        return min(remaining, self._max_read_seconds)

    @contextmanager
    def connection(self, *, expensive: bool = False) -> Iterator[Connection]:
        """A connection in a read transaction limited as the module says. `expensive`: the read
        may scan many rows (sessions, consumption), so it first takes a semaphore slot."""
        call = calls.current()
        if call is not None and not call.is_active():
            # Cancelled while it queued for a worker or was being validated: read nothing.
            raise DeadlineExceeded("the call ended before its read ran")
        budget = self._budget(call)
        if expensive and not self._expensive.acquire(timeout=min(self._pool_timeout, budget)):
            raise ResourceExhausted("too many expensive reads in flight, retry with backoff")
        try:
            if call is not None and not call.is_active():  # it ended while waiting for a slot
                raise DeadlineExceeded("the call ended before its read ran")
            with self._checkout() as connection:
                budget = self._budget(call)  # after waiting for the slot and the connection
                canceller = _Canceller(
                    connection.connection.driver_connection,  # type: ignore[arg-type]
                    self._cancels,
                    self._cancel_attempts,
                )
                try:
                    if call is not None and not call.add_callback(canceller.cancel):
                        raise DeadlineExceeded("the call ended before its read ran")
                    connection.exec_driver_sql(
                        _LIMITS_SQL, {"timeout": f"{max(1, int(budget * 1000))}ms"}
                    )
                    yield connection
                except Exception as error:
                    if query_cancelled(error):
                        raise DeadlineExceeded(
                            f"the read ran out of time (the call's deadline, at most "
                            f"MAX_READ_SECONDS = {self._max_read_seconds:g} s)"
                        ) from error
                    raise
                finally:
                    canceller.disarm()
        finally:
            if expensive:
                self._expensive.release()

    @contextmanager
    def _checkout(self) -> Iterator[Connection]:
        try:
            connection = self._engine.connect()
        except sqlalchemy.exc.TimeoutError:
            raise ResourceExhausted("every read connection is busy, retry with backoff") from None
        with connection:
            yield connection
