"""grpc.health.v1.Health, served from a map of statuses.

grpc's own HealthServicer (non-blocking form) holds its lock while it sends a Watch update, and
that send waits for gRPC's polling thread; when the polling thread is meanwhile running a
cancelled Watch's callback, which takes the same lock, both wait for ever: a burst of Watch
calls cancelled at once left Check unanswered and the server unable to stop. Here no lock is
held while anything is sent: Check reads the map (swapped whole on each change), and a Watch is
a generator that waits for a change on a condition and yields outside it. A Watch holds a
worker thread while it is open; the admission guard counts it among the health calls
(GRPC_HEALTH_WORKERS), so watchers cannot take business threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
# How often an idle Watch looks whether its call is still on (a cancelled one ends then).
WATCH_POLL_SECONDS = 1.0


class Health(health_pb2_grpc.HealthServicer):
    """Statuses by service name ("" for the server as a whole). `watch=False` answers Watch
    UNIMPLEMENTED (the plaintext probe port: Check is what probes ask)."""

    def __init__(self, *, watch: bool = True) -> None:
        self._statuses: dict[str, int] = {}
        self._changed = threading.Condition()
        self._watch = watch
        self._shutting_down = False

    def set(self, service: str, status: int) -> None:
        with self._changed:
            if self._shutting_down:  # NOT_SERVING stays until the end
                return
            self._statuses = {**self._statuses, service: status}
            self._changed.notify_all()

    def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING from now on, whatever is set later."""
        with self._changed:
            self._shutting_down = True
            self._statuses = {service: NOT_SERVING for service in self._statuses}
            self._changed.notify_all()

    def Check(self, request: Any, context: grpc.ServicerContext) -> Any:
        status = self._statuses.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        if not self._watch:
            context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                "this port answers Check only; Watch the service's main port",
            )
        last = None
        while context.is_active():
            with self._changed:
                status = self._statuses.get(request.service, SERVICE_UNKNOWN)
                if status == last:
                    self._changed.wait(WATCH_POLL_SECONDS)
                    continue
            last = status
            yield health_pb2.HealthCheckResponse(status=status)
