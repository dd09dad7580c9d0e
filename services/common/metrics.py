"""Prometheus metrics of one service (prometheus-client), served over HTTP at METRICS_ADDR
(host:port; off when unset) on a port of their own, apart from gRPC.

- `grpc_server_started_total`, `grpc_server_handled_total` (with `grpc_code`) and the
  `grpc_server_handling_seconds` histogram, labelled `grpc_type` (unary, client_stream),
  `grpc_service` and `grpc_method`: the names go-grpc-prometheus and py-grpc-prometheus use,
  so their dashboards work as they are (codes are gRPC's names: `OK`, `INVALID_ARGUMENT`…).
  Every unary and client-streaming call is counted (all the services' own methods, and
  health checks), those the admission guard refused (RESOURCE_EXHAUSTED, UNAUTHENTICATED…)
  too; a call the client cancelled or let expire counts as CANCELLED or DEADLINE_EXCEEDED.
- `energy_ingest_readings_total{service, outcome}`: readings of answered ingest calls by what
  became of them (`accepted`, `duplicate`, `conflict`, `rejected`: a unary reading refused
  with INVALID_ARGUMENT is one rejected); a call that fails otherwise (cancelled, refused, the
  database down) counts nothing, as its caller learns nothing of its readings.
- `energy_ingest_rejections_total{service, field}`: the rejected readings above by the field
  named (the reading's field, never its index: a bounded set of labels).
- `energy_ingest_writer_batch_readings` and `energy_ingest_writer_commit_seconds`
  (histograms, per committed group-commit batch, a reconnection included),
  `energy_ingest_writer_queue_readings` (readings waiting for a writer),
  `energy_ingest_streams_open` (IngestReadings streams being read) and
  `energy_ingest_database_up` (1 while the health probe reaches the database), all with
  `service`.
- AnalyticsService's calls to the others: `grpc_client_handled_total{grpc_code}` and the
  `grpc_client_handling_seconds` histogram by `grpc_type`, `grpc_service`, `grpc_method`.

Each service has its own registry, so that several servers in one process (the tests) never
share or clash."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from services.common import access
from services.common.access import call_code
from services.common.audit import HandlerMemo

# No `*_created` series beside each counter and histogram: nothing here reads them.
disable_created_metrics()

# Seconds: from a 1 ms status read to a 30 s stream.
HANDLING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Readings per batch: one reading (a unary call on an idle writer) up to WRITER_BATCH_SIZE.
BATCH_BUCKETS = (1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 50000)
GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")
OUTCOMES = ("accepted", "duplicate", "conflict", "rejected")


class MetricsEndpoint:
    """The HTTP server of /metrics, on its own thread."""

    def __init__(self, address: str, registry: CollectorRegistry) -> None:
        host, _, port = address.rpartition(":")
        self._server, self._thread = start_http_server(
            int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry
        )
        self.port: int = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class ServiceMetrics:
    """The metrics of one service (`service`: meter, vehicle or analytics)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self._started = Counter(
            "grpc_server_started", "RPCs started on the server.", GRPC_LABELS,
            registry=self.registry,
        )  # fmt: skip
        self._handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, whatever their status code.",
            (*GRPC_LABELS, "grpc_code"),
            registry=self.registry,
        )
        self._seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from an RPC's start to its answer, in seconds.",
            GRPC_LABELS,
            buckets=HANDLING_BUCKETS,
            registry=self.registry,
        )
        self._readings = Counter(
            "energy_ingest_readings",
            "Readings of committed requests, by what became of them.",
            ("service", "outcome"),
            registry=self.registry,
        )
        self._rejections = Counter(
            "energy_ingest_rejections",
            "Rejected readings, by the field whose rule they broke.",
            ("service", "field"),
            registry=self.registry,
        )

        self._batch = Histogram(
            "energy_ingest_writer_batch_readings",
            "Readings per committed group-commit batch.",
            ("service",),
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self._commit = Histogram(
            "energy_ingest_writer_commit_seconds",
            "Time to write and commit one batch, in seconds.",
            ("service",),
            buckets=HANDLING_BUCKETS,
            registry=self.registry,
        )
        self._queue = Gauge(
            "energy_ingest_writer_queue_readings",
            "Readings waiting for a writer.",
            ("service",),
            registry=self.registry,
        )
        self._streams = Gauge(
            "energy_ingest_streams_open",
            "IngestReadings streams being read.",
            ("service",),
            registry=self.registry,
        )
        self._database_up = Gauge(
            "energy_ingest_database_up",
            "1 while the health probe reaches the database, else 0.",
            ("service",),
            registry=self.registry,
        )
        self._client_handled = Counter(
            "grpc_client_handled",
            "RPCs this service made to the others, by status code.",
            (*GRPC_LABELS, "grpc_code"),
            registry=self.registry,
        )
        self._client_seconds = Histogram(
            "grpc_client_handling_seconds",
            "Time of the RPCs this service made to the others, in seconds.",
            GRPC_LABELS,
            buckets=HANDLING_BUCKETS,
            registry=self.registry,
        )

        # Every outcome's series exists from the start, at 0: a rate() over the first readings
        # after a restart sees them arrive.
        for outcome in OUTCOMES:
            self._readings.labels(service, outcome)

    def observe_commit(self, readings: int, seconds: float) -> None:
        self._batch.labels(self.service).observe(readings)
        self._commit.labels(self.service).observe(seconds)

    def watch_queue(self, queued_readings: Callable[[], int]) -> None:
        self._queue.labels(self.service).set_function(queued_readings)

    def set_database_up(self, up: bool) -> None:
        self._database_up.labels(self.service).set(1 if up else 0)

    def stream_open(self) -> Any:
        """A context manager: the stream counts as open inside it."""
        return self._streams.labels(self.service).track_inprogress()

    def client_interceptor(self) -> grpc.UnaryUnaryClientInterceptor:
        return _ClientTiming(self)

    def observe_client_call(self, method: str, code: str, seconds: float) -> None:
        service, _, name = method.lstrip("/").rpartition("/")
        labels = ("unary", service, name)
        self._client_handled.labels(*labels, code).inc()
        self._client_seconds.labels(*labels).observe(seconds)

    def count_readings(
        self, *, accepted: int = 0, duplicates: int = 0, conflicts: int = 0, rejected: int = 0
    ) -> None:
        for outcome, count in (
            ("accepted", accepted),
            ("duplicate", duplicates),
            ("conflict", conflicts),
            ("rejected", rejected),
        ):
            if count:
                self._readings.labels(self.service, outcome).inc(count)
        access.note_readings(accepted + duplicates + conflicts + rejected)

    def count_rejections(self, fields: Iterable[str]) -> None:
        for field in fields:
            self._rejections.labels(self.service, field).inc()

    def serve(self, address: str) -> MetricsEndpoint:
        """Starts /metrics at `address` (host:port, port 0 for any); OSError when it is taken."""
        return MetricsEndpoint(address, self.registry)

    def interceptor(self) -> grpc.ServerInterceptor:
        return _Timing(self)

    def timed(
        self, behavior: Callable[..., Any], labels: tuple[str, str, str]
    ) -> Callable[..., Any]:
        """`behavior` counted and timed under `labels` (grpc_type, grpc_service, grpc_method)."""
        started = self._started.labels(*labels)
        seconds = self._seconds.labels(*labels)
        handled = self._handled

        def timed(request: Any, context: grpc.ServicerContext) -> Any:
            started.inc()
            began = time.perf_counter()
            code = "UNKNOWN"  # an exception our handlers did not turn into a status
            try:
                answer = behavior(request, context)
                code = call_code(context, raised=False)
                return answer
            except Exception:
                code = call_code(context, raised=True)
                raise
            finally:
                handled.labels(*labels, code).inc()
                seconds.observe(time.perf_counter() - began)

        return timed


class _Timing(grpc.ServerInterceptor):
    """Wraps each handler with a single response (every kind the services serve, once the
    admission guard made them request-streaming)."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics
        self._memo = HandlerMemo()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return self._memo.get(method, handler, lambda h: self._wrap(method, h))

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        service, _, name = method.lstrip("/").rpartition("/")
        labels = (_grpc_type(service, name, handler), service, name)
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._metrics.timed(handler.unary_unary, labels))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._metrics.timed(handler.stream_unary, labels))
        return handler


def _grpc_type(service: str, name: str, handler: grpc.RpcMethodHandler) -> str:
    """The method's kind as its contract declares it: the admission guard serves every call
    through a request-streaming handler, so the handler does not tell a unary call apart."""
    try:
        declared = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:
        streaming = (handler.request_streaming, handler.response_streaming)
    else:
        streaming = (declared.client_streaming, declared.server_streaming)
    return {
        (False, False): "unary",
        (True, False): "client_stream",
        (False, True): "server_stream",
        (True, True): "bidi_stream",
    }[streaming]


class _ClientTiming(grpc.UnaryUnaryClientInterceptor):
    """Times each unary call made through the channel (AnalyticsService's downstream calls)."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: Any, request: Any
    ) -> Any:
        began = time.perf_counter()
        outcome = continuation(client_call_details, request)  # returns once answered
        code = outcome.code()
        self._metrics.observe_client_call(
            client_call_details.method,
            "UNKNOWN" if code is None else code.name,
            time.perf_counter() - began,
        )
        return outcome
