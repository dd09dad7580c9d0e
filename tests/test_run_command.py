"""`energy-ingest run`: embedded PostgreSQL (or DATABASE_URL), migrations, three children,
a banner with the addresses, and a clean stop of everything on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import wait_for_health

pytestmark = pytest.mark.e2e

FULL_NAMES = {
    "meter": "energy.meter.v1.MeterService",
    "vehicle": "energy.vehicle.v1.VehicleService",
    "analytics": "energy.analytics.v1.AnalyticsService",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_until_banner(env: dict[str, str], data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    banner = ""
    for line in process.stdout:
        banner += line
        if "Ctrl-C stops everything." in line:
            return process, banner
    raise AssertionError(f"run exited ({process.wait()}) before its banner:\n{banner}")


def ports_env() -> tuple[dict[str, str], dict[str, int]]:
    ports = {service: free_port() for service in FULL_NAMES}
    env = {f"{s.upper()}_LISTEN_ADDR": f"127.0.0.1:{port}" for s, port in ports.items()}
    return env, ports


def check_running_then_interrupt(process: subprocess.Popen[str], ports: dict[str, int]) -> str:
    for service, port in ports.items():
        wait_for_health(f"127.0.0.1:{port}", FULL_NAMES[service], 1)
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0
    assert process.stdout is not None
    return process.stdout.read()


def test_run_with_embedded_postgres(pg_dir):
    listen, ports = ports_env()
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")} | listen
    process, banner = run_until_banner(env, pg_dir / "var")
    try:
        assert "starting embedded PostgreSQL" in banner
        for service, port in ports.items():
            assert f"{service}" in banner and f"127.0.0.1:{port}" in banner
        assert "grpcurl -plaintext" in banner
        tail = check_running_then_interrupt(process, ports)
        assert "stopped" in tail
    finally:
        if process.poll() is None:
            process.kill()
    data = pg_dir / "var" / "postgres"
    assert (data / "PG_VERSION").exists(), "the database is kept under the data dir"
    assert not (data / "postmaster.pid").exists(), "the embedded PostgreSQL was stopped"


def test_run_uses_database_url_when_set(tmp_path, database_url):
    listen, ports = ports_env()
    env = dict(os.environ) | listen | {"DATABASE_URL": database_url}
    process, banner = run_until_banner(env, tmp_path / "var")
    try:
        assert "embedded" not in banner
        check_running_then_interrupt(process, ports)
    finally:
        if process.poll() is None:
            process.kill()
    assert not (tmp_path / "var").exists()
