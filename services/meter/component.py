"""Builds MeterService from settings: engine → repository → service → servicer."""

from __future__ import annotations

from services.common.component import DatabaseComponent
from services.common.config import Settings
from services.meter.kind import METER
from services.meter.repository import MeterRepository
from services.meter.service import MeterReadings
from services.meter.servicer import MeterServicer
from services.readings.component import build_reading_component

SERVICE_NAME = METER.contract.service_name


def build(settings: Settings) -> DatabaseComponent:
    return build_reading_component(
        settings, METER, MeterRepository.from_settings, MeterReadings, MeterServicer
    )
