"""Prometheus metrics at METRICS_ADDR, scraped over real HTTP from a real MeterService: the
readings counters follow what the answers said, the gRPC counters follow the calls and their
codes, and a taken address is refused at start."""

from __future__ import annotations

import socket
import time
import urllib.request

import grpc
import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from services.common.server import AddressUnavailable
from services.common.timeconv import micros_to_timestamp, now_micros
from tests.conftest import start_in_process

pytestmark = pytest.mark.e2e


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at /metrics: (name, sorted labels) → value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def reading(meter_id: str, micros: int, kwh: float, voltage: float = 230.0):
    return meter_pb2.MeterReading(
        meter_id=meter_id,
        kwh_consumed_ac=kwh,
        voltage=voltage,
        timestamp=micros_to_timestamp(micros),
    )


def test_readings_and_calls_are_counted(database_url):
    server = start_in_process("meter", database_url, metrics_addr="127.0.0.1:0")
    try:
        port = server.running.metrics.port  # type: ignore[union-attr]
        now = now_micros() // 1_000_000 * 1_000_000
        with server.channel() as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            # A stream: 3 stored, 1 rejected (voltage 1e6 V is out of bounds).
            first = stub.IngestReadings(
                iter(
                    [
                        meter_service_pb2.IngestReadingsRequest(
                            readings=[
                                reading("M-1", now - 120_000_000, 0.5),
                                reading("M-1", now - 60_000_000, 0.5),
                                reading("M-2", now - 60_000_000, 0.25),
                                reading("M-2", now - 30_000_000, 0.25, voltage=1e6),
                            ]
                        )
                    ]
                ),
                timeout=30,
            )
            assert (first.accepted, first.rejected) == (3, 1)
            # One resent (duplicate), one changed (conflict).
            stub.IngestReading(
                meter_service_pb2.IngestReadingRequest(
                    reading=reading("M-1", now - 60_000_000, 0.5)
                ),
                timeout=30,
            )
            stub.IngestReading(
                meter_service_pb2.IngestReadingRequest(
                    reading=reading("M-2", now - 60_000_000, 9.0)
                ),
                timeout=30,
            )
            with pytest.raises(grpc.RpcError) as refused:
                stub.IngestReading(
                    meter_service_pb2.IngestReadingRequest(
                        reading=reading("M-3", now, 0.5, voltage=-1.0)
                    ),
                    timeout=30,
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        samples = scrape(port)
        readings = {
            outcome: samples[
                ("energy_ingest_readings_total", (("outcome", outcome), ("service", "meter")))
            ]
            for outcome in ("accepted", "duplicate", "conflict", "rejected")
        }
        assert readings == {"accepted": 3, "duplicate": 1, "conflict": 1, "rejected": 2}
        assert (
            samples[
                ("energy_ingest_rejections_total", (("field", "voltage"), ("service", "meter")))
            ]
            == 2
        )

        def handled(method: str, grpc_type: str, code: str) -> float:
            labels = (
                ("grpc_code", code),
                ("grpc_method", method),
                ("grpc_service", "energy.meter.v1.MeterService"),
                ("grpc_type", grpc_type),
            )
            return samples[("grpc_server_handled_total", labels)]

        assert handled("IngestReadings", "client_stream", "OK") == 1
        assert handled("IngestReading", "unary", "OK") == 2
        assert handled("IngestReading", "unary", "INVALID_ARGUMENT") == 1
        count = (
            "grpc_server_handling_seconds_count",
            (
                ("grpc_method", "IngestReading"),
                ("grpc_service", "energy.meter.v1.MeterService"),
                ("grpc_type", "unary"),
            ),
        )
        assert samples[count] == 3
        meter = (("service", "meter"),)
        # Batches committed: the stream's (3 valid readings, one batch or more) and the two
        # unary calls'; every reading of them went through one.
        batches = samples[("energy_ingest_writer_batch_readings_count", meter)]
        assert batches >= 3
        assert samples[("energy_ingest_writer_batch_readings_sum", meter)] == 5
        assert samples[("energy_ingest_writer_commit_seconds_count", meter)] == batches
        assert samples[("energy_ingest_writer_queue_readings", meter)] == 0
        assert samples[("energy_ingest_streams_open", meter)] == 0
        assert samples[("energy_ingest_database_up", meter)] == 1
    finally:
        server.running.shutdown(5)


def test_analytics_counts_its_downstream_calls(database_url):
    """A vehicle that never reported: GetVehiclePerformance makes one ListChargingSessions call,
    answered NOT_FOUND, and asks nothing more."""
    from energy.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc

    meter = start_in_process("meter", database_url)
    vehicle = start_in_process("vehicle", database_url)
    analytics = start_in_process(
        "analytics",
        database_url,
        meter_target=meter.target,
        vehicle_target=vehicle.target,
        metrics_addr="127.0.0.1:0",
    )
    try:
        with analytics.channel() as channel:
            stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
            with pytest.raises(grpc.RpcError) as unknown:
                stub.GetVehiclePerformance(
                    analytics_service_pb2.GetVehiclePerformanceRequest(vehicle_id="VH-NONE"),
                    timeout=30,
                )
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        samples = scrape(analytics.running.metrics.port)  # type: ignore[union-attr]
        labels = (
            ("grpc_method", "ListChargingSessions"),
            ("grpc_service", "energy.vehicle.v1.VehicleService"),
            ("grpc_type", "unary"),
        )
        assert samples[("grpc_client_handled_total", (("grpc_code", "NOT_FOUND"), *labels))] == 1
        assert samples[("grpc_client_handling_seconds_count", labels)] == 1
        assert not any(
            name == "grpc_client_handled_total" and ("grpc_method", "AttributeConsumption") in key
            for name, key in samples
        )
    finally:
        for server in (analytics, vehicle, meter):
            server.running.shutdown(5)


def test_a_stream_the_client_cancels_counts_as_cancelled_and_no_readings(database_url):
    """A stream whose client sends one message (1 valid reading, 1 rejected) and cancels
    before ending it: CANCELLED, and none of its readings or rejections counted (its caller
    learnt nothing of them).

    grpc-python reports a client's cancellation to the server in two events, the pending
    message read ending empty (as at a half-close) and the call marked cancelled, in either
    order: now and then the handler sees a stream that ended, stores its reading and returns
    an answer nobody receives (CANCELLED when the cancel is known by then, else OK): then its
    readings are counted as what they became (stored), consistently with the table."""
    import threading

    server = start_in_process("meter", database_url, metrics_addr="127.0.0.1:0")
    try:
        port = server.running.metrics.port  # type: ignore[union-attr]
        now = now_micros() // 1_000_000 * 1_000_000
        sent = threading.Event()
        hold = threading.Event()

        def requests():
            yield meter_service_pb2.IngestReadingsRequest(
                readings=[reading("M-C", now - 60_000_000, 0.5), reading("M-C", now, 0.5, -1.0)]
            )
            sent.set()
            hold.wait(10)

        with server.channel() as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            call = stub.IngestReadings.future(requests(), timeout=30)
            assert sent.wait(10)
            time.sleep(0.5)  # the server has read the message
            call.cancel()
            hold.set()

        def handled(code: str) -> tuple[str, tuple[tuple[str, str], ...]]:
            return (
                "grpc_server_handled_total",
                (
                    ("grpc_code", code),
                    ("grpc_method", "IngestReadings"),
                    ("grpc_service", "energy.meter.v1.MeterService"),
                    ("grpc_type", "client_stream"),
                ),
            )

        deadline = time.monotonic() + 10
        while (samples := scrape(port)).get(handled("CANCELLED")) != 1:
            if samples.get(handled("OK")) == 1:  # the handler returned before the cancel
                break
            assert time.monotonic() < deadline, samples
            time.sleep(0.1)
        counted = {
            outcome: samples[
                ("energy_ingest_readings_total", (("outcome", outcome), ("service", "meter")))
            ]
            for outcome in ("accepted", "duplicate", "conflict", "rejected")
        }
        rejections = {
            key: value
            for key, value in samples.items()
            if key[0] == "energy_ingest_rejections_total"
        }
        if counted["accepted"] == 0:
            assert samples.get(handled("CANCELLED")) == 1
            assert counted == {"accepted": 0, "duplicate": 0, "conflict": 0, "rejected": 0}
            assert rejections == {}
        else:  # seen as ended (see above): stored, and counted as stored
            with psycopg.connect(database_url) as connection:
                row = connection.execute(
                    "SELECT count(*) FROM meter.meter_readings WHERE meter_id = 'M-C'"
                ).fetchone()
            assert row is not None and row[0] == 1
            assert counted == {"accepted": 1, "duplicate": 0, "conflict": 0, "rejected": 1}
            assert list(rejections.values()) == [1.0]
    finally:
        server.running.shutdown(5)


def test_a_taken_metrics_address_is_refused_at_start(database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(AddressUnavailable, match="METRICS_ADDR"):
            start_in_process("meter", database_url, metrics_addr=address)


def test_run_gives_each_service_its_own_metrics_port():
    """`run` (and `make run`, which sets METRICS_ADDR=127.0.0.1:9464) serves MeterService's
    metrics at METRICS_ADDR and the next two ports for VehicleService and AnalyticsService,
    and says where; without METRICS_ADDR there are none."""
    from services.common.config import Settings
    from services.runner import _banner, metrics_addresses

    settings = Settings(metrics_addr="127.0.0.1:9464")
    assert metrics_addresses(settings) == {
        "meter": "127.0.0.1:9464",
        "vehicle": "127.0.0.1:9465",
        "analytics": "127.0.0.1:9466",
    }
    banner = _banner(settings)
    for port in (9464, 9465, 9466):
        assert f"http://127.0.0.1:{port}/metrics" in banner
    assert metrics_addresses(Settings()) == {}
    assert "/metrics" not in _banner(Settings())


def test_run_gives_each_service_its_own_health_port_and_refuses_ports_that_overlap():
    """HEALTH_LISTEN_ADDR under `run` goes as METRICS_ADDR does (its port and the next two),
    and the banner says where; settings whose derived ports meet are refused naming both
    (each address alone would have looked free)."""
    from services.common.config import Settings
    from services.common.errors import ConfigError
    from services.runner import _banner, _check_addresses

    banner = _banner(Settings(health_listen_addr="127.0.0.1:18081"))
    assert "health for probes" in banner
    for port in (18081, 18082, 18083):
        assert f"127.0.0.1:{port}" in banner
    assert "health for probes" not in _banner(Settings())
    # METRICS_ADDR 18080 gives 18080-18082, HEALTH_LISTEN_ADDR 18081 gives 18081-18083.
    settings = Settings(metrics_addr="127.0.0.1:18080", health_listen_addr="127.0.0.1:18081")
    with pytest.raises(ConfigError, match="both give port 18081") as refused:
        _check_addresses(settings)
    assert {"METRICS_ADDR", "HEALTH_LISTEN_ADDR"} <= set(str(refused.value).split())
    # AnalyticsService's health port (+2) on VehicleService's gRPC port.
    settings = Settings(vehicle_listen_addr="127.0.0.1:18092", health_listen_addr="127.0.0.1:18090")
    with pytest.raises(ConfigError, match="both give port 18092") as refused:
        _check_addresses(settings)
    assert {"VEHICLE_LISTEN_ADDR", "HEALTH_LISTEN_ADDR"} <= set(str(refused.value).split())


def test_the_grafana_dashboard_asks_for_metrics_the_services_expose():
    """deploy/grafana/energy-ingest.json: every metric its queries name is one a service
    registers (a renamed metric would leave a panel empty without a word)."""
    import json
    import re
    from pathlib import Path

    from services.common.metrics import ServiceMetrics

    dashboard = json.loads(
        (Path(__file__).parent.parent / "deploy" / "grafana" / "energy-ingest.json").read_text()
    )
    exposed = {
        sample_name
        for family in ServiceMetrics("meter").registry.collect()
        for sample_name in (
            family.name,
            f"{family.name}_total",
            f"{family.name}_bucket",
            f"{family.name}_count",
            f"{family.name}_sum",
        )
    }
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = {
        word
        for expr in exprs
        for word in re.findall(
            r"\b([a-z_]+(?:_total|_bucket|_seconds|_readings|_up|_open))\b", expr
        )
    }
    assert named, exprs
    assert named <= exposed, named - exposed
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in ("Ingest rate", "Rejections", "Commit latency", "Writer queue", "Analytics"):
        assert any(title.startswith(wanted) for title in titles), (wanted, titles)
