"""Reliability when the database misbehaves: it refuses to run where an acknowledgement would
be a lie, and it rides out a database that disappears and comes back, losing nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2
from sqlalchemy.engine import make_url

from services.common.databases import create_database
from services.common.embedded import EmbeddedPostgres
from services.launcher import start_service, wait_for_health

pytestmark = pytest.mark.e2e

METER = "energy.meter.v1.MeterService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
T0 = 1_770_681_600  # 2026-02-10T00:00:00Z


def reading(minute: int, meter_id: str = "CHG-DB") -> meter_service_pb2.IngestReadingRequest:
    return meter_service_pb2.IngestReadingRequest(
        reading=meter_pb2.MeterReading(
            meter_id=meter_id,
            kwh_consumed_ac=0.25,
            voltage=230,
            timestamp=Timestamp(seconds=T0 + 60 * minute),
        )
    )


def stored_minutes(url: str, meter_id: str = "CHG-DB") -> list[int]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT (extract(epoch FROM read_time)::bigint - %s) / 60 FROM meter.meter_readings "
            "WHERE meter_id = %s ORDER BY read_time",
            (T0, meter_id),
        ).fetchall()
    return [int(row[0]) for row in rows]


def test_refuses_to_start_when_commits_are_not_durable(database_url):
    name = make_url(database_url).database
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    env = {"DATABASE_URL": database_url, "METER_LISTEN_ADDR": "127.0.0.1:0"}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "serve", "meter"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "synchronous_commit = off" in result.stderr
    assert "ALLOW_UNSAFE_COMMIT" in result.stderr

    allowed = start_service("meter", {"DATABASE_URL": database_url, "ALLOW_UNSAFE_COMMIT": "1"})
    try:
        wait_for_health(allowed.target, METER, SERVING)
        with grpc.insecure_channel(allowed.target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            assert stub.IngestReading(reading(0), timeout=10).duplicate is False
    finally:
        allowed.kill()


@pytest.fixture
def own_postgres(pg_dir: Path):
    """A PostgreSQL of this test's own (never the shared one): it is stopped and started."""
    server = EmbeddedPostgres(pg_dir)
    url = server.start()
    yield server, url
    server.stop()


def test_database_lost_mid_load_then_back(own_postgres):
    server, server_url = own_postgres
    database_url = create_database(server_url, "ei_fault", migrate=True)
    meter = start_service(
        "meter", {"DATABASE_URL": database_url, "DB_CONNECT_TIMEOUT_SECONDS": "2"}
    )
    acknowledged: list[int] = []
    try:
        wait_for_health(meter.target, METER, SERVING)
        with grpc.insecure_channel(meter.target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            for minute in range(20):
                stub.IngestReading(reading(minute), timeout=10)
                acknowledged.append(minute)

            server.stop()
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as failure:
                stub.IngestReading(reading(20), timeout=30)
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 10, "callers learn quickly, they do not hang"
            wait_for_health(meter.target, METER, NOT_SERVING, timeout=10)
            assert meter.process.poll() is None, "a lost database never stops the service"

            server.start()  # same data directory, same address
            wait_for_health(meter.target, METER, SERVING, timeout=30)
            for minute in range(20, 40):  # the failed one included: a retry
                stub.IngestReading(reading(minute), timeout=10)
                acknowledged.append(minute)
    finally:
        meter.kill()
    assert stored_minutes(database_url) == acknowledged


def test_starts_without_its_database_and_serves_once_it_appears(own_postgres):
    server, server_url = own_postgres
    database_url = create_database(server_url, "ei_fault", migrate=True)
    server.stop()
    meter = start_service(
        "meter", {"DATABASE_URL": database_url, "DB_CONNECT_TIMEOUT_SECONDS": "2"}
    )
    try:
        wait_for_health(meter.target, METER, NOT_SERVING, timeout=15)
        with grpc.insecure_channel(meter.target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            with pytest.raises(grpc.RpcError) as failure:
                stub.IngestReading(reading(0), timeout=30)
            assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
            server.start()
            wait_for_health(meter.target, METER, SERVING, timeout=30)
            assert stub.IngestReading(reading(0), timeout=10).duplicate is False
    finally:
        meter.kill()
    assert stored_minutes(database_url) == [0]
