"""gRPC entrypoint of VehicleService: parse the request, call the service, map back."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc

from services.common.errors import InvalidArgument, translate_errors
from services.common.ingest import batches_of
from services.common.security import OPEN, Authorizer
from services.common.timeconv import (
    duration_to_micros,
    micros_to_timestamp,
    set_timestamp,
    timestamp_to_micros,
)
from services.common.validation import require_times
from services.vehicle.repository import SessionRow, VehicleStatusRow
from services.vehicle.service import VehicleReadings


def fill_status(status: vehicle_pb2.VehicleStatus, row: VehicleStatusRow) -> None:
    """Fills a message in place: about three times cheaper than building it from keywords,
    which matters when a page holds 10,000 statuses."""
    status.vehicle_id = row.vehicle_id
    status.charger_id = row.charger_id
    status.soc = row.soc
    status.kwh_delivered_dc = row.kwh_delivered_dc
    status.battery_temp = row.battery_temp
    set_timestamp(status.timestamp, row.read_micros)
    set_timestamp(status.update_time, row.update_micros)


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
    def __init__(self, readings: VehicleReadings, auth: Authorizer = OPEN) -> None:
        self._readings = readings
        self._auth = auth

    @translate_errors
    def IngestReading(
        self, request: vehicle_service_pb2.IngestReadingRequest, context: grpc.ServicerContext
    ) -> vehicle_service_pb2.IngestReadingResponse:
        device = self._auth.ingesting_device(context, "vehicle")
        duplicate = self._readings.ingest_one(request.reading, device)
        return vehicle_service_pb2.IngestReadingResponse(
            duplicate=duplicate,
            outcome=vehicle_service_pb2.INGEST_OUTCOME_DUPLICATE
            if duplicate
            else vehicle_service_pb2.INGEST_OUTCOME_ACCEPTED,
        )

    @translate_errors
    def IngestReadings(
        self,
        request_iterator: Iterator[vehicle_service_pb2.IngestReadingsRequest],
        context: grpc.ServicerContext,
    ) -> vehicle_service_pb2.IngestReadingsResponse:
        device = self._auth.ingesting_device(context, "vehicle")
        outcome = self._readings.ingest_stream(batches_of(request_iterator, device), device)
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
        self._auth.require_reader(context)
        status = vehicle_pb2.VehicleStatus()
        fill_status(status, self._readings.get_status(request.vehicle_id))
        return status

    @translate_errors
    def ListVehicleStatuses(
        self,
        request: vehicle_service_pb2.ListVehicleStatusesRequest,
        context: grpc.ServicerContext,
    ) -> vehicle_service_pb2.ListVehicleStatusesResponse:
        self._auth.require_reader(context)
        rows, next_token = self._readings.list_statuses(request.page_size, request.page_token)
        response = vehicle_service_pb2.ListVehicleStatusesResponse(next_page_token=next_token)
        add = response.vehicle_statuses.add
        for row in rows:
            fill_status(add(), row)
        return response

    @translate_errors
    def ListChargingSessions(
        self,
        request: vehicle_service_pb2.ListChargingSessionsRequest,
        context: grpc.ServicerContext,
    ) -> vehicle_service_pb2.ListChargingSessionsResponse:
        self._auth.require_reader(context)
        missing = [name for name in ("start_time", "end_time") if not request.HasField(name)]
        if missing:
            raise InvalidArgument([(name, "must be set") for name in missing])
        require_times(
            [
                ("start_time", request.start_time),
                ("end_time", request.end_time),
                ("session_gap", request.session_gap),
            ]
        )
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
