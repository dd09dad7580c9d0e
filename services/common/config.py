"""Settings, read once from the environment in main() and passed down explicitly."""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from services.common.errors import ConfigError

SERVICE_NAMES = ("meter", "vehicle", "analytics")
DEFAULT_LISTEN_ADDRS = {"meter": "[::]:50051", "vehicle": "[::]:50052", "analytics": "[::]:50053"}


def dial_address(listen_addr: str) -> str:
    """Where a client on this machine reaches a server listening on `listen_addr`
    ("[::]:50053" -> "localhost:50053"; a specific host is kept)."""
    host, port = listen_addr.rsplit(":", 1)
    return f"localhost:{port}" if host in ("[::]", "0.0.0.0", "") else listen_addr


def grpcurl_flags(settings: Settings) -> str:
    """grpcurl's transport flags for our servers as `settings` reach them: the CA (and client
    certificate) AnalyticsService dials with, or -plaintext when TLS is off."""
    if settings.tls_ca_file:
        flags = f"-cacert {shlex.quote(settings.tls_ca_file)}"
        if settings.tls_client_cert_file:
            flags += (
                f" -cert {shlex.quote(settings.tls_client_cert_file)}"
                f" -key {shlex.quote(settings.tls_client_key_file)}"
            )
        return flags
    return "-insecure" if settings.tls_cert_file else "-plaintext"


def grpcurl_command() -> str:
    """How a user calls grpcurl from the current directory: `make` installs it into .venv/bin,
    which is not on PATH; elsewhere a `grpcurl` on PATH is assumed."""
    beside = Path(".venv/bin/grpcurl")
    return str(beside) if beside.exists() else "grpcurl"


def _env_name(attr: str) -> str:
    return attr.upper()


