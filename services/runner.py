"""`energy-ingest run`: the three services as child processes, on an embedded PostgreSQL
under ./var unless a database URL is configured. The banner comes only once every service
answers SERVING; a busy address or a service that dies on the way is one line and exit code 1
or 2; Ctrl-C stops all of them cleanly."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import client
from services.common import migrations
from services.common.config import (
    SERVICE_NAMES,
    Settings,
    dial_address,
    grpcurl_command,
    grpcurl_flags,
)
from services.common.embedded import EmbeddedPostgres
from services.common.errors import ConfigError
from services.common.security import channel_credentials
from services.common.server import AddressUnavailable, ensure_address_free

FULL_NAMES = dict(zip(SERVICE_NAMES, client.SERVICES, strict=True))
# Migrated database, services only need to open their pools: a healthy start takes seconds.
SERVING_TIMEOUT_SECONDS = 60.0


def _banner(settings: Settings) -> str:
    meter = dial_address(settings.listen_addr("meter"))
    grpcurl = f"{grpcurl_command()} {grpcurl_flags(settings)}"
    lines = ["energy-ingest is running:"]
    for service in SERVICE_NAMES:
        lines.append(f"  {service:<9} {dial_address(settings.listen_addr(service))}")
    lines += [
        "try:",
        f"  {grpcurl} {meter} list",
        f"  {grpcurl} -d "
        '\'{"reading": {"meterId": "CHG-001", "kwhConsumedAc": 15.5, "voltage": 240, '
        '"timestamp": "2026-02-10T12:00:00Z"}}\' '
        f"{meter} energy.meter.v1.MeterService/IngestReading",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _check_addresses(settings: Settings) -> None:
    """Refuses to start anything when a service's address is taken (most often: another
    `energy-ingest run`); run needs fixed ports to tell the user where the services are."""
    for service in SERVICE_NAMES:
        listen_addr = settings.listen_addr(service)
        variable = Settings.listen_variable(service)
        if listen_addr.endswith(":0"):
            raise ConfigError(f"run needs a fixed port: {variable}={listen_addr}")
        try:
            ensure_address_free(listen_addr)
        except AddressUnavailable as error:
            raise ConfigError(f"{error}; set {variable} to use another address") from None


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """One `run` per embedded database: a second one on the same data dir is refused (held
    until the process exits, whatever ports it was given)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "run.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise ConfigError(
            f"another `energy-ingest run` (pid {holder}) is using {data_dir}; stop it first"
        ) from None
    lock.truncate(0)
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


class _Children:
    """The three `serve` processes: started together, watched, stopped with SIGTERM."""

    def __init__(self, env: dict[str, str]) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # A terminal's Ctrl-C reaches the whole process group. SIGINT is blocked (not ignored)
        # while the children are spawned: they inherit the blocked mask, so none is torn down
        # mid-import with a KeyboardInterrupt traceback (the runner stops them all with
        # SIGTERM), and a Ctrl-C meant for the runner meanwhile stays pending, never lost.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for service in SERVICE_NAMES:
                command = [sys.executable, "-m", "services.cli", "serve", service]
                self.processes[service] = subprocess.Popen(command, env=env)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def exited(self) -> tuple[str, int] | None:
        for service, process in self.processes.items():
            code = process.poll()
            if code is not None:
                return service, code
        return None

    def stop(self, timeout: float) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _serving(channel: grpc.Channel, service_name: str) -> bool:
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=1)
    except grpc.RpcError:
        return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


def _wait_until_serving(settings: Settings, children: _Children, stop: threading.Event) -> None:
    """Returns once every service answers SERVING; ConfigError when one exits or times out."""
    credentials = channel_credentials(settings)
    channels = {
        service: client.channel(dial_address(settings.listen_addr(service)), credentials)
        for service in SERVICE_NAMES
    }
    waiting = set(SERVICE_NAMES)
    deadline = time.monotonic() + SERVING_TIMEOUT_SECONDS
    try:
        while waiting and not stop.is_set():
            exited = children.exited()
            if exited is not None:
                service, code = exited
                raise ConfigError(f"{service} exited with code {code} before serving (see above)")
            waiting -= {s for s in waiting if _serving(channels[s], FULL_NAMES[s])}
            if waiting and time.monotonic() > deadline:
                raise ConfigError(
                    f"not SERVING after {SERVING_TIMEOUT_SECONDS:g} s: {', '.join(sorted(waiting))}"
                    " (see the logs above)"
                )
            stop.wait(0.1)
    finally:
        for channel in channels.values():
            channel.close()


def run_all(settings: Settings, data_dir: str) -> int:
    """Runs until Ctrl-C/SIGTERM (exit 0) or until a service exits (exit 1). Raises
    ConfigError, before starting anything, when an address is taken, the embedded database is
    wanted but not installed, or another run holds it."""
    _check_addresses(settings)
    embedded: EmbeddedPostgres | None = None
    lock: IO[str] | None = None
    if not (settings.database_url or settings.meter_database_url or settings.vehicle_database_url):
        root = Path(data_dir).resolve()
        embedded = EmbeddedPostgres(root / "postgres")  # ConfigError without the extra
        lock = _lock_data_dir(root)
    env = dict(os.environ)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    children: _Children | None = None
    try:
        if embedded is not None:
            print(f"starting embedded PostgreSQL in {embedded.data_dir}", flush=True)
            env["DATABASE_URL"] = embedded.start()
            settings = Settings.from_env(env)
        print("migrating and starting meter, vehicle and analytics", flush=True)
        for service in migrations.MIGRATED_SERVICES:
            migrations.upgrade(service, settings.service_database_url(service))
        children = _Children(env)
        _wait_until_serving(settings, children, stop)
        if not stop.is_set():
            print(_banner(settings), flush=True)
        while not stop.wait(0.5):
            exited = children.exited()
            if exited is not None:
                service, code = exited
                print(f"{service} exited with code {code}; stopping the others", flush=True)
                return 1
        return 0
    finally:
        if children is not None:
            children.stop(settings.shutdown_grace_seconds + 5)
        if embedded is not None:
            embedded.stop()
        if lock is not None:
            lock.close()
        print("stopped", flush=True)
