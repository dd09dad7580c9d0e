"""The maintenance loop of a service that owns a history: at start and then every
MAINTENANCE_INTERVAL_SECONDS it makes the daily partitions of the coming days, brings the hourly
rollups up to date (services.common.rollups) and drops the days past RETENTION_DAYS. Replicas of
one service take turns: a run that finds another replica's run going skips (an advisory lock).
A failed run is logged and tried again at the next tick."""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from services.common.partitions import DAY_US, DailyPartitions, day_of
from services.common.rollups import RollupRun, Rollups

log = logging.getLogger(__name__)

# Partitions made ahead of the clock (and one day behind it, for readings that straddle
# midnight while the loop runs): a day's first readings never wait for a partition.
PARTITIONS_AHEAD_DAYS = 3


@dataclass
class MaintenanceRun:
    """What one run did: the days whose partitions it made, the partitions it dropped, the
    rollups' run, and whether it ran at all (False when another replica's run held the lock)."""

    ran: bool = True
    created: list[int] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    rollups: RollupRun | None = None


class Maintenance:
    """`connect` opens a connection of the service's own (not one of the pools); `partitions`
    is the history's; `retention_days` 0 keeps everything."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        partitions: DailyPartitions,
        *,
        rollups: Rollups | None = None,
        retention_days: int,
        interval_seconds: float,
        name: str,
    ) -> None:
        self._connect = connect
        self._partitions = partitions
        self._rollups = rollups
        self._retention_days = retention_days
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the database may be down: the next tick tries again
                log.exception("maintenance run failed; trying again at the next tick")
            self._stop.wait(self._interval)

    def run_once(self, now_us: int | None = None) -> MaintenanceRun:
        """One run at `now_us` (default: the clock)."""
        now_us = time.time_ns() // 1000 if now_us is None else now_us
        today = day_of(now_us)
        lock_key = zlib.crc32(f"maintenance {self._partitions.parent}".encode())
        with self._connect() as connection:
            connection.autocommit = True
            # The rollups' statements span many rows: compiling them would cost more than it saves.
            connection.execute("SET jit = off")
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (lock_key,)).fetchone()
            if not (row and row[0]):
                return MaintenanceRun(ran=False)
            try:
                run = MaintenanceRun()
                run.created = self._partitions.ensure(
                    connection, range(today - 1, today + PARTITIONS_AHEAD_DAYS + 1)
                )
                # Rollups first: an hour's rollup is made before its readings can go.
                if self._rollups is not None:
                    run.rollups = self._rollups.run(connection, now_us)
                if self._retention_days:
                    first_kept = day_of(now_us - self._retention_days * DAY_US)
                    run.dropped = self._partitions.drop_before(connection, first_kept)
                    # The conflicts a device's readings met go with its readings' days.
                    connection.execute(
                        f"DELETE FROM {self._partitions.schema}.reading_conflicts "
                        "WHERE read_time < timestamptz 'epoch' + %s * interval '1 microsecond'",
                        (first_kept * DAY_US,),
                    )
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
        if run.created or run.dropped:
            log.info(
                "maintenance",
                extra={  # not "created": a LogRecord attribute, which extra may not replace
                    "table": self._partitions.parent,
                    "partitions_created": len(run.created),
                    "partitions_dropped": run.dropped,
                },
            )
        return run
