"""Builds MeterService from settings: engine → repository → service → servicer."""

from __future__ import annotations

from energy.meter.v1 import meter_service_pb2, meter_service_pb2_grpc

from services.common.component import DatabaseComponent, build_ingestor, build_reads
from services.common.config import Settings
from services.common.security import Authorizer
from services.meter import rules
from services.meter.repository import READINGS_TABLE, MeterRepository
from services.meter.service import MeterReadings
from services.meter.servicer import MeterServicer

SERVICE_NAME = meter_service_pb2.DESCRIPTOR.services_by_name["MeterService"].full_name


def build(settings: Settings) -> DatabaseComponent:
    engine, reads = build_reads(settings, "meter")
    ingestor, writers = build_ingestor(
        settings, "meter", READINGS_TABLE, rules.RULES, rules.validate_batch
    )
    servicer = MeterServicer(
        MeterReadings(MeterRepository(engine, reads), ingestor),
        Authorizer.from_settings(settings),
    )
    return DatabaseComponent(
        SERVICE_NAME,
        engine,
        servicer,
        meter_service_pb2_grpc.add_MeterServiceServicer_to_server,
        on_start=writers.start,
        on_stop=writers.stop,
        allow_unsafe_commit=settings.allow_unsafe_commit,
        probe_timeout=settings.db_connect_timeout_seconds,
    )
