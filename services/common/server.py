"""The one server bootstrap all three services share: bounded grpc.server, health,
reflection, message limits, and SIGTERM/SIGINT → NOT_SERVING → drain → stop."""

from __future__ import annotations

import errno
import itertools
import logging
import signal
import socket
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.access import AccessLog
from services.common.admission import CallGuard, IdleWatchdog, pool_size
from services.common.audit import HandlerMemo, MethodNames
from services.common.config import Settings
from services.common.errors import ConfigError, Undecodable
from services.common.health import Health
from services.common.logs import capture_stderr_as_json
from services.common.metrics import MetricsEndpoint, ServiceMetrics
from services.common.security import OPEN, Authorizer, server_credentials
from services.common.tracing import Tracing

log = logging.getLogger(__name__)


class Component(Protocol):
    """What a service package hands to the bootstrap."""

    service_name: str  # full proto name, e.g. energy.meter.v1.MeterService
    metrics: ServiceMetrics
    tracing: Tracing | None  # None when OTEL_EXPORTER_OTLP_ENDPOINT is unset

    def register(self, server: grpc.Server) -> None: ...

    def start(self, health: HealthReporter) -> None: ...

    def stop(self) -> None: ...


class HealthReporter:
    """Sets the health of the component's service (and the server as a whole), on the main
    port and on the probe port when there is one."""

    def __init__(
        self,
        servicer: Health | health.HealthServicer,
        service_name: str,
        probe: Health | None = None,
    ) -> None:
        self._servicers: list[Health | health.HealthServicer] = [servicer]
        if probe is not None:
            self._servicers.append(probe)
        self._service_name = service_name

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for servicer in self._servicers:
            servicer.set(self._service_name, status)
            servicer.set("", status)


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: Health
    component: Component
    guard: CallGuard | None = None
    metrics: MetricsEndpoint | None = None
    health_server: ProbeServer | None = None

    @property
    def health_port(self) -> int | None:
        """HEALTH_LISTEN_ADDR's port (the one bound, for port 0); None without one."""
        return None if self.health_server is None else self.health_server.port

    def shutdown(self, grace: float) -> None:
        """NOT_SERVING first so balancers steer away, then drain in-flight calls, then stop."""
        self.health.enter_graceful_shutdown()
        if self.health_server is not None:
            self.health_server.servicer.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.guard is not None:
            self.guard.watchdog.stop()
        self.component.stop()
        if self.component.tracing is not None:
            self.component.tracing.shutdown()
        if self.metrics is not None:
            self.metrics.close()
        if self.health_server is not None:
            # Last: a probe sees NOT_SERVING through the drain, then the port closes.
            self.health_server.stop()


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def load(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:  # DecodeError and whatever a corrupt buffer raises
            return Undecodable(error)

    return load


class UndecodableRequests(grpc.ServerInterceptor):
    """gRPC answers INTERNAL when a request does not decode; that is the client's mistake, so
    our methods receive an Undecodable instead and answer INVALID_ARGUMENT (errors.py)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith("/energy."):
            return handler
        if handler.request_deserializer is None:
            return handler
        return self._memo.get(
            method,
            handler,
            lambda h: h._replace(request_deserializer=_tolerant(h.request_deserializer)),
        )

    def __init__(self) -> None:
        self._memo = HandlerMemo()


class AddressUnavailable(ConfigError):
    """A server cannot listen where it was told to: another process holds the address, or the
    address is not this host's. Raised before the server takes any call."""

    def __init__(self, address: str, reason: str, variable: str | None = None) -> None:
        super().__init__(f"cannot listen on {address}: {reason}")
        self.address = address
        # The setting that names the address when it is not the service's own LISTEN_ADDR.
        self.variable = variable


MAX_PORT = 65_535
LOOPBACKS = ("127.0.0.1", "::1")
_BIND_REASONS = {
    errno.EADDRINUSE: "address already in use (is another server running there?)",
    errno.EADDRNOTAVAIL: "not an address of this host",
    errno.EACCES: "permission denied",
}


def ensure_address_free(listen_addr: str, variable: str | None = None) -> None:
    """Binds (and releases) every address `listen_addr` ("host:port", "[::]:port") resolves to,
    so a taken port is reported with its reason before anything starts. Port 0 is always free.
    Raises AddressUnavailable (naming `variable`, the setting, when given). The lasting guard
    is SO_REUSEPORT off (server_options): without it the kernel would let a second server share
    the port and split the calls between both."""
    host, _, port_text = listen_addr.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
        if not 0 <= port <= MAX_PORT:
            raise ValueError(f"port {port} is not within 0..{MAX_PORT}")
        # gRPC binds "localhost" on both loopbacks whatever the resolver says (and settles for
        # one when the other is taken): probe both.
        hosts = LOOPBACKS if host == "localhost" else (None if host in ("", "*") else host,)
        infos = [
            info
            for name in hosts
            for info in socket.getaddrinfo(
                name, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        ]
    except (ValueError, socket.gaierror) as error:
        raise AddressUnavailable(
            listen_addr, f"not a host:port address ({error})", variable
        ) from None
    if port == 0:
        return
    for family, kind, protocol, _, sockaddr in infos:
        with socket.socket(family, kind, protocol) as probe:
            # As gRPC binds: SO_REUSEADDR (a port in TIME_WAIT is free), and a wildcard IPv6
            # address also takes IPv4.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                probe.bind(sockaddr)
            except OSError as error:
                if host == "localhost" and error.errno == errno.EADDRNOTAVAIL:
                    continue  # a host without IPv6: gRPC will not bind ::1 either
                reason = _BIND_REASONS.get(error.errno or 0, error.strerror or str(error))
                raise AddressUnavailable(listen_addr, reason, variable) from None


def server_options(settings: Settings) -> list[tuple[str, int]]:
    return [
        # gRPC sets SO_REUSEPORT by default: a second server on a busy port would start without
        # a word and the kernel would split calls between the two processes.
        ("grpc.so_reuseport", 0),
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        # Thousands of streams opened at once would otherwise be cancelled before a handler runs.
        ("grpc.server.max_pending_requests", settings.grpc_max_pending_requests),
        # A call waits for its handler thread at most this long before gRPC cancels it (default
        # 30 s); 10,000 streams opened at once are taken on at ~500-1,000 a second.
        ("grpc.server_max_unrequested_time_in_server", 300),
        # Connections (README, "Configuration"): how many calls one connection may carry at
        # once, when an idle or old one is closed (GOAWAY, then the grace for its calls), and
        # keepalive: the server pings to find dead peers, and a client pinging more often than
        # the minimum interval is sent GOAWAY after max_ping_strikes pings.
        ("grpc.max_concurrent_streams", settings.grpc_max_streams_per_connection),
        ("grpc.max_connection_idle_ms", _ms(settings.grpc_max_connection_idle_seconds)),
        ("grpc.max_connection_age_ms", _ms(settings.grpc_max_connection_age_seconds)),
        (
            "grpc.max_connection_age_grace_ms",
            _ms(settings.grpc_max_connection_age_grace_seconds),
        ),
        ("grpc.keepalive_time_ms", _ms(settings.grpc_keepalive_time_seconds)),
        ("grpc.keepalive_timeout_ms", _ms(settings.grpc_keepalive_timeout_seconds)),
        ("grpc.keepalive_permit_without_calls", 1),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            _ms(settings.grpc_min_ping_interval_seconds),
        ),
        ("grpc.http2.max_ping_strikes", settings.grpc_max_ping_strikes),
    ]


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def worker_count(settings: Settings) -> int:
    """The server's thread pool (admission.pool_size): at least the admitted calls, so overload
    is an answer (RESOURCE_EXHAUSTED), never a call waiting unanswered for a thread."""
    return pool_size(
        settings.grpc_max_workers,
        settings.grpc_max_concurrent_rpcs,
        settings.grpc_health_workers,
    )


def call_guard(settings: Settings) -> CallGuard:
    return CallGuard(
        Authorizer.from_settings(settings),
        IdleWatchdog(settings.stream_idle_timeout_seconds, settings.unary_message_timeout_seconds),
        max_calls=settings.grpc_max_concurrent_rpcs,
        health_calls=settings.grpc_health_workers,
        per_principal=settings.max_calls_per_principal,
        per_peer=settings.max_calls_per_peer,
    )


@dataclass
class ProbeServer:
    """The HEALTH_LISTEN_ADDR server, its port, its statuses and its guard."""

    server: grpc.Server
    port: int
    servicer: Health
    guard: CallGuard

    def stop(self) -> None:
        self.server.stop(None).wait()
        self.guard.watchdog.stop()


def start_health_server(settings: Settings) -> ProbeServer | None:
    """HEALTH_LISTEN_ADDR: the service's health on a plaintext port of its own, which asks no
    credentials and serves nothing else (probes that cannot present a client certificate):
    Check (Health, without Watch), and reflection of the health service so grpcurl can ask.
    Its calls are guarded as health is on the main port: at most GRPC_HEALTH_WORKERS at once (then
    RESOURCE_EXHAUSTED at once), and one that sends no message within
    UNARY_MESSAGE_TIMEOUT_SECONDS is ended, so half-open calls cannot hold the port. None when
    the setting is unset; AddressUnavailable when the address is taken."""
    address = settings.health_listen_addr
    if not address:
        return None
    ensure_address_free(address, "HEALTH_LISTEN_ADDR")
    guard = CallGuard(
        OPEN,
        IdleWatchdog(settings.stream_idle_timeout_seconds, settings.unary_message_timeout_seconds),
        max_calls=1,  # no business calls: the port serves none
        health_calls=settings.grpc_health_workers,
        per_principal=0,
        per_peer=0,
    )
    # A thread for every admitted call, and a few for the refusals on top.
    workers = settings.grpc_health_workers + 4
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc-health"),
        options=[("grpc.so_reuseport", 0)],
        maximum_concurrent_rpcs=workers,
        interceptors=[guard],
    )
    servicer = Health(watch=False)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    reflection.enable_server_reflection((health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        guard.watchdog.stop()
        raise AddressUnavailable(
            address, "the address is taken or is not this host's", "HEALTH_LISTEN_ADDR"
        )
    server.start()
    return ProbeServer(server, port, servicer, guard)


def call_interceptors(
    settings: Settings, component: Component, guard: CallGuard
) -> list[grpc.ServerInterceptor]:
    """Outermost first. The span (when tracing is on) is current for all the rest, so the
    access line and every line the call logs carry its trace id; it is outermost because the
    instrumentation makes a new handler for every call, and an interceptor outside it would
    have to wrap that handler anew each time (HandlerMemo). Metrics count every call, those the
    guard refuses too; the guard admits, then the handlers run with their method's name known
    and requests that do not decode answered INVALID_ARGUMENT."""
    interceptors: list[grpc.ServerInterceptor] = []
    if component.tracing is not None:
        interceptors.append(component.tracing.server_interceptor())
    interceptors.append(component.metrics.interceptor())
    if settings.access_log_lines_per_second > 0:
        interceptors.append(AccessLog(settings.access_log_lines_per_second))
    return [*interceptors, guard, MethodNames(), UndecodableRequests()]


def start_server(settings: Settings, component: Component, listen_addr: str) -> RunningServer:
    workers = worker_count(settings)
    guard = call_guard(settings)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc-worker"),
        options=server_options(settings),
        # CallGuard admits business calls up to GRPC_MAX_CONCURRENT_RPCS and health up to
        # GRPC_HEALTH_WORKERS; grpc's own limit, at the pool's size, is only a backstop.
        maximum_concurrent_rpcs=workers,
        interceptors=call_interceptors(settings, component, guard),
    )
    component.register(server)
    health_servicer = Health()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (component.service_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    HealthReporter(health_servicer, component.service_name).set_serving(False)
    credentials = server_credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(listen_addr)
        else:
            port = server.add_secure_port(listen_addr, credentials)
    except RuntimeError:  # gRPC says only "Failed to bind" (and logs the reason itself)
        port = 0
    if port == 0:
        raise AddressUnavailable(listen_addr, "the address is taken or is not this host's")
    endpoint = None
    health_server = None
    try:
        if settings.metrics_addr:
            try:
                endpoint = component.metrics.serve(settings.metrics_addr)
            except (OSError, ValueError, OverflowError) as error:
                raise AddressUnavailable(
                    settings.metrics_addr, f"METRICS_ADDR: {error}", "METRICS_ADDR"
                ) from error
        health_server = start_health_server(settings)
        reporter = HealthReporter(
            health_servicer,
            component.service_name,
            None if health_server is None else health_server.servicer,
        )
        reporter.set_serving(False)
        component.start(reporter)
    except BaseException:
        server.stop(None)
        if endpoint is not None:
            endpoint.close()
        if health_server is not None:
            health_server.stop()
        raise
    server.start()
    return RunningServer(server, port, health_servicer, component, guard, endpoint, health_server)


def serve_until_signalled(settings: Settings, component: Component, listen_addr: str) -> None:
    """Runs the server in the main thread until SIGTERM or SIGINT, then drains and returns."""
    stop = threading.Event()
    signals = itertools.count()

    def on_signal(signum: int, _frame: object) -> None:
        # Ctrl-C under `energy-ingest run` brings SIGINT (the terminal) and SIGTERM (the runner)
        # at once, and a handler can be re-entered: next() on a count is atomic, so the drain is
        # logged once.
        if next(signals) == 0:
            log.info("signal received, draining", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    running = start_server(settings, component, listen_addr)
    # Start-up refusals above are one plain line for a human; from here on, every line is JSON.
    capture_stderr_as_json()
    host = listen_addr.rsplit(":", 1)[0]
    log.info(
        "listening",
        extra={
            "address": f"{host}:{running.port}",
            "port": running.port,
            "grpc_service": component.service_name,
            "max_workers": worker_count(settings),
            "max_concurrent_rpcs": settings.grpc_max_concurrent_rpcs,
            # The ports HEALTH_LISTEN_ADDR and METRICS_ADDR got (port 0 picks one), or null.
            "health_port": running.health_port,
            "metrics_port": None if running.metrics is None else running.metrics.port,
        },
    )
    # Wake up now and then: a signal delivered to one of gRPC's threads only runs its Python
    # handler once the main thread runs again, and an untimed wait may never return.
    while not stop.wait(0.25):
        pass
    running.shutdown(settings.shutdown_grace_seconds)
    log.info("stopped")
