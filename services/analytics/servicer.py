"""gRPC entrypoint of AnalyticsService."""

from __future__ import annotations

from energy.analytics.v1 import analytics_service_pb2_grpc


class AnalyticsServicer(analytics_service_pb2_grpc.AnalyticsServiceServicer):
    """GetVehiclePerformance arrives with the correlation work (issue 4); until then the
    generated base answers UNIMPLEMENTED."""
