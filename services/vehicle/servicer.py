"""gRPC entrypoint of VehicleService: the shared reading RPCs (services.readings.servicer)
bound to its names, and ListChargingSessions."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc

from services.common.errors import InvalidArgument, translate_errors
from services.common.timeconv import (
    micros_to_timestamp,
    timestamp_to_micros,
)
from services.common.validation import require_times
from services.readings.reporting import ReportingSummary
from services.readings.servicer import ReadingServicer, request_window
from services.vehicle.repository import ChargerRange, SessionRow
from services.vehicle.service import VehicleReadings


def session_message(row: SessionRow) -> vehicle_pb2.ChargingSession:
    return vehicle_pb2.ChargingSession(
        vehicle_id=row.vehicle_id,
        charger_id=row.charger_id,
        start_time=micros_to_timestamp(row.start_micros),
        end_time=micros_to_timestamp(row.end_micros),
        kwh_delivered_dc=row.kwh_delivered_dc,
        reading_count=row.reading_count,
        battery_temp_sum=row.battery_temp_sum,
        battery_temp_count=row.battery_temp_count,
        unknown_energy_count=row.unknown_energy_count,
        first_reading_time=micros_to_timestamp(row.first_reading_micros),
        last_reading_time=micros_to_timestamp(row.last_reading_micros),
    )


def _ranges(ranges: Sequence[vehicle_service_pb2.ChargerTimeRange]) -> list[ChargerRange]:
    """The ranges of a ListChargerSessions request; INVALID_ARGUMENT naming each unset or
    out-of-range time."""
    missing = [
        (f"ranges[{index}].{name}", "must be set, got nothing")
        for index, item in enumerate(ranges)
        for name in ("start_time", "end_time")
        if not item.HasField(name)
    ]
    if missing:
        raise InvalidArgument(missing)
    require_times(
        [
            (f"ranges[{index}].{name}", getattr(item, name))
            for index, item in enumerate(ranges)
            for name in ("start_time", "end_time")
        ]
    )
    return [
        ChargerRange(
            item.charger_id,
            timestamp_to_micros(item.start_time),
            timestamp_to_micros(item.end_time),
        )
        for item in ranges
    ]


class VehicleServicer(
    ReadingServicer[VehicleReadings], vehicle_service_pb2_grpc.VehicleServiceServicer
):
    """VehicleService: the shared ingest and status RPCs, and ListChargingSessions."""

    GetVehicleStatus = ReadingServicer.get_status
    ListVehicleStatuses = ReadingServicer.list_statuses

    @translate_errors
    def ListChargingSessions(
        self,
        request: vehicle_service_pb2.ListChargingSessionsRequest,
        context: grpc.ServicerContext,
    ) -> vehicle_service_pb2.ListChargingSessionsResponse:
        self._auth.require_reader(context)
        sessions = self._readings.list_sessions(
            request.vehicle_id, *request_window(request, "session_gap")
        )
        return vehicle_service_pb2.ListChargingSessionsResponse(
            sessions=[session_message(row) for row in sessions]
        )

    @translate_errors
    def ListChargerSessions(
        self,
        request: vehicle_service_pb2.ListChargerSessionsRequest,
        context: grpc.ServicerContext,
    ) -> vehicle_service_pb2.ListChargerSessionsResponse:
        self._auth.require_reader(context)
        start_us, end_us, gap_us = request_window(request, "session_gap")
        sessions = self._readings.list_charger_sessions(
            list(request.charger_ids),
            _ranges(request.ranges),
            excluded_vehicle_id=request.excluded_vehicle_id,
            start_us=start_us,
            end_us=end_us,
            gap_us=gap_us,
        )
        return vehicle_service_pb2.ListChargerSessionsResponse(
            sessions=[session_message(row) for row in sessions]
        )

    def _add_to_summaries(
        self,
        response: vehicle_service_pb2.ListReportingSummariesResponse,
        summaries: list[ReportingSummary],
        start_us: int,
        end_us: int,
    ) -> None:
        reports = self._readings.charger_reports(summaries, start_us, end_us)
        for message in response.reporting_summaries:
            found = reports.get(message.vehicle_id)
            if found is None:
                continue
            message.charger_ids.extend(found.charger_ids)
            for overlap in found.overlaps:
                message.charger_overlaps.add(
                    vehicle_id=overlap.vehicle_id,
                    charger_id=overlap.charger_id,
                    other_charger_id=overlap.other_charger_id,
                    start_time=micros_to_timestamp(overlap.start_us),
                    end_time=micros_to_timestamp(overlap.end_us),
                )
