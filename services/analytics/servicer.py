"""gRPC entrypoint of AnalyticsService: parse the request, call the service, map back."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import grpc
from energy.analytics.v1 import analytics_pb2, analytics_service_pb2, analytics_service_pb2_grpc

from services.analytics.chargers import (
    ChargerEfficiencyService,
    ChargerFigures,
    EfficiencyPage,
    Outlier,
)
from services.analytics.correlation import Figures, Performance, Quality
from services.analytics.reporting import (
    CompletenessPage,
    CompletenessService,
    DeviceReport,
    Totals,
)
from services.analytics.service import VehiclePerformanceService
from services.common.errors import translate_errors
from services.common.security import OPEN, Authorizer
from services.common.timeconv import (
    duration_to_micros,
    micros_to_duration,
    micros_to_timestamp,
    timestamp_to_micros,
)
from services.common.validation import require_times

# Outlier.X is OutlierReason OUTLIER_REASON_X on the wire.
_WIRE_REASONS = {
    reason: cast(
        analytics_pb2.OutlierReason,
        analytics_pb2.OutlierReason.Value(f"OUTLIER_REASON_{reason.name}"),
    )
    for reason in Outlier
}
# Quality.X is QualityFlag QUALITY_FLAG_X on the wire.
_WIRE_FLAGS = {
    flag: cast(
        analytics_pb2.QualityFlag,
        analytics_pb2.QualityFlag.Value(f"QUALITY_FLAG_{flag.name}"),
    )
    for flag in Quality
}


def _set_figures(
    message: analytics_pb2.VehiclePerformance | analytics_pb2.SessionPerformance,
    figures: Figures,
) -> None:
    """The fields VehiclePerformance and SessionPerformance share; unset stays unset."""
    message.data_points = figures.data_points
    message.meter_data_points = figures.meter_data_points
    message.ac_coverage = figures.ac_coverage
    message.quality_flags.extend(_WIRE_FLAGS[flag] for flag in figures.flags)
    if figures.energy_loss_kwh is not None:
        message.energy_loss_kwh = figures.energy_loss_kwh
    if figures.efficiency_ratio is not None:
        message.efficiency_ratio = figures.efficiency_ratio
    if figures.avg_battery_temperature is not None:
        message.avg_battery_temperature = figures.avg_battery_temperature


def performance_message(performance: Performance) -> analytics_pb2.VehiclePerformance:
    message = analytics_pb2.VehiclePerformance(
        vehicle_id=performance.vehicle_id,
        start_time=micros_to_timestamp(performance.start_us),
        end_time=micros_to_timestamp(performance.end_us),
        total_energy_delivered_dc=performance.totals.energy_delivered_dc,
    )
    if performance.totals.energy_consumed_ac is not None:
        message.total_energy_consumed_ac = performance.totals.energy_consumed_ac
    _set_figures(message, performance.totals)
    for item in performance.sessions:
        session = message.sessions.add(
            charger_id=item.session.charger_id,
            start_time=micros_to_timestamp(item.session.start_us),
            end_time=micros_to_timestamp(item.session.end_us),
            energy_delivered_dc=item.figures.energy_delivered_dc,
        )
        if item.figures.energy_consumed_ac is not None:
            session.energy_consumed_ac = item.figures.energy_consumed_ac
        _set_figures(session, item.figures)
    return message


def charger_figures_message(item: ChargerFigures) -> analytics_pb2.ChargerFigures:
    figures = item.figures
    message = analytics_pb2.ChargerFigures(
        energy_delivered_dc=figures.energy_delivered_dc,
        session_count=item.session_count,
        vehicle_count=item.vehicle_count,
        ac_coverage=figures.ac_coverage,
        quality_flags=[_WIRE_FLAGS[flag] for flag in figures.flags],
    )
    if figures.energy_consumed_ac is not None:
        message.energy_consumed_ac = figures.energy_consumed_ac
    if figures.efficiency_ratio is not None:
        message.efficiency_ratio = figures.efficiency_ratio
    if figures.energy_loss_kwh is not None:
        message.energy_loss_kwh = figures.energy_loss_kwh
    if item.standby_kwh is not None:
        message.standby_energy_kwh = item.standby_kwh
    return message


def efficiencies_message(
    page: EfficiencyPage,
) -> analytics_service_pb2.ListChargerEfficienciesResponse:
    message = analytics_service_pb2.ListChargerEfficienciesResponse(
        next_page_token=page.next_page_token,
        start_time=micros_to_timestamp(page.start_us),
        end_time=micros_to_timestamp(page.end_us),
        total_size=page.total,
    )
    if page.fleet_median is not None:
        message.fleet_median_efficiency = page.fleet_median
    if page.fleet_mad is not None:
        message.fleet_efficiency_mad = page.fleet_mad
    for row in page.rows:
        item = message.charger_efficiencies.add(
            charger_id=row.charger_id,
            current=charger_figures_message(row.current),
            previous=charger_figures_message(row.previous),
            outlier_reasons=[_WIRE_REASONS[reason] for reason in row.outliers],
        )
        if row.change is not None:
            item.efficiency_change = row.change
    return message


def _device_message(report: DeviceReport) -> analytics_pb2.DeviceCompleteness:
    message = analytics_pb2.DeviceCompleteness(
        id=report.device_id,
        received_reading_count=report.received,
        conflict_count=report.conflicts,
        gaps=[
            analytics_pb2.TimeRange(
                start_time=micros_to_timestamp(start), end_time=micros_to_timestamp(end)
            )
            for start, end in report.gaps
        ],
    )
    if report.expected is not None:
        message.expected_reading_count = report.expected
    if report.completeness is not None:
        message.completeness = report.completeness
    if report.usual_interval_us is not None:
        message.usual_interval.CopyFrom(micros_to_duration(report.usual_interval_us))
    return message


def _totals_message(totals: Totals) -> analytics_pb2.CompletenessTotals:
    return analytics_pb2.CompletenessTotals(
        device_count=totals.devices,
        silent_device_count=totals.silent,
        expected_reading_count=totals.expected,
        received_reading_count=totals.received,
        gap_count=totals.gaps,
        conflict_count=totals.conflicts,
    )


def completeness_message(page: CompletenessPage) -> analytics_pb2.DataCompleteness:
    return analytics_pb2.DataCompleteness(
        start_time=micros_to_timestamp(page.start_us),
        end_time=micros_to_timestamp(page.end_us),
        chargers=[_device_message(report) for report in page.chargers],
        vehicles=[_device_message(report) for report in page.vehicles],
        charger_totals=_totals_message(page.charger_totals),
        vehicle_totals=_totals_message(page.vehicle_totals),
        unreported_chargers=[
            analytics_pb2.UnreportedCharger(
                charger_id=item.charger_id,
                near_matches=item.near_matches,
                vehicle_ids=item.vehicle_ids,
            )
            for item in page.unreported
        ],
        charger_overlaps=[
            analytics_pb2.ChargerOverlap(
                vehicle_id=overlap.vehicle_id,
                charger_id=overlap.charger_id,
                other_charger_id=overlap.other_charger_id,
                start_time=micros_to_timestamp(overlap.start_us),
                end_time=micros_to_timestamp(overlap.end_us),
            )
            for overlap in page.overlaps
        ],
        next_page_token=page.next_page_token,
    )


def _time_remaining(context: grpc.ServicerContext) -> Callable[[], float | None]:
    """The call's remaining time, 0 once it is no longer active (cancelled by the client): a
    fleet-wide call stops at its next downstream read instead of reading on for nobody."""

    def remaining() -> float | None:
        return context.time_remaining() if context.is_active() else 0.0

    return remaining


class AnalyticsServicer(analytics_service_pb2_grpc.AnalyticsServiceServicer):
    def __init__(
        self,
        performance: VehiclePerformanceService,
        efficiencies: ChargerEfficiencyService,
        completeness: CompletenessService,
        auth: Authorizer = OPEN,
    ) -> None:
        self._performance = performance
        self._auth = auth
        self._efficiencies = efficiencies
        self._completeness = completeness

    @translate_errors
    def GetVehiclePerformance(
        self,
        request: analytics_service_pb2.GetVehiclePerformanceRequest,
        context: grpc.ServicerContext,
    ) -> analytics_pb2.VehiclePerformance:
        self._auth.require_reader(context)
        require_times([("end_time", request.end_time), ("window", request.window)])
        end_us = timestamp_to_micros(request.end_time) if request.HasField("end_time") else None
        window_us = duration_to_micros(request.window) if request.HasField("window") else None
        performance = self._performance.performance(
            request.vehicle_id, end_us, window_us, _time_remaining(context)
        )
        return performance_message(performance)

    @translate_errors
    def ListChargerEfficiencies(
        self,
        request: analytics_service_pb2.ListChargerEfficienciesRequest,
        context: grpc.ServicerContext,
    ) -> analytics_service_pb2.ListChargerEfficienciesResponse:
        self._auth.require_reader(context)
        require_times([("end_time", request.end_time), ("window", request.window)])
        end_us = timestamp_to_micros(request.end_time) if request.HasField("end_time") else None
        window_us = duration_to_micros(request.window) if request.HasField("window") else None
        page = self._efficiencies.efficiencies(
            list(request.charger_ids),
            end_us,
            window_us,
            page_size=request.page_size,
            page_token=request.page_token,
            time_remaining=_time_remaining(context),
        )
        return efficiencies_message(page)

    @translate_errors
    def GetDataCompleteness(
        self,
        request: analytics_service_pb2.GetDataCompletenessRequest,
        context: grpc.ServicerContext,
    ) -> analytics_pb2.DataCompleteness:
        self._auth.require_reader(context)
        require_times([("end_time", request.end_time), ("window", request.window)])
        end_us = timestamp_to_micros(request.end_time) if request.HasField("end_time") else None
        window_us = duration_to_micros(request.window) if request.HasField("window") else None
        page = self._completeness.completeness(
            end_us,
            window_us,
            page_size=request.page_size,
            page_token=request.page_token,
            time_remaining=_time_remaining(context),
        )
        return completeness_message(page)
