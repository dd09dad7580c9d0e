"""Builds VehicleService from settings: engine → repository → service → servicer."""

from __future__ import annotations

from energy.vehicle.v1 import vehicle_service_pb2, vehicle_service_pb2_grpc

from services.common.component import DatabaseComponent, build_ingestor, build_reads
from services.common.config import Settings
from services.common.security import Authorizer
from services.vehicle import rules
from services.vehicle.repository import READINGS_TABLE, VehicleRepository
from services.vehicle.service import VehicleReadings
from services.vehicle.servicer import VehicleServicer

SERVICE_NAME = vehicle_service_pb2.DESCRIPTOR.services_by_name["VehicleService"].full_name


def build(settings: Settings) -> DatabaseComponent:
    engine, reads = build_reads(settings, "vehicle")
    ingestor, writers = build_ingestor(
        settings, "vehicle", READINGS_TABLE, rules.RULES, rules.validate_batch
    )
    servicer = VehicleServicer(
        VehicleReadings(VehicleRepository(engine, reads), ingestor),
        Authorizer.from_settings(settings),
    )
    return DatabaseComponent(
        SERVICE_NAME,
        engine,
        servicer,
        vehicle_service_pb2_grpc.add_VehicleServiceServicer_to_server,
        on_start=writers.start,
        on_stop=writers.stop,
        allow_unsafe_commit=settings.allow_unsafe_commit,
        probe_timeout=settings.db_connect_timeout_seconds,
    )
