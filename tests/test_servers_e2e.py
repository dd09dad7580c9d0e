"""End to end: the three services as real processes started through the CLI, on free ports."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.contracts import FULL_NAMES
from services.launcher import ServiceProcess, start_service, wait_for_health
from tests.support import grpcurl

pytestmark = pytest.mark.e2e

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def running(database_url: str):
    started: dict[str, ServiceProcess] = {}
    try:
        for service in FULL_NAMES:
            started[service] = start_service(service, {"DATABASE_URL": database_url})
        yield started
    finally:
        for process in started.values():
            process.kill()


def listed_services(target: str) -> set[str]:
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
    return {service.name for service in response.list_services_response.service}


def test_every_service_is_healthy_and_reflected(running):
    for service, full_name in FULL_NAMES.items():
        target = running[service].target
        wait_for_health(target, full_name, SERVING)
        wait_for_health(target, "", SERVING)
        assert listed_services(target) == {
            full_name,
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        }


def test_grpcurl_lists_services_through_reflection(running):
    result = grpcurl("-plaintext", running["meter"].target, "list")
    assert result.returncode == 0, result.stderr
    assert "energy.meter.v1.MeterService" in result.stdout.split()


def test_sigterm_drains_and_exits_zero(running):
    for service, full_name in FULL_NAMES.items():
        wait_for_health(running[service].target, full_name, SERVING)
    for service in FULL_NAMES:
        started = time.monotonic()
        assert running[service].terminate() == 0
        assert time.monotonic() - started < 10
        messages = "".join(running[service].log_lines)
        assert '"signal received, draining"' in messages
        assert '"stopped"' in messages


def test_unknown_database_fails_health_not_process(postgres_url):
    """A service whose database is unreachable stays up and reports NOT_SERVING."""
    unreachable = "postgresql://postgres@127.0.0.1:1/nowhere"
    meter = start_service("meter", {"DATABASE_URL": unreachable, "DB_CONNECT_TIMEOUT_SECONDS": "1"})
    try:
        wait_for_health(meter.target, FULL_NAMES["meter"], NOT_SERVING)
        assert meter.process.poll() is None
    finally:
        meter.kill()
