"""Builds a reading service from settings: engine → repository → service → servicer, with
its group-commit writers and its maintenance loop started and stopped with the server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from services.common.component import (
    DatabaseComponent,
    build_ingestor,
    build_maintenance,
    build_reads,
)
from services.common.config import Settings
from services.common.ingest import Ingestor
from services.common.metrics import ServiceMetrics
from services.common.reads import ReadGate
from services.common.rollups import Rollups
from services.common.security import Authorizer
from services.common.tracing import Tracing
from services.readings.kind import ReadingKind
from services.readings.repository import StatusRepository, reading_table
from services.readings.service import ReadingService
from services.readings.servicer import ReadingServicer

Repository = TypeVar("Repository", bound=StatusRepository)
Service = TypeVar("Service", bound=ReadingService[Any])


def build_reading_component(
    settings: Settings,
    kind: ReadingKind,
    repository: Callable[[ReadingKind, Engine, ReadGate, Settings], Repository],
    service: Callable[[ReadingKind, Repository, Ingestor], Service],
    servicer: Callable[[ReadingKind, Service, Authorizer, float], ReadingServicer[Service]],
    *,
    rollups: Rollups | None = None,
) -> DatabaseComponent:
    """`repository` (a repository's from_settings), `service` and `servicer` make the kind's own
    layers (each extends the shared one with the kind's own RPCs)."""
    engine, reads = build_reads(settings, kind.service)
    table = reading_table(kind)
    metrics = ServiceMetrics(kind.service)
    ingestor, writers = build_ingestor(
        settings, kind.service, table, kind.rules, kind.validate_batch, metrics=metrics
    )
    assert table.partitions is not None
    maintenance = build_maintenance(settings, kind.service, table.partitions, rollups)

    def start() -> None:
        writers.start()
        maintenance.start()

    def stop() -> None:
        maintenance.stop()
        writers.stop()

    return DatabaseComponent(
        kind.contract.service_name,
        engine,
        servicer(
            kind,
            service(
                kind,
                repository(kind, engine, reads, settings),
                ingestor,
            ),
            Authorizer.from_settings(settings),
            settings.status_page_max_age_ms / 1000,
        ),
        kind.contract.add_to_server,
        on_start=start,
        on_stop=stop,
        allow_unsafe_commit=settings.allow_unsafe_commit,
        probe_timeout=settings.db_connect_timeout_seconds,
        metrics=metrics,
        tracing=Tracing.from_settings(settings, kind.service),
    )
