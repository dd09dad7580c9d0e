"""A real Prometheus (Debian's `prometheus` package; .ci/run installs it) scrapes the three
services' METRICS_ADDR every second while readings are ingested; its HTTP API then answers the
readings counters with exactly what was sent, and their increase over the run with it as well
(to Prometheus' extrapolation)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc

from services.common.timeconv import micros_to_timestamp, now_micros
from tests.conftest import InProcessServer, start_in_process

pytestmark = pytest.mark.e2e

BATCHES = 6  # one stream per second per service
PER_BATCH = 500


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def query(api: str, expression: str) -> list[dict]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]["result"]


def value(api: str, expression: str) -> float | None:
    result = query(api, expression)
    return float(result[0]["value"][1]) if result else None


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def send(meter: InProcessServer, vehicle: InProcessServer, batch: int, base_us: int) -> None:
    """PER_BATCH meter readings and PER_BATCH vehicle readings, all new."""
    times = [base_us + (batch * PER_BATCH + k) * 1_000 for k in range(PER_BATCH)]
    with meter.channel() as channel:
        answer = meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
            iter(
                [
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[
                            meter_pb2.MeterReading(
                                meter_id="M-PROM",
                                kwh_consumed_ac=0.01,
                                voltage=230,
                                timestamp=micros_to_timestamp(t),
                            )
                            for t in times
                        ]
                    )
                ]
            ),
            timeout=30,
        )
        assert answer.accepted == PER_BATCH
    with vehicle.channel() as channel:
        answer = vehicle_service_pb2_grpc.VehicleServiceStub(channel).IngestReadings(
            iter(
                [
                    vehicle_service_pb2.IngestReadingsRequest(
                        readings=[
                            vehicle_pb2.VehicleReading(
                                vehicle_id="V-PROM",
                                charger_id="M-PROM",
                                kwh_delivered_dc=0.009,
                                timestamp=micros_to_timestamp(t),
                            )
                            for t in times
                        ]
                    )
                ]
            ),
            timeout=30,
        )
        assert answer.accepted == PER_BATCH


def test_prometheus_scrapes_what_was_sent(database_url, tmp_path: Path):
    binary = shutil.which("prometheus")
    assert binary, "install Debian's prometheus package (.ci/run does)"
    servers = {
        service: start_in_process(service, database_url, metrics_addr="127.0.0.1:0")
        for service in ("meter", "vehicle")
    }
    servers["analytics"] = start_in_process(
        "analytics",
        database_url,
        meter_target=servers["meter"].target,
        vehicle_target=servers["vehicle"].target,
        metrics_addr="127.0.0.1:0",
    )
    targets = {
        service: f"127.0.0.1:{server.running.metrics.port}"  # type: ignore[union-attr]
        for service, server in servers.items()
    }
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
        + "".join(
            f"  - job_name: {service}\n    static_configs:\n      - targets: ['{target}']\n"
            for service, target in targets.items()
        )
    )
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Every target up before anything is sent: the counters' series exist at 0 from the
        # first scrape, so their increase over the run is what was sent.
        wait_for(lambda: _ready(api) and value(api, "sum(up)") == 3, 60, "three targets scraped up")
        base_us = now_micros() - 3_600_000_000
        for batch in range(BATCHES):
            send(servers["meter"], servers["vehicle"], batch, base_us)
            time.sleep(1)
        sent = BATCHES * PER_BATCH
        accepted = 'energy_ingest_readings_total{{service="{}",outcome="accepted"}}'
        for service in ("meter", "vehicle"):
            wait_for(
                lambda service=service: value(api, accepted.format(service)) == sent,
                30,
                f"{service}'s accepted readings scraped",
            )
        # The increase over the run (as a dashboard would plot the rate): Prometheus
        # extrapolates to the range's ends, so within a scrape interval's worth of it.
        for service in ("meter", "vehicle"):
            increase = value(api, f"increase({accepted.format(service)}[1m])")
            assert increase is not None and sent * 0.8 <= increase <= sent * 1.3, increase
        assert value(api, 'sum(energy_ingest_database_up{service="meter"})') == 1
        handled = value(
            api,
            'sum(grpc_server_handled_total{job="meter",grpc_method="IngestReadings",'
            'grpc_code="OK"})',
        )
        assert handled == BATCHES
    finally:
        prometheus.terminate()
        prometheus.wait(30)
        for server in servers.values():
            server.running.shutdown(5)


def _ready(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
