"""Builds VehicleService from settings: engine → repository → service → servicer."""

from __future__ import annotations

from services.common.component import DatabaseComponent
from services.common.config import Settings
from services.common.rollups import Rollups
from services.readings.component import build_reading_component
from services.vehicle.kind import VEHICLE
from services.vehicle.repository import VehicleRepository, make_rollups_sql
from services.vehicle.service import VehicleReadings
from services.vehicle.servicer import VehicleServicer

SERVICE_NAME = VEHICLE.contract.service_name


def rollups(settings: Settings) -> Rollups:
    """The hourly rollups of vehicle.vehicle_readings (vehicle_rollups_hourly)."""
    return Rollups(
        "vehicle",
        "vehicle_rollups_hourly",
        "vehicle_readings",
        make_rollups_sql,
        reach_us=round(settings.max_reading_interval_seconds * 1_000_000),
        retention_days=settings.rollup_retention_days,
    )


def build(settings: Settings) -> DatabaseComponent:
    return build_reading_component(
        settings,
        VEHICLE,
        VehicleRepository.from_settings,
        VehicleReadings,
        VehicleServicer,
        rollups=rollups(settings),
    )
