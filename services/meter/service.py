"""MeterService use cases; raises domain errors, knows neither gRPC nor SQL."""

from __future__ import annotations

from services.common import paging
from services.common.errors import NotFound
from services.common.validation import require_id
from services.meter.repository import ChargerStatusRow, MeterRepository


class MeterReadings:
    def __init__(self, repository: MeterRepository) -> None:
        self._repository = repository

    def get_status(self, meter_id: str) -> ChargerStatusRow:
        require_id("meter_id", meter_id)
        status = self._repository.get_status(meter_id)
        if status is None:
            raise NotFound(f"charger {meter_id} has never reported")
        return status

    def list_statuses(self, page_size: int, page_token: str) -> tuple[list[ChargerStatusRow], str]:
        return paging.paginate(
            page_size, page_token, self._repository.list_statuses, lambda row: row.meter_id
        )
