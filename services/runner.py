"""`energy-ingest run`: the three services and the OCPP gateway as child processes, on an
embedded PostgreSQL under ./var unless a database URL is configured. The banner comes only once
every service answers SERVING (and the gateway accepts connections); a busy address or a
service that dies on the way is one line and exit code 1 or 2; Ctrl-C stops all of them
cleanly."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
from pathlib import Path
from typing import IO

from services import launcher
from services.common import migrations
from services.common.config import (
    SERVICE_NAMES,
    Settings,
    dial_address,
    grpcurl_command,
    grpcurl_flags,
)
from services.common.contracts import FULL_NAMES
from services.common.embedded import EmbeddedPostgres
from services.common.errors import ConfigError
from services.common.security import channel_credentials
from services.common.server import AddressUnavailable, ensure_address_free
from services.launcher import ServiceProcess

# Migrated database, services only need to open their pools: a healthy start takes seconds.
SERVING_TIMEOUT_SECONDS = 60.0


def per_service_addresses(address: str) -> dict[str, str]:
    """Each service's address under `run` for a setting every service has its own of
    (METRICS_ADDR, HEALTH_LISTEN_ADDR): its port for MeterService, the next two for
    VehicleService and AnalyticsService; none when the setting is unset."""
    if not address:
        return {}
    host, _, port = address.rpartition(":")
    return {service: f"{host}:{int(port) + i}" for i, service in enumerate(SERVICE_NAMES)}


def metrics_addresses(settings: Settings) -> dict[str, str]:
    """Each service's METRICS_ADDR under `run` (per_service_addresses)."""
    return per_service_addresses(settings.metrics_addr)


def _own_addresses(settings: Settings) -> dict[str, dict[str, str]]:
    """The settings each service's process gets an address of its own in, by service."""
    own: dict[str, dict[str, str]] = {service: {} for service in SERVICE_NAMES}
    for variable, address in (
        ("METRICS_ADDR", settings.metrics_addr),
        ("HEALTH_LISTEN_ADDR", settings.health_listen_addr),
    ):
        for service, its_address in per_service_addresses(address).items():
            own[service][variable] = its_address
    return own


def _banner(settings: Settings) -> str:
    meter = dial_address(settings.listen_addr("meter"))
    grpcurl = f"{grpcurl_command()} {grpcurl_flags(settings)}"
    lines = ["energy-ingest is running:"]
    for service in SERVICE_NAMES:
        lines.append(f"  {service:<9} {dial_address(settings.listen_addr(service))}")
    scheme = "wss" if settings.tls_cert_file else "ws"
    lines.append(
        f"  {'ocpp':<9} {scheme}://{dial_address(settings.ocpp_listen_addr)}/<chargePointId>"
    )
    metrics = metrics_addresses(settings)
    if metrics:
        lines.append("metrics (Prometheus):")
        for service, address in metrics.items():
            lines.append(f"  {service:<9} http://{dial_address(address)}/metrics")
    probes = per_service_addresses(settings.health_listen_addr)
    if probes:
        lines.append("health for probes (plaintext, grpc.health.v1.Health/Check):")
        for service, address in probes.items():
            lines.append(f"  {service:<9} {dial_address(address)}")
    lines += [
        "try:",
        f"  {grpcurl} {meter} list",
        f"  {grpcurl} -d "
        '\'{"reading": {"meterId": "CHG-001", "kwhConsumedAc": 15.5, "voltage": 240, '
        '"timestamp": "2026-02-10T12:00:00Z"}}\' '
        f"{meter} {FULL_NAMES['meter']}/IngestReading",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


def _check_addresses(settings: Settings) -> None:
    """Refuses to start anything when a service's address is taken (most often: another
    `energy-ingest run`); run needs fixed ports to tell the user where the services are."""
    addresses = [(settings.listen_addr(s), Settings.listen_variable(s)) for s in SERVICE_NAMES]
    addresses.append((settings.ocpp_listen_addr, "OCPP_LISTEN_ADDR"))
    addresses += [
        (address, variable)
        for own in _own_addresses(settings).values()
        for variable, address in own.items()
    ]
    # Each address probed alone is free; two settings that give the same port are not.
    by_port: dict[str, str] = {}
    for listen_addr, variable in addresses:
        port = listen_addr.rpartition(":")[2]
        if port in by_port and by_port[port] != variable:
            raise ConfigError(
                f"{variable} and {by_port[port]} both give port {port} (METRICS_ADDR and "
                "HEALTH_LISTEN_ADDR take their port and the next two); set them apart"
            )
        by_port.setdefault(port, variable)
    for listen_addr, variable in addresses:
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


def _start_children(
    settings: Settings, env: dict[str, str], children: list[ServiceProcess]
) -> None:
    """The three `serve` processes, on their configured addresses, logging to our stderr; each
    is appended to `children` as it starts, so a failure midway still leaves them to stop."""
    # A terminal's Ctrl-C reaches the whole process group. SIGINT is blocked (not ignored)
    # while the children are spawned: they inherit the blocked mask, so none is torn down
    # mid-import with a KeyboardInterrupt traceback (the runner stops them all with
    # SIGTERM), and a Ctrl-C meant for the runner meanwhile stays pending, never lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        own = _own_addresses(settings)
        for service in SERVICE_NAMES:
            target = dial_address(settings.listen_addr(service))
            children.append(launcher.spawn(service, {**env, **own[service]}, target))
        # The OCPP gateway sends to METER_TARGET, as AnalyticsService does.
        children.append(launcher.spawn("ocpp", env, dial_address(settings.ocpp_listen_addr)))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _wait_until_serving(
    settings: Settings, children: list[ServiceProcess], stop: threading.Event
) -> None:
    """Returns once every service answers SERVING (or `stop` is set); ConfigError when one
    exits or times out."""
    grpc_children = [child for child in children if child.service != "ocpp"]
    gateway = [child for child in children if child.service == "ocpp"]
    try:
        launcher.wait_serving(
            grpc_children, SERVING_TIMEOUT_SECONDS, channel_credentials(settings), stop
        )
        launcher.wait_listening(gateway, SERVING_TIMEOUT_SECONDS, stop)
    except launcher.ExitedBeforeServing as exited:
        raise ConfigError(
            f"{exited.service} exited with code {exited.code} before serving (see above)"
        ) from None
    except launcher.NotServingInTime as late:
        raise ConfigError(
            f"not SERVING after {late.timeout:g} s: {', '.join(late.services)} (see the logs above)"
        ) from None


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
    children: list[ServiceProcess] = []
    try:
        if embedded is not None:
            print(f"starting embedded PostgreSQL in {embedded.data_dir}", flush=True)
            env["DATABASE_URL"] = embedded.start()
            settings = Settings.from_env(env)
        print("migrating and starting meter, vehicle, analytics and the OCPP gateway", flush=True)
        for service in migrations.MIGRATED_SERVICES:
            migrations.upgrade(service, settings.service_database_url(service))
        _start_children(settings, env, children)
        _wait_until_serving(settings, children, stop)
        if not stop.is_set():
            print(_banner(settings), flush=True)
        while not stop.wait(0.5):
            exited = launcher.first_exited(children)
            if exited is not None:
                child, code = exited
                print(f"{child.service} exited with code {code}; stopping the others", flush=True)
                return 1
        return 0
    finally:
        launcher.terminate_all(children, settings.shutdown_grace_seconds + 5)
        if embedded is not None:
            embedded.stop()
        if lock is not None:
            lock.close()
        print("stopped", flush=True)
