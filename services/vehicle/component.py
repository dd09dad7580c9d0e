"""Builds VehicleService from settings: engine → repository → service → servicer."""

from __future__ import annotations

from services.common.component import DatabaseComponent
from services.common.config import Settings
from services.readings.component import build_reading_component
from services.vehicle.kind import VEHICLE
from services.vehicle.repository import VehicleRepository
from services.vehicle.service import VehicleReadings
from services.vehicle.servicer import VehicleServicer

SERVICE_NAME = VEHICLE.contract.service_name


def build(settings: Settings) -> DatabaseComponent:
    return build_reading_component(
        settings, VEHICLE, VehicleRepository.from_settings, VehicleReadings, VehicleServicer
    )