@dataclass(frozen=True)
class Settings:
    """Every knob the services read. The environment variable is the field name in upper case."""

    # Databases: one URL per owning service, falling back to DATABASE_URL.
    database_url: str = ""
    meter_database_url: str = ""
    vehicle_database_url: str = ""
    db_pool_size: int = 4
    db_connect_timeout_seconds: float = 5.0
    # Reads (README, Reliability): how long a read waits for a pooled connection before
    # RESOURCE_EXHAUSTED, how long any read statement may run (the call's deadline caps it
    # further), and how many expensive reads (sessions, consumption) run at once per service.
    db_pool_timeout_seconds: float = 1.0
    max_read_seconds: float = 10.0
    max_expensive_reads: int = 2
    # A List…Statuses page may be served from a copy read at most this long ago (0: never).
    status_page_max_age_ms: float = 1000.0

    # Where each server listens and where AnalyticsService dials.
    meter_listen_addr: str = DEFAULT_LISTEN_ADDRS["meter"]
    vehicle_listen_addr: str = DEFAULT_LISTEN_ADDRS["vehicle"]
    analytics_listen_addr: str = DEFAULT_LISTEN_ADDRS["analytics"]
    # The OCPP gateway's WebSocket endpoint (energy-ingest serve ocpp); it sends to METER_TARGET.
    ocpp_listen_addr: str = "[::]:9000"
    # Charge points' hashed passwords (services/ocpp/passwords.py); set, Basic auth is required.
    ocpp_passwords_file: str = ""
    # Charge points connected at once; a handshake beyond it is answered 503.
    ocpp_max_connections: int = 10_000
    meter_target: str = "localhost:50051"
    vehicle_target: str = "localhost:50052"
    # Where `energy-ingest report` dials AnalyticsService.
    analytics_target: str = "localhost:50053"

    # gRPC server bounds: each call holds a worker thread while it runs. The pool is derived
    # (server.pool_size): every admitted call has a thread, health and refusals have their own.
    grpc_max_workers: int = 0  # 0: GRPC_MAX_CONCURRENT_RPCS; set, it may not be below it
    grpc_max_concurrent_rpcs: int = 1024
    grpc_health_workers: int = 8  # threads kept for health and reflection, never for business
    max_calls_per_principal: int = 256  # 0: no limit
    max_calls_per_peer: int = 512  # auth off: per client IP address; 0: no limit
    # Longer than a device's reporting period (chargers report every minute on one stream).
    stream_idle_timeout_seconds: float = 120.0
    unary_message_timeout_seconds: float = 10.0  # a unary call's message comes with its headers
    # Connections (HTTP/2): streams, idle and age limits, keepalive and its enforcement.
    grpc_max_streams_per_connection: int = 1000
    grpc_max_connection_idle_seconds: float = 300.0
    grpc_max_connection_age_seconds: float = 3600.0
    grpc_max_connection_age_grace_seconds: float = 60.0
    grpc_keepalive_time_seconds: float = 60.0
    grpc_keepalive_timeout_seconds: float = 20.0
    grpc_min_ping_interval_seconds: float = 10.0
    grpc_max_ping_strikes: int = 2
    grpc_max_pending_requests: int = 20000
    grpc_max_message_bytes: int = 16 * 1024 * 1024
    shutdown_grace_seconds: float = 20.0

    # Group-commit writers (ingestion).
    writer_count: int = 2
    writer_batch_size: int = 50_000
    writer_flush_ms: float = 0.0
    writer_queue_readings: int = 200_000
    writer_enqueue_timeout_seconds: float = 10.0

    # Acknowledge only what survives a crash; 1 accepts synchronous_commit/fsync = off anyway.
    allow_unsafe_commit: bool = False

    # History (meter and vehicle readings): days kept, 0 = forever. Whole days past it are
    # dropped by the maintenance loop (every MAINTENANCE_INTERVAL_SECONDS, and at start), and
    # older readings are refused at ingest. Hourly rollups are kept ROLLUP_RETENTION_DAYS.
    retention_days: int = 0
    rollup_retention_days: int = 0
    maintenance_interval_seconds: float = 3600.0

    # Validation.
    clock_skew_seconds: float = 300.0
    max_rejections_listed: int = 100

    # Energy from registers: a register reading more than this after the previous one of its
    # entity has no known interval energy (the count restarts there).
    max_reading_interval_seconds: float = 900.0
    # A meter interval implying more power than this is implausible (e.g. Wh sent as kWh): the
    # correlation excludes it and flags it (MeterService).
    max_charger_power_kw: float = 1000.0

    # A device's stream is held until its end: bounded in bytes received and in streams open.
    max_device_stream_bytes: int = 16 * 1024 * 1024
    max_streams_per_device: int = 2

    # Correlation (AnalyticsService).
    session_gap_seconds: float = 300.0
    downstream_timeout_seconds: float = 5.0
    # ListChargerEfficiencies' outlier rule (AnalyticsService): chargers with at least
    # OUTLIER_MIN_SESSIONS sessions are compared; one is below the fleet when its efficiency is
    # under the median by more than OUTLIER_MAD_THRESHOLD x 1.4826 x MAD and by at least
    # OUTLIER_MIN_POINTS, and dropped when it fell by OUTLIER_DROP_POINTS from the window before.
    outlier_min_sessions: int = 3
    outlier_mad_threshold: float = 3.5
    outlier_min_points: float = 0.02
    outlier_drop_points: float = 0.015

    # Security (all off by default): TLS for the servers, mutual TLS when a client CA is set,
    # what AnalyticsService presents to the others, and bearer tokens.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    tls_ca_file: str = ""
    tls_client_cert_file: str = ""
    tls_client_key_file: str = ""
    auth_tokens_file: str = ""

    # Prometheus metrics over HTTP (host:port, e.g. 0.0.0.0:9464); off when empty.
    metrics_addr: str = ""
    # A second, plaintext port (host:port) serving grpc.health.v1.Health and nothing else, with
    # no credentials asked: for probes that cannot present a client certificate (kubelet's gRPC
    # probes under mutual TLS). Off when empty.
    health_listen_addr: str = ""
    # Traces over OTLP/gRPC to this collector (e.g. http://otel-collector:4317); off when empty.
    otel_exporter_otlp_endpoint: str = ""
    # The access log: at most this many call lines a second per process; 0 turns it off.
    access_log_lines_per_second: float = 100.0

    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(_env_name(f.name))
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        settings = cls(**values)
        settings.validate()
        return settings

    @classmethod
    def env_names(cls) -> frozenset[str]:
        """Every environment variable the settings know (deploy files are checked against it)."""
        return frozenset(_env_name(f.name) for f in fields(cls))

    def validate(self) -> None:
        positive = (
            "grpc_max_concurrent_rpcs",
            "grpc_health_workers",
            "stream_idle_timeout_seconds",
            "unary_message_timeout_seconds",
            "grpc_max_streams_per_connection",
            "grpc_max_connection_idle_seconds",
            "grpc_max_connection_age_seconds",
            "grpc_keepalive_time_seconds",
            "grpc_keepalive_timeout_seconds",
            "grpc_max_message_bytes",
            "writer_count",
            "writer_batch_size",
            "writer_queue_readings",
            "db_pool_size",
            "max_device_stream_bytes",
            "max_streams_per_device",
            "db_pool_timeout_seconds",
            "max_read_seconds",
            "max_expensive_reads",
            "max_reading_interval_seconds",
            "max_charger_power_kw",
            "session_gap_seconds",
            "outlier_min_sessions",
            "outlier_mad_threshold",
            "outlier_min_points",
            "outlier_drop_points",
            "ocpp_max_connections",
            "maintenance_interval_seconds",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env_name(name)} must be positive, got {getattr(self, name)}")
        not_negative = (
            "access_log_lines_per_second",
            "grpc_max_workers",
            "max_calls_per_principal",
            "max_calls_per_peer",
            "grpc_max_connection_age_grace_seconds",
            "grpc_min_ping_interval_seconds",
            "grpc_max_ping_strikes",
            "status_page_max_age_ms",
            "retention_days",
            "rollup_retention_days",
        )
        for name in not_negative:
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"{_env_name(name)} may not be negative, got {getattr(self, name)}"
                )
        if self.rollup_retention_days and not (
            self.retention_days and self.rollup_retention_days >= self.retention_days
        ):
            # Work served from rollups must find them wherever raw history still is.
            raise ConfigError(
                "ROLLUP_RETENTION_DAYS must be 0 (keep forever) or at least RETENTION_DAYS, got "
                f"{self.rollup_retention_days} with RETENTION_DAYS={self.retention_days or 'unset'}"
            )
        for name in ("metrics_addr", "health_listen_addr"):
            address = getattr(self, name)
            host, _, port = address.rpartition(":")
            if address and (not host or not port.isdigit() or int(port) > 65535):
                # A bare port would bind every interface: the host is asked for, never assumed.
                raise ConfigError(
                    f"{_env_name(name)} must be host:port (port 0-65535), got {address!r}"
                )
        if 0 < self.grpc_max_workers < self.grpc_max_concurrent_rpcs:
            # Admitted calls beyond the pool would wait in its queue, unanswered: overload must
            # be an answer (RESOURCE_EXHAUSTED), never a silent queue.
            raise ConfigError(
                f"GRPC_MAX_WORKERS ({self.grpc_max_workers}) may not be below "
                f"GRPC_MAX_CONCURRENT_RPCS ({self.grpc_max_concurrent_rpcs}): every admitted call "
                "needs a thread (0 derives the pool from GRPC_MAX_CONCURRENT_RPCS)"
            )
        for name in ("database_url", "meter_database_url", "vehicle_database_url"):
            url = getattr(self, name)
            scheme, separator, _ = url.partition("://")
            if url and (not separator or scheme not in ("postgresql", "postgres")):
                # The URL itself is not repeated: it may hold a password.
                raise ConfigError(
                    f"{_env_name(name)} must be a libpq URI, postgresql://user@host:port/database"
                )
        if self.max_expensive_reads >= 2 * self.db_pool_size:
            raise ConfigError(
                f"MAX_EXPENSIVE_READS ({self.max_expensive_reads}) must be below the read "
                f"connections (2 x DB_POOL_SIZE = {2 * self.db_pool_size}): cheap reads keep some"
            )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("TLS_CERT_FILE and TLS_KEY_FILE go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ConfigError(
                "TLS_CLIENT_CA_FILE (mutual TLS) needs TLS_CERT_FILE and TLS_KEY_FILE"
            )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {self.log_level}"
            )

    def listen_addr(self, service: str) -> str:
        return str(getattr(self, f"{service}_listen_addr"))

    @staticmethod
    def listen_variable(service: str) -> str:
        """The environment variable that sets `service`'s address, e.g. METER_LISTEN_ADDR."""
        return _env_name(f"{service}_listen_addr")

    def service_database_url(self, service: str) -> str:
        """The libpq URL of a service's own database; ConfigError when none is configured."""
        url = getattr(self, f"{service}_database_url") or self.database_url
        if not url:
            raise ConfigError(
                f"no database configured for {service}: set {service.upper()}_DATABASE_URL or "
                "DATABASE_URL (or use `energy-ingest run`, which starts an embedded PostgreSQL)"
            )
        return str(url)


def _parse(name: str, kind: Any, raw: str) -> Any:
    kind_name = kind if isinstance(kind, str) else kind.__name__
    if kind_name == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(
            f"{_env_name(name)} must be 1/0, true/false, yes/no or on/off, got {raw!r}"
        )
    try:
        if kind_name == "int":
            return int(raw)
        if kind_name == "float":
            value = float(raw)
            if not math.isfinite(value):  # nan passes every bound check, inf never expires
                raise ConfigError(f"{_env_name(name)} must be a finite number, got {raw!r}")
            return value
    except ValueError:
        raise ConfigError(f"{_env_name(name)} must be a {kind_name}, got {raw!r}") from None
    return raw
