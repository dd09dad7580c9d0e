"""VehicleService use cases; raises domain errors, knows neither gRPC nor SQL."""

from __future__ import annotations

from services.common import paging
from services.common.errors import NotFound
from services.common.validation import require_id
from services.vehicle.repository import VehicleRepository, VehicleStatusRow


class VehicleReadings:
    def __init__(self, repository: VehicleRepository) -> None:
        self._repository = repository

    def get_status(self, vehicle_id: str) -> VehicleStatusRow:
        require_id("vehicle_id", vehicle_id)
        status = self._repository.get_status(vehicle_id)
        if status is None:
            raise NotFound(f"vehicle {vehicle_id} has never reported")
        return status

    def list_statuses(self, page_size: int, page_token: str) -> tuple[list[VehicleStatusRow], str]:
        return paging.paginate(
            page_size, page_token, self._repository.list_statuses, lambda row: row.vehicle_id
        )
