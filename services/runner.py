"""`energy-ingest run`: the three services as child processes, on an embedded PostgreSQL
under ./var unless a database URL is configured; Ctrl-C stops all of them cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from services.common import migrations
from services.common.config import SERVICE_NAMES, Settings, dial_address
from services.common.embedded import EmbeddedPostgres


def _banner(settings: Settings) -> str:
    meter = dial_address(settings.listen_addr("meter"))
    lines = ["energy-ingest is running:"]
    for service in SERVICE_NAMES:
        lines.append(f"  {service:<9} {dial_address(settings.listen_addr(service))}")
    lines += [
        "try:",
        f"  grpcurl -plaintext {meter} list",
        '  grpcurl -plaintext -d \'{"reading": {"meterId": "CHG-001", "kwhConsumedAc": 15.5, '
        '"voltage": 240, "timestamp": "2026-02-10T12:00:00Z"}}\' '
        f"{meter} energy.meter.v1.MeterService/IngestReading",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def run_all(settings: Settings, data_dir: str) -> int:
    embedded: EmbeddedPostgres | None = None
    env = dict(os.environ)
    if not (settings.database_url or settings.meter_database_url or settings.vehicle_database_url):
        embedded = EmbeddedPostgres(Path(data_dir).resolve() / "postgres")
        print(f"starting embedded PostgreSQL in {embedded.data_dir}", flush=True)
        env["DATABASE_URL"] = embedded.start()
        settings = Settings.from_env(env)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    children: list[subprocess.Popen[bytes]] = []
    try:
        for service in migrations.MIGRATED_SERVICES:
            migrations.upgrade(service, settings.service_database_url(service))
        for service in SERVICE_NAMES:
            command = [sys.executable, "-m", "services.cli", "serve", service]
            children.append(subprocess.Popen(command, env=env))
        print(_banner(settings), flush=True)
        while not stop.wait(0.5):
            exited = [child for child in children if child.poll() is not None]
            if exited:
                print(f"a service exited (code {exited[0].returncode}); stopping", flush=True)
                return 1
        return 0
    finally:
        _stop_children(children, settings.shutdown_grace_seconds + 5)
        if embedded is not None:
            embedded.stop()
        print("stopped", flush=True)


def _stop_children(children: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
