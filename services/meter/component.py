"""Builds MeterService from settings: engine → repository → service → servicer."""

from __future__ import annotations

from functools import partial

from services.common.component import DatabaseComponent
from services.common.config import Settings
from services.common.rollups import Rollups
from services.meter.kind import METER
from services.meter.repository import MeterRepository, make_rollups_sql, meter_rollup_rule
from services.meter.service import MeterReadings
from services.meter.servicer import MeterServicer
from services.readings.component import build_reading_component

SERVICE_NAME = METER.contract.service_name


def rollups(settings: Settings) -> Rollups:
    """The hourly rollups of meter.meter_readings (meter_rollups_hourly)."""
    return Rollups(
        "meter",
        "meter_rollups_hourly",
        "meter_readings",
        partial(make_rollups_sql, max_power_kw=settings.max_charger_power_kw),
        reach_us=round(settings.max_reading_interval_seconds * 1_000_000),
        rule=meter_rollup_rule(settings.max_charger_power_kw),
        retention_days=settings.rollup_retention_days,
    )


def build(settings: Settings) -> DatabaseComponent:
    return build_reading_component(
        settings,
        METER,
        MeterRepository.from_settings,
        MeterReadings,
        MeterServicer,
        rollups=rollups(settings),
    )
