"""gRPC entrypoint of VehicleService: parse the request, call the service, map back."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc

from services.common.errors import InvalidArgument, translate_errors
from services.common.timeconv import (
    duration_to_micros,
    micros_to_timestamp,
    timestamp_to_micros,
)
from services.vehicle.repository import SessionRow, VehicleStatusRow
from services.vehicle.service import VehicleReadings


def status_message(row: VehicleStatusRow) -> vehicle_pb2.VehicleStatus:
    return vehicle_pb2.VehicleStatus(
        vehicle_id=row.vehicle_id,
        charger_id=row.charger_id,
        soc=row.soc,
        kwh_delivered_dc=row.kwh_delivered_dc,
        battery_temp=row.battery_temp,
        timestamp=micros_to_timestamp(row.read_micros),
        update_time=micros_to_timestamp(row.update_micros),
    )


DEFAULT_SESSION_GAP_US = 5 * 60 * 1_000_000


def session_message(row: SessionRow) -> vehicle_pb2.ChargingSession:
    return vehicle_pb2.ChargingSession(
        charger_id=row.charger_id,
        start_time=micros_to_timestamp(row.start_micros),
        end_time=micros_to_timestamp(row.end_micros),
        kwh_delivered_dc=row.kwh_delivered_dc,
        reading_count=row.reading_count,
        battery_temp_sum=row.battery_temp_sum,
        battery_temp_count=row.battery_temp_count,
    )


class VehicleServicer(vehicle_service_pb2_grpc.VehicleServiceServicer):
    def __init__(self, readings: VehicleReadings) -> None:
        self._readings = readings

    @translate_errors
    def IngestReading(
        self, request: vehicle_service_pb2.IngestReadingRequest, context: grpc.ServicerContext
    ) -> vehicle_service_pb2.IngestReadingResponse:
        duplicate = self._readings.ingest_one(request.reading)
        return vehicle_service_pb2.IngestReadingResponse(duplicate=duplicate)

    @translate_errors
    def IngestReadings(
        self,
        request_iterator: Iterator[vehicle_service_pb2.IngestReadingsRequest],
        context: grpc.ServicerContext,
    ) -> vehicle_service_pb2.IngestReadingsResponse:
        outcome = self._readings.ingest_stream(request.readings for request in request_iterator)
        return vehicle_service_pb2.IngestReadingsResponse(
            accepted=outcome.accepted,
            duplicates=outcome.duplicates,
            rejected=outcome.rejected,
            rejections=[
                vehicle_pb2.ReadingRejection(
                    index=r.index, field=r.field, description=r.description
                )
                for r in outcome.rejections
            ],
        )

    @translate_errors
    def GetVehicleStatus(
        self, request: vehicle_service_pb2.GetVehicleStatusRequest, context: grpc.ServicerContext
    ) -> vehicle_pb2.VehicleStatus:
        return status_message(self._readings.get_status(request.vehicle_id))

    @translate_errors
    def ListVehicleStatuses(
        self,
        request: vehicle_service_pb2.ListVehicleStatusesRequest,
        context: grpc.ServicerContext,
    ) -> vehicle_service_pb2.ListVehicleStatusesResponse:
        rows, next_token = self._readings.list_statuses(request.page_size, request.page_token)
        return vehicle_service_pb2.ListVehicleStatusesResponse(
            vehicle_statuses=[status_message(row) for row in rows], next_page_token=next_token
        )

    @translate_errors
    def ListChargingSessions(
        self,
        request: vehicle_service_pb2.ListChargingSessionsRequest,
        context: grpc.ServicerContext,
    ) -> vehicle_service_pb2.ListChargingSessionsResponse:
        missing = [name for name in ("start_time", "end_time") if not request.HasField(name)]
        if missing:
            raise InvalidArgument([(name, "must be set") for name in missing])
        gap_us = (
            duration_to_micros(request.session_gap)
            if request.HasField("session_gap")
            else DEFAULT_SESSION_GAP_US
        )
        sessions = self._readings.list_sessions(
            request.vehicle_id,
            timestamp_to_micros(request.start_time),
            timestamp_to_micros(request.end_time),
            gap_us,
        )
        return vehicle_service_pb2.ListChargingSessionsResponse(
            sessions=[session_message(row) for row in sessions]
        )
