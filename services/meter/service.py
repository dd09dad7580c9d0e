"""MeterService use cases; raises domain errors, knows neither gRPC nor SQL."""

from __future__ import annotations

from collections.abc import Iterable

from energy.meter.v1.meter_pb2 import MeterReading

from services.common import paging
from services.common.errors import InvalidArgument, NotFound
from services.common.ingest import Batch, Ingestor, StreamOutcome
from services.common.validation import id_problem, require_id
from services.meter.repository import ChargerStatusRow, ConsumptionRow, MeterRepository

MAX_INTERVALS = 10_000


class MeterReadings:
    def __init__(self, repository: MeterRepository, ingestor: Ingestor) -> None:
        self._repository = repository
        self._ingestor = ingestor

    def ingest_one(self, reading: MeterReading, device: str | None = None) -> bool:
        """Stores one reading once committed; True when it was already stored. `device`: the
        only id the caller may write (None: any)."""
        return self._ingestor.ingest_one(reading, device)

    def ingest_stream(self, batches: Iterable[Batch], device: str | None = None) -> StreamOutcome:
        return self._ingestor.ingest_stream(batches, device)

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

    def summarize(
        self, meter_ids: list[str], starts_us: list[int], ends_us: list[int]
    ) -> list[ConsumptionRow]:
        if len(meter_ids) > MAX_INTERVALS:
            raise InvalidArgument([("intervals", f"at most {MAX_INTERVALS} per call")])
        violations = []
        for index, (meter_id, start, end) in enumerate(
            zip(meter_ids, starts_us, ends_us, strict=True)
        ):
            problem = id_problem(meter_id)
            if problem:
                violations.append((f"intervals[{index}].charger_id", problem))
            if end < start:
                violations.append((f"intervals[{index}].end_time", "must not be before start_time"))
        if violations:
            raise InvalidArgument(violations)
        if not meter_ids:
            return []
        return self._repository.summarize(meter_ids, starts_us, ends_us)
