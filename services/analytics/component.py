"""Builds AnalyticsService: it owns no tables, only channels to the other two services."""

from __future__ import annotations

import grpc
from energy.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc

from services import client
from services.analytics.chargers import ChargerEfficiencyService, OutlierRule
from services.analytics.downstream import Downstream
from services.analytics.reporting import CompletenessService
from services.analytics.service import VehiclePerformanceService
from services.analytics.servicer import AnalyticsServicer
from services.common.config import Settings
from services.common.metrics import ServiceMetrics
from services.common.security import Authorizer, channel_credentials
from services.common.server import HealthReporter
from services.common.timeconv import MICROS
from services.common.tracing import Tracing

SERVICE_NAME = analytics_service_pb2.DESCRIPTOR.services_by_name["AnalyticsService"].full_name


class AnalyticsComponent:
    service_name = SERVICE_NAME

    def __init__(self, settings: Settings) -> None:
        self.metrics = ServiceMetrics("analytics")
        self.tracing = Tracing.from_settings(settings, "analytics")
        # Made once; they connect lazily, reconnect on their own and retry UNAVAILABLE.
        credentials = channel_credentials(settings)
        self._channels = [
            client.channel(settings.vehicle_target, credentials),
            client.channel(settings.meter_target, credentials),
        ]
        # Each downstream call counted and timed (grpc_client_* metrics) and, with tracing on,
        # a client span whose context the call carries to the other service.
        timed = [
            grpc.intercept_channel(c, self.metrics.client_interceptor()) for c in self._channels
        ]
        if self.tracing is not None:
            timed = [self.tracing.traced_channel(c) for c in timed]
        performance = VehiclePerformanceService(
            Downstream(*timed),
            session_gap_us=round(settings.session_gap_seconds * MICROS),
            reach_us=round(settings.max_reading_interval_seconds * MICROS),
            downstream_timeout=settings.downstream_timeout_seconds,
        )
        efficiencies = ChargerEfficiencyService(
            Downstream(*timed),
            session_gap_us=round(settings.session_gap_seconds * MICROS),
            reach_us=round(settings.max_reading_interval_seconds * MICROS),
            downstream_timeout=settings.downstream_timeout_seconds,
            rule=OutlierRule(
                min_sessions=settings.outlier_min_sessions,
                mad_threshold=settings.outlier_mad_threshold,
                min_points=settings.outlier_min_points,
                drop_points=settings.outlier_drop_points,
            ),
        )
        completeness = CompletenessService(
            Downstream(*timed),
            session_gap_us=round(settings.session_gap_seconds * MICROS),
            downstream_timeout=settings.downstream_timeout_seconds,
        )
        self.servicer = AnalyticsServicer(
            performance, efficiencies, completeness, Authorizer.from_settings(settings)
        )

    def register(self, server: grpc.Server) -> None:
        analytics_service_pb2_grpc.add_AnalyticsServiceServicer_to_server(self.servicer, server)

    def start(self, health: HealthReporter) -> None:
        health.set_serving(True)

    def stop(self) -> None:
        for channel in self._channels:
            channel.close()


def build(settings: Settings) -> AnalyticsComponent:
    return AnalyticsComponent(settings)
