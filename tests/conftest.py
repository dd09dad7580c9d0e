"""Shared fixtures: a PostgreSQL server (TEST_DATABASE_URL, or an embedded one when unset),
a fresh migrated database per test, and in-process servers on port 0."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest

from services.common import migrations
from services.common.config import Settings
from services.common.databases import create_database, drop_database
from services.common.embedded import EmbeddedPostgres
from services.common.server import RunningServer, start_server


@contextmanager
def outside_pytest_tmp(name: str) -> Iterator[Path]:
    """A directory for an embedded PostgreSQL, outside pytest's tmp root. As root, pgserver runs
    the server as a user of its own and opens the parents of its data dir to it; any pytest
    session starting meanwhile (another checkout on the same machine) makes
    /tmp/pytest-of-root 0700 again, and the server, locked out of its own files, panics."""
    directory = Path(tempfile.mkdtemp(prefix=f"energy-ingest-{name}-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """Where a test's own embedded PostgreSQL keeps its data (see outside_pytest_tmp)."""
    with outside_pytest_tmp("pg") as directory:
        yield directory


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The server the suite uses. Never skipped: without TEST_DATABASE_URL we start one."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with outside_pytest_tmp("suite-pg") as directory:
        embedded = EmbeddedPostgres(directory)
        try:
            yield embedded.start()
        finally:
            embedded.stop()


@pytest.fixture
def empty_database_url(postgres_url: str) -> Iterator[str]:
    """A database of its own for one test, dropped afterwards."""
    url = create_database(postgres_url, "ei_test")
    try:
        yield url
    finally:
        drop_database(postgres_url, url)


@pytest.fixture
def database_url(empty_database_url: str) -> str:
    """A fresh database migrated to head."""
    for service in migrations.MIGRATED_SERVICES:
        migrations.upgrade(service, empty_database_url)
    return empty_database_url


@dataclass
class InProcessServer:
    """A real gRPC server on a real socket (port 0), running in the test process."""

    target: str
    database_url: str
    running: RunningServer

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target)


def start_in_process(service: str, database_url: str, **overrides: object) -> InProcessServer:
    settings = replace(Settings(database_url=database_url), **overrides)  # type: ignore[arg-type]
    component = importlib.import_module(f"services.{service}.component").build(settings)
    running = start_server(settings, component, "127.0.0.1:0")
    return InProcessServer(f"127.0.0.1:{running.port}", database_url, running)


@pytest.fixture
def meter_server(database_url: str) -> Iterator[InProcessServer]:
    server = start_in_process("meter", database_url)
    yield server
    server.running.shutdown(5)


@pytest.fixture
def vehicle_server(database_url: str) -> Iterator[InProcessServer]:
    server = start_in_process("vehicle", database_url)
    yield server
    server.running.shutdown(5)
