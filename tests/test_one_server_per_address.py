"""One server per address: a second server on a busy port must refuse to start, loudly, and no
call may ever reach it (gRPC's default SO_REUSEPORT would let it share the port silently and
the kernel would split the calls between the two processes and their databases)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc

from services.analytics import component as analytics_component
from services.common.config import Settings
from services.common.contracts import FULL_NAMES
from services.common.databases import create_database, drop_database
from services.common.server import AddressUnavailable, ensure_address_free, start_server
from services.launcher import start_service
from tests.conftest import start_in_process


@pytest.fixture
def listener() -> Iterator[int]:
    """A plain TCP listener on 127.0.0.1 holding a port, as another program would."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


def test_a_port_held_by_another_program_is_refused_with_its_reason(listener):
    with pytest.raises(AddressUnavailable) as refused:
        ensure_address_free(f"127.0.0.1:{listener}")
    assert str(refused.value) == (
        f"cannot listen on 127.0.0.1:{listener}: "
        "address already in use (is another server running there?)"
    )


def test_the_wildcard_address_is_busy_when_any_interface_holds_the_port(listener):
    with pytest.raises(AddressUnavailable, match="already in use"):
        ensure_address_free(f"[::]:{listener}")
    with pytest.raises(AddressUnavailable, match="already in use"):
        ensure_address_free(f"0.0.0.0:{listener}")


def test_localhost_is_busy_when_either_loopback_holds_the_port():
    """gRPC binds "localhost" on 127.0.0.1 and ::1 whatever /etc/hosts says, and starts when
    only one of them is free: a server on [::1] must make "localhost" busy."""
    with socket.socket(socket.AF_INET6) as held:
        held.bind(("::1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(AddressUnavailable, match="already in use"):
            ensure_address_free(f"localhost:{port}")


def test_port_zero_and_free_ports_pass_and_nonsense_is_refused():
    ensure_address_free("127.0.0.1:0")
    ensure_address_free("[::]:0")
    # A port beyond 65535 would be taken modulo 65536 by gRPC: another port than asked.
    with pytest.raises(AddressUnavailable, match=r"port 99999 is not within 0\.\.65535"):
        ensure_address_free("127.0.0.1:99999")
    with pytest.raises(AddressUnavailable, match="not a host:port address"):
        ensure_address_free("localhost:http")
    with pytest.raises(AddressUnavailable, match="not a host:port address"):
        ensure_address_free("no-such-host.invalid:50051")


@pytest.mark.e2e
def test_grpc_itself_refuses_a_second_server_on_the_same_port(database_url):
    """The lasting guard, without the start-up probe: SO_REUSEPORT off in every server."""
    first = start_in_process("analytics", database_url)
    try:
        port = first.running.port
        component = analytics_component.build(Settings())
        with pytest.raises(AddressUnavailable, match=f"127.0.0.1:{port}"):
            start_server(Settings(), component, f"127.0.0.1:{port}")
    finally:
        first.running.shutdown(1)


def reading(minute: int) -> meter_pb2.MeterReading:
    reading = meter_pb2.MeterReading(meter_id="CHG-PORT", kwh_consumed_ac=0.2, voltage=230.0)
    reading.timestamp.FromDatetime(
        datetime(2026, 11, 20, 18, tzinfo=UTC) + timedelta(minutes=minute)
    )
    return reading


def stored(database_url: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM meter.meter_readings WHERE meter_id = 'CHG-PORT'"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.e2e
@pytest.mark.parametrize("service", list(FULL_NAMES))
def test_a_second_serve_on_a_busy_port_exits_with_one_line(service, database_url, postgres_url):
    """The second process gets its own database: had it started, readings would land there."""
    second_database = create_database(postgres_url, "ei_second", migrate=True)
    first = start_service(service, {"DATABASE_URL": database_url})
    try:
        variable = f"{service.upper()}_LISTEN_ADDR"
        second = subprocess.run(
            [sys.executable, "-m", "services.cli", "serve", service],
            env=os.environ | {"DATABASE_URL": second_database, variable: first.target},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert second.returncode == 2
        assert second.stdout == ""
        assert second.stderr.splitlines() == [
            f"energy-ingest serve: cannot listen on {first.target}: address already in use "
            f"(is another server running there?); set {variable} to use another address"
        ]
        if service == "meter":
            # 20 chargers, a connection each: every acknowledged reading is in the first database.
            for minute in range(20):
                with grpc.insecure_channel(first.target) as channel:
                    stub = meter_service_pb2_grpc.MeterServiceStub(channel)
                    request = meter_service_pb2.IngestReadingRequest(reading=reading(minute))
                    stub.IngestReading(request, timeout=10)
            assert stored(database_url) == 20
            assert stored(second_database) == 0
    finally:
        first.kill()
        drop_database(postgres_url, second_database)
