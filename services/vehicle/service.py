"""VehicleService use cases; raises domain errors, knows neither gRPC nor SQL."""

from __future__ import annotations

from collections.abc import Iterable

from energy.vehicle.v1.vehicle_pb2 import VehicleReading

from services.common import paging
from services.common.errors import InvalidArgument, NotFound
from services.common.ingest import Batch, Ingestor, StreamOutcome
from services.common.validation import require_id
from services.vehicle.repository import SessionRow, VehicleRepository, VehicleStatusRow

# One call reads one vehicle's readings over end_time - start_time, with window functions:
# at most 31 days (AnalyticsService's largest window), 44,640 readings at one a minute.
DAY_US = 24 * 3600 * 1_000_000
MAX_SESSIONS_SPAN_DAYS = 31


class VehicleReadings:
    def __init__(self, repository: VehicleRepository, ingestor: Ingestor) -> None:
        self._repository = repository
        self._ingestor = ingestor

    def ingest_one(self, reading: VehicleReading, device: str | None = None) -> bool:
        """Stores one reading once committed; True when it was already stored. `device`: the
        only id the caller may write (None: any)."""
        return self._ingestor.ingest_one(reading, device)

    def ingest_stream(self, batches: Iterable[Batch], device: str | None = None) -> StreamOutcome:
        return self._ingestor.ingest_stream(batches, device)

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

    def list_sessions(
        self, vehicle_id: str, start_us: int, end_us: int, gap_us: int
    ) -> list[SessionRow]:
        """Sessions of the readings in [start_us, end_us); NOT_FOUND for a vehicle never seen."""
        require_id("vehicle_id", vehicle_id)
        if end_us < start_us:
            raise InvalidArgument([("end_time", "must not be before start_time")])
        if end_us - start_us > MAX_SESSIONS_SPAN_DAYS * DAY_US:
            raise InvalidArgument(
                [("end_time", f"must be at most {MAX_SESSIONS_SPAN_DAYS} days after start_time")]
            )
        if gap_us <= 0:
            raise InvalidArgument([("session_gap", "must be positive")])
        sessions = self._repository.list_sessions(vehicle_id, start_us, end_us, gap_us)
        if not sessions and not self._repository.exists(vehicle_id):
            raise NotFound(f"vehicle {vehicle_id} has never reported")
        return sessions
