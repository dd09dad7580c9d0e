"""Traces (OpenTelemetry), exported over OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT is set
(e.g. http://collector:4317; https:// for TLS), off otherwise.

Every call a server takes is a span (`opentelemetry-instrumentation-grpc`'s server
interceptor; health checks are left out), and AnalyticsService's calls to the other two are
client spans whose context travels in the call's metadata (W3C `traceparent`), so one
GetVehiclePerformance is one trace across the three services. Every log line written while a
span is current carries its `trace_id` and `span_id` (logs.py). The exporter's other standard
variables (OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_BSP_*) apply as
the SDK documents them; OTEL_SERVICE_NAME, when set, replaces `energy-ingest-<service>`.

A provider per service, not the global one: several servers in one process (the tests) each
report as themselves."""

from __future__ import annotations

import os

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import (
    client_interceptor,
    filters,
    grpcext,
    server_interceptor,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from services.common.config import Settings


class Tracing:
    """A service's tracer provider and the interceptors that make its spans."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider

    @classmethod
    def from_settings(cls, settings: Settings, service: str) -> Tracing | None:
        """None when OTEL_EXPORTER_OTLP_ENDPOINT is unset: no spans are made at all."""
        endpoint = settings.otel_exporter_otlp_endpoint
        if not endpoint:
            return None
        name = os.environ.get("OTEL_SERVICE_NAME") or f"energy-ingest-{service}"
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        # Spans leave in batches from a thread of their own: a slow or absent collector costs
        # the calls nothing (a full queue drops spans, never waits).
        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
            )
        )
        return cls(provider)

    def server_interceptor(self) -> grpc.ServerInterceptor:
        return server_interceptor(
            tracer_provider=self.provider, filter_=filters.negate(filters.health_check())
        )

    def traced_channel(self, channel: grpc.Channel) -> grpc.Channel:
        """`channel` with a client span around each call, its context sent in the call's
        metadata (the instrumentation's own interceptor interface, not grpc's)."""
        traced: grpc.Channel = grpcext.intercept_channel(
            channel, client_interceptor(tracer_provider=self.provider)
        )
        return traced

    def shutdown(self) -> None:
        """Exports what is left (bounded by the exporter's timeout)."""
        self.provider.shutdown()
