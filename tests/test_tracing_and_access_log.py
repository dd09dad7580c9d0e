"""Traces and the access log. Traces: the three services as separate processes export over
OTLP/gRPC to a receiver this test runs (services.bench.otlp: the collector's own TraceService
contract, from opentelemetry-proto), and one GetVehiclePerformance must come back as one
trace holding spans of all three, the downstream server spans children of AnalyticsService's
client spans; the access lines of the calls carry that trace's id. The access log: one line
per call, with what the call counted and who made it, rate-limited, never a reading's
content."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from energy.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.bench.otlp import SpanReceiver
from services.launcher import ServiceProcess, start_serving, terminate_all
from tests.conftest import InProcessServer, start_in_process
from tests.test_analytics_servicers import at, seed
from tests.test_rotation_and_probes import token_table

pytestmark = pytest.mark.e2e

PERFORMANCE = "/energy.analytics.v1.AnalyticsService/GetVehiclePerformance"


@pytest.fixture
def receiver() -> Iterator[SpanReceiver]:
    spans = SpanReceiver()
    yield spans
    spans.stop()


def access_lines(log_lines: list[str], method: str) -> list[dict[str, Any]]:
    lines = []
    for line in log_lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "call" and entry.get("method") == method:
            lines.append(entry)
    return lines


def test_one_vehicle_performance_is_one_trace_across_the_three_processes(
    database_url: str, receiver: SpanReceiver
) -> None:
    collector, endpoint = receiver, receiver.endpoint
    # Spans leave every 100 ms instead of every 5 s.
    env = {
        "DATABASE_URL": database_url,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    children: list[ServiceProcess] = []
    try:
        meter = start_serving("meter", env)
        children.append(meter)
        vehicle = start_serving("vehicle", env)
        children.append(vehicle)
        analytics = start_serving(
            "analytics", {**env, "METER_TARGET": meter.target, "VEHICLE_TARGET": vehicle.target}
        )
        children.append(analytics)
        seed(meter.target, vehicle.target)
        with grpc.insecure_channel(analytics.target) as channel:
            analytics_service_pb2_grpc.AnalyticsServiceStub(channel).GetVehiclePerformance(
                analytics_service_pb2.GetVehiclePerformanceRequest(
                    vehicle_id="VH-A", end_time=at(120), window=Duration(seconds=3 * 3600)
                ),
                timeout=30,
            )

        def root() -> Any:
            return next(
                (
                    span
                    for service, span in collector.received()
                    if service == "energy-ingest-analytics" and span.name == PERFORMANCE
                ),
                None,
            )

        deadline = time.monotonic() + 20
        while root() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        top = root()
        assert top is not None, "AnalyticsService exported no span of GetVehiclePerformance"
        assert top.kind == top.SPAN_KIND_SERVER and not top.parent_span_id

        def services_in_trace() -> set[str]:
            return {service for service, _ in collector.trace(top.trace_id)}

        want = {"energy-ingest-analytics", "energy-ingest-meter", "energy-ingest-vehicle"}
        while services_in_trace() != want and time.monotonic() < deadline:
            time.sleep(0.1)
        assert services_in_trace() == want
        spans = collector.trace(top.trace_id)
        client_spans = {
            span.span_id: span
            for service, span in spans
            if service == "energy-ingest-analytics" and span.kind == span.SPAN_KIND_CLIENT
        }
        downstream = [
            (service, span)
            for service, span in spans
            if service != "energy-ingest-analytics" and span.kind == span.SPAN_KIND_SERVER
        ]
        # Every downstream server span is the child of one of AnalyticsService's client spans,
        # each of them a child of the call's server span, and carries the same method.
        assert downstream
        for _service, span in downstream:
            parent = client_spans[span.parent_span_id]
            assert parent.parent_span_id == top.span_id
            assert parent.name == span.name
        assert {span.name for _, span in downstream} >= {
            "/energy.vehicle.v1.VehicleService/ListChargingSessions",
            "/energy.meter.v1.MeterService/AttributeConsumption",
        }
    finally:
        terminate_all(children, 30)

    # The access lines of the calls carry the trace's id: the analytics call, and the
    # downstream calls in the other two processes.
    trace_id = top.trace_id.hex()
    [line] = access_lines(analytics.log_lines, PERFORMANCE)
    assert (line["trace_id"], line["code"]) == (trace_id, "OK")
    sessions = access_lines(
        vehicle.log_lines, "/energy.vehicle.v1.VehicleService/ListChargingSessions"
    )
    assert [entry["trace_id"] for entry in sessions] == [trace_id]
    # The seed's stream is a trace of its own (its client sent no trace context).
    [ingest] = access_lines(meter.log_lines, "/energy.meter.v1.MeterService/IngestReadings")
    assert len(ingest["trace_id"]) == 32 and ingest["trace_id"] != trace_id
    assert ingest["readings"] == 60


# --- the access log, in process --------------------------------------------------------------


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="energy_ingest.access")
    return caplog


def records_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "energy_ingest.access"]


def lines_of(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        {key: value for key, value in vars(r).items() if key in LINE_FIELDS}
        for r in records_of(caplog)
    ]


LINE_FIELDS = {"method", "peer", "principal", "code", "readings", "suppressed_since_last"}


def meter_reading(meter_id: str, minute: int, kwh: float = 1.0) -> meter_pb2.MeterReading:
    return meter_pb2.MeterReading(
        meter_id=meter_id, kwh_consumed_ac=kwh, voltage=230, timestamp=at(minute)
    )


def test_each_call_is_one_line_with_its_readings_and_principal_and_no_payload(
    database_url: str, tmp_path: Path, access_log: pytest.LogCaptureFixture
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_bytes(token_table({"tok-ingest": ("ingest", "service")}))
    server = start_in_process("meter", database_url, auth_tokens_file=str(tokens))
    try:
        auth = [("authorization", "Bearer tok-ingest")]
        with server.channel() as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            # A stream of two messages: 3 new readings, a duplicate and one rejected (negative
            # energy): one call, one line, 5 readings.
            answer = stub.IngestReadings(
                iter(
                    [
                        meter_service_pb2.IngestReadingsRequest(
                            readings=[meter_reading("CHG-7", m) for m in (0, 1, 2)]
                        ),
                        meter_service_pb2.IngestReadingsRequest(
                            readings=[meter_reading("CHG-7", 2), meter_reading("CHG-7", 3, -4.0)]
                        ),
                    ]
                ),
                metadata=auth,
                timeout=30,
            )
            assert (answer.accepted, answer.duplicates, answer.rejected) == (3, 1, 1)
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetChargerStatus(
                    meter_service_pb2.GetChargerStatusRequest(meter_id="CHG-9"), timeout=10
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.running.shutdown(5)
    lines = lines_of(access_log)
    peers = {line.pop("peer") for line in lines}
    assert len(peers) == 1 and peers.pop().startswith("ipv4:127.0.0.1:")
    # Health is not logged; the refused call is, with no principal (it proved none).
    assert lines == [
        {
            "method": "/energy.meter.v1.MeterService/IngestReadings",
            "principal": "ingest",
            "code": "OK",
            "readings": 5,
        },
        {
            "method": "/energy.meter.v1.MeterService/GetChargerStatus",
            "principal": None,
            "code": "UNAUTHENTICATED",
        },
    ]
    durations = [vars(r)["duration_ms"] for r in records_of(access_log)]
    assert all(isinstance(d, float) and d >= 0 for d in durations)
    # No reading's content: not the charger's id, not an energy.
    text = " ".join(str(vars(r)) for r in records_of(access_log))
    assert "CHG-7" not in text and "kwh" not in text


def test_the_access_log_is_rate_limited_and_says_how_many_lines_it_left_out(
    database_url: str, access_log: pytest.LogCaptureFixture
) -> None:
    # Half a line a second, a burst of one: the first call is logged, the next four (well
    # within two seconds) are not, and the line after the pause says so.
    server: InProcessServer = start_in_process(
        "meter", database_url, access_log_lines_per_second=0.5
    )
    try:
        with server.channel() as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            request = meter_service_pb2.GetChargerStatusRequest(meter_id="CHG-404")
            began = time.monotonic()
            for _ in range(5):
                with pytest.raises(grpc.RpcError):
                    stub.GetChargerStatus(request, timeout=10)
            assert time.monotonic() - began < 1.5, "too slow to test the rate"
            assert len(lines_of(access_log)) == 1
            time.sleep(2.2)
            with pytest.raises(grpc.RpcError):
                stub.GetChargerStatus(request, timeout=10)
    finally:
        server.running.shutdown(5)
    lines = lines_of(access_log)
    assert [(line["code"], line.get("suppressed_since_last")) for line in lines] == [
        ("NOT_FOUND", None),
        ("NOT_FOUND", 4),
    ]


def test_access_log_off(database_url: str, access_log: pytest.LogCaptureFixture) -> None:
    server = start_in_process("meter", database_url, access_log_lines_per_second=0)
    try:
        with server.channel() as channel, pytest.raises(grpc.RpcError):
            meter_service_pb2_grpc.MeterServiceStub(channel).GetChargerStatus(
                meter_service_pb2.GetChargerStatusRequest(meter_id="CHG-404"), timeout=10
            )
    finally:
        server.running.shutdown(5)
    assert lines_of(access_log) == []


def test_a_stream_the_server_ends_for_idleness_is_logged_with_the_code_its_client_saw(
    database_url: str, access_log: pytest.LogCaptureFixture
) -> None:
    """The idle watchdog ends a stream with DEADLINE_EXCEEDED from another thread; grpc may
    then hand the handler an ended stream, which it answers: the line (and the metrics) say
    what the client saw, not OK."""
    server = start_in_process("meter", database_url, stream_idle_timeout_seconds=1.0)
    try:
        hold = threading.Event()

        def idle_after_one() -> Iterator[meter_service_pb2.IngestReadingsRequest]:
            yield meter_service_pb2.IngestReadingsRequest(readings=[meter_reading("CHG-8", 0)])
            hold.wait(10)

        with server.channel() as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            with pytest.raises(grpc.RpcError) as ended:
                stub.IngestReadings(idle_after_one(), timeout=30)
            hold.set()
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        registry = server.running.component.metrics.registry
        labels = {
            "grpc_type": "client_stream",
            "grpc_service": "energy.meter.v1.MeterService",
            "grpc_method": "IngestReadings",
        }
        deadline = time.monotonic() + 5
        while not lines_of(access_log) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.running.shutdown(5)
    [line] = lines_of(access_log)
    assert line["code"] == "DEADLINE_EXCEEDED"
    assert (
        registry.get_sample_value(
            "grpc_server_handled_total", {**labels, "grpc_code": "DEADLINE_EXCEEDED"}
        )
        == 1
    )
    assert (
        registry.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "OK"})
        is None
    )
