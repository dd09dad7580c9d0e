"""A service that owns a database: engine, health that follows the database, clean stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc
from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.config import Settings
from services.common.database import connect, create_engine, create_probe_engine
from services.common.durability import durability_problem
from services.common.errors import DATABASE_UNAVAILABLE, ConfigError
from services.common.group_commit import GroupCommitWriters, ReadingTable
from services.common.ingest import Ingestor
from services.common.maintenance import Maintenance
from services.common.metrics import ServiceMetrics
from services.common.partitions import DailyPartitions
from services.common.reads import ReadGate
from services.common.rollups import Rollups
from services.common.server import HealthReporter
from services.common.tracing import Tracing
from services.common.validation import BatchValidator, ReadingRules

log = logging.getLogger(__name__)


class DatabaseMonitor:
    """Pings the database and keeps health SERVING only while it answers.

    `engine` should be the monitor's own (create_probe_engine): a ping must never wait behind
    a read pool that expensive calls have exhausted. Any failure of a ping, expected or not,
    is NOT_SERVING (logged), and the loop carries on: the thread never dies."""

    def __init__(
        self,
        engine: Engine,
        reporter: HealthReporter,
        interval: float = 1.0,
        on_report: Callable[[bool], None] = lambda up: None,
    ) -> None:
        self._engine = engine
        self._reporter = reporter
        self._on_report = on_report
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="db-monitor", daemon=True)
        self._serving: bool | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            try:
                self._report(self._database_answers())
            except Exception:  # reporting failed: log it, try again on the next tick
                log.exception("health monitor: reporting failed, retrying")
            if self._stop.wait(self._interval):
                return

    def _database_answers(self) -> bool:
        try:
            with self._engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except DATABASE_UNAVAILABLE as error:
            if self._serving is not False:
                log.warning("database unreachable: %s", error)
            return False
        except Exception:
            # Unknown is not healthy: say NOT_SERVING rather than keep the last answer.
            log.exception("health monitor: unexpected error pinging the database")
            return False

    def _report(self, serving: bool) -> None:
        self._on_report(serving)
        # Only changes: every set() is pushed to each Watch stream.
        if serving != self._serving:
            log.info("health changed", extra={"serving": serving})
            self._reporter.set_serving(serving)
            self._serving = serving  # only once told: a failed set() is tried again next tick


class DatabaseComponent:
    """Glue between a servicer and the server bootstrap for the services that own tables."""

    def __init__(
        self,
        service_name: str,
        engine: Engine,
        servicer: object,
        add_to_server: Callable[[object, grpc.Server], None],
        *,
        on_start: Callable[[], None] = lambda: None,
        on_stop: Callable[[], None] = lambda: None,
        allow_unsafe_commit: bool = False,
        probe_timeout: float = 2.0,
        metrics: ServiceMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.service_name = service_name
        self.metrics = metrics or ServiceMetrics(service_name.split(".")[1])
        self.tracing = tracing
        self._probe_timeout = probe_timeout
        self._allow_unsafe_commit = allow_unsafe_commit
        self.engine = engine
        self.servicer = servicer
        self._add_to_server = add_to_server
        self._on_start = on_start
        self._on_stop = on_stop
        self._monitor: DatabaseMonitor | None = None
        self._probe_engine: Engine | None = None

    def register(self, server: grpc.Server) -> None:
        self._add_to_server(self.servicer, server)

    def start(self, health: HealthReporter) -> None:
        self._refuse_unsafe_database()
        self._on_start()
        self._probe_engine = create_probe_engine(
            self.engine,
            connect_timeout=min(self._probe_timeout, 2.0),
            name=f"{self.service_name}-health",
        )
        self._monitor = DatabaseMonitor(
            self._probe_engine, health, on_report=self.metrics.set_database_up
        )
        self._monitor.start()

    def _refuse_unsafe_database(self) -> None:
        """ConfigError when the database could lose acknowledged data. A database that is down
        now is checked by each writer connection once it is back (they refuse it too)."""
        try:
            with self.engine.connect() as connection:
                problem = durability_problem(
                    lambda name: str(connection.exec_driver_sql(f"SHOW {name}").scalar())
                )
        except DATABASE_UNAVAILABLE as error:
            log.warning("database unreachable at start-up, will keep trying: %s", error)
            return
        if problem and not self._allow_unsafe_commit:
            raise ConfigError(problem)
        if problem:
            log.warning("running on an unsafe database as ALLOW_UNSAFE_COMMIT says: %s", problem)

    def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
        self._on_stop()
        self.engine.dispose()
        if self._probe_engine is not None:
            self._probe_engine.dispose()


def build_reads(settings: Settings, service: str) -> tuple[Engine, ReadGate]:
    """A service's read pool and the gate every read of its repository goes through."""
    engine = create_engine(
        settings.service_database_url(service),
        pool_size=settings.db_pool_size,
        connect_timeout=settings.db_connect_timeout_seconds,
        pool_timeout=settings.db_pool_timeout_seconds,
        name=f"energy-ingest-{service}",
    )
    reads = ReadGate(
        engine,
        max_read_seconds=settings.max_read_seconds,
        max_expensive_reads=settings.max_expensive_reads,
        pool_timeout_seconds=settings.db_pool_timeout_seconds,
    )
    return engine, reads


def build_ingestor(
    settings: Settings,
    service: str,
    table: ReadingTable,
    rules: ReadingRules,
    validate_batch: BatchValidator,
    *,
    metrics: ServiceMetrics | None = None,
) -> tuple[Ingestor, GroupCommitWriters]:
    """The group-commit writers of a service (each with its own connection) and their Ingestor."""
    url = settings.service_database_url(service)
    writers = GroupCommitWriters(
        table,
        lambda: connect(
            url, connect_timeout=settings.db_connect_timeout_seconds, name=f"{service}-writer"
        ),
        count=settings.writer_count,
        batch_size=settings.writer_batch_size,
        flush_seconds=settings.writer_flush_ms / 1000,
        queue_readings=settings.writer_queue_readings,
        enqueue_timeout=settings.writer_enqueue_timeout_seconds,
        name=service,
        allow_unsafe_commit=settings.allow_unsafe_commit,
        on_commit=metrics.observe_commit if metrics else lambda readings, seconds: None,
    )
    if metrics:
        metrics.watch_queue(writers.queued_readings)
    ingestor = Ingestor(
        writers,
        rules,
        validate_batch,
        clock_skew_seconds=settings.clock_skew_seconds,
        retention_days=settings.retention_days,
        max_rejections_listed=settings.max_rejections_listed,
        max_device_stream_bytes=settings.max_device_stream_bytes,
        max_streams_per_device=settings.max_streams_per_device,
        metrics=metrics,
    )
    return ingestor, writers


def build_maintenance(
    settings: Settings, service: str, partitions: DailyPartitions, rollups: Rollups | None = None
) -> Maintenance:
    """The maintenance loop of a service's history (partitions ahead, retention, rollups)."""
    url = settings.service_database_url(service)
    return Maintenance(
        lambda: connect(
            url, connect_timeout=settings.db_connect_timeout_seconds, name=f"{service}-maintenance"
        ),
        partitions,
        rollups=rollups,
        retention_days=settings.retention_days,
        interval_seconds=settings.maintenance_interval_seconds,
        name=service,
    )
