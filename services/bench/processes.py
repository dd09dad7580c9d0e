"""Services started as real processes for the benchmark, each on a free port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

FULL_NAMES = {
    "meter": "energy.meter.v1.MeterService",
    "vehicle": "energy.vehicle.v1.VehicleService",
    "analytics": "energy.analytics.v1.AnalyticsService",
}


@dataclass
class ServiceProcess:
    service: str
    process: subprocess.Popen[str]
    target: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        """SIGTERM: the service drains and exits; killed if it does not within a minute."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_service(service: str, env: dict[str, str], timeout: float = 60) -> ServiceProcess:
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", service],
        env={
            **os.environ,
            "LOG_LEVEL": "INFO",
            **env,
            f"{service.upper()}_LISTEN_ADDR": "127.0.0.1:0",
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if '"listening"' in line:
            # Keep draining its logs so the child never blocks on a full pipe.
            threading.Thread(target=process.stderr.read, daemon=True).start()
            target = f"127.0.0.1:{json.loads(line)['port']}"
            wait_serving(target, FULL_NAMES[service], timeout)
            return ServiceProcess(service, process, target)
    raise RuntimeError(f"{service} exited with {process.wait()} before listening")


def wait_serving(target: str, service_name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                request = health_pb2.HealthCheckRequest(service=service_name)
                if stub.Check(request, timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"{service_name} at {target} not SERVING after {timeout} s")


def peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
