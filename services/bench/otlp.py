"""An OTLP/gRPC trace receiver (the collector's own TraceService contract, from
opentelemetry-proto) that keeps what the services export: where the benchmark sends the
services' traces while it measures what tracing costs, and what the tests read traces from."""

from __future__ import annotations

import threading
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class SpanReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Listens on 127.0.0.1 (a free port); `spans` holds (service.name, Span) pairs as they
    arrive. `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT should say."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.endpoint = f"http://127.0.0.1:{port}"

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self._lock:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                service = attributes.get("service.name", "")
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((service, span) for span in scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def received(self) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: bytes) -> list[tuple[str, Any]]:
        """The spans of one trace, with their services."""
        return [(service, span) for service, span in self.received() if span.trace_id == trace_id]

    def stop(self) -> None:
        self._server.stop(None)
