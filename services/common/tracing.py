"""Traces (OpenTelemetry), exported over OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT is set
(e.g. http://collector:4317; https:// for TLS), off otherwise.

Every call a server takes is a span (health checks left out), and AnalyticsService's calls to
the other two are client spans (`opentelemetry-instrumentation-grpc`'s client interceptor)
whose context travels in the call's metadata (W3C `traceparent`), so one GetVehiclePerformance
is one trace across the three services. The server spans are the instrumentation's (same name,
kind and attributes), made by ServerSpans: the instrumentation's own server interceptor builds
a new handler for every call in gRPC's one polling thread, which cost 40 % of unary ingestion
throughput where ServerSpans, wrapping each method once, costs a few percent (make bench,
observability). Every log line written while a
span is current carries its `trace_id` and `span_id` (logs.py). The exporter's other standard
variables (OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_BSP_*) apply as
the SDK documents them; OTEL_SERVICE_NAME, when set, replaces `energy-ingest-<service>`.

A provider per service, not the global one: several servers in one process (the tests) each
report as themselves."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import client_interceptor, grpcext
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from services.common.access import HEALTH_PREFIX, call_code
from services.common.audit import HandlerMemo
from services.common.config import Settings

# How long a stopping service waits for its last spans to leave.
SHUTDOWN_SECONDS = 3.0

# A server span's status is an error for these codes only (OpenTelemetry's gRPC conventions):
# the others are the caller's doing.
SERVER_ERRORS = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)


class Tracing:
    """A service's tracer provider and the interceptors that make its spans."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider

    @classmethod
    def from_settings(cls, settings: Settings, service: str) -> Tracing | None:
        """None when neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
        is set: no spans are made at all. The exporter reads its settings as the SDK documents
        them (endpoint, OTEL_EXPORTER_OTLP_INSECURE or an http:// scheme for plaintext,
        headers, certificate)."""
        if not (
            settings.otel_exporter_otlp_endpoint
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        ):
            return None
        name = os.environ.get("OTEL_SERVICE_NAME") or f"energy-ingest-{service}"
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        # Spans leave in batches from a thread of their own: a slow or absent collector costs
        # the calls nothing (a full queue drops spans, never waits).
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def server_interceptor(self) -> grpc.ServerInterceptor:
        return ServerSpans(self.provider.get_tracer("energy-ingest"))

    def traced_channel(self, channel: grpc.Channel) -> grpc.Channel:
        """`channel` with a client span around each call, its context sent in the call's
        metadata (the instrumentation's own interceptor interface, not grpc's)."""
        traced: grpc.Channel = grpcext.intercept_channel(
            channel, client_interceptor(tracer_provider=self.provider)
        )
        return traced

    def shutdown(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Exports what is left, for at most `timeout` seconds: with the collector down, the
        SDK would retry for up to 30 s a batch, past a pod's termination grace; spans still
        queued then are lost, as they would be in a crash."""
        stopping = threading.Thread(
            target=self.provider.shutdown, name="tracing-shutdown", daemon=True
        )
        stopping.start()
        stopping.join(timeout)


class ServerSpans(grpc.ServerInterceptor):
    """A server span around each call but health checks, named by the full method, with
    `rpc.system`, `rpc.service`, `rpc.method` and `rpc.grpc.status_code`, its parent taken
    from the call's metadata (`traceparent`), current while the call runs. Each method's
    handler is wrapped once (HandlerMemo, as the other interceptors) and the span is made in
    the worker thread that serves the call."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._memo = HandlerMemo()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        return self._memo.get(method, handler, lambda h: self._wrap(method, h))

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._traced(handler.unary_unary, method))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._traced(handler.stream_unary, method))
        return handler

    def _traced(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        service, _, name = method.lstrip("/").rpartition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        tracer = self._tracer

        def traced(request: Any, context: grpc.ServicerContext) -> Any:
            parent = propagate.extract(dict(context.invocation_metadata() or ()))
            with tracer.start_as_current_span(
                method,
                context=parent,
                kind=trace.SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                raised = True
                try:
                    answer = behavior(request, context)
                    raised = False
                    return answer
                finally:
                    code = call_code(context, raised=raised)
                    span.set_attribute("rpc.grpc.status_code", grpc.StatusCode[code].value[0])
                    if code in SERVER_ERRORS:
                        span.set_status(trace.Status(trace.StatusCode.ERROR, code))

        return traced
