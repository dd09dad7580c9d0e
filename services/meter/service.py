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
# The work of one SummarizeConsumption call is the meter readings it sums, about its intervals'
# total length: at most 62 interval-days per call (two 31-day windows; AnalyticsService sends
# at most 31 days a call, see services/analytics/downstream.py). At a reading a minute that is
# 89,280 index entries, tens of milliseconds; 10,000 intervals of 31 days would be 446M.
DAY_US = 24 * 3600 * 1_000_000
MAX_INTERVAL_DAYS = 62


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

    @staticmethod
    def check_work(intervals: int, span_us: int) -> None:
        """INVALID_ARGUMENT naming `intervals` when one call would sum too much: more than
        MAX_INTERVALS intervals or MAX_INTERVAL_DAYS of their total length. The servicer asks
        before it validates each interval, so a call too large costs next to nothing."""
        if intervals > MAX_INTERVALS:
            raise InvalidArgument([("intervals", f"at most {MAX_INTERVALS} per call")])
        if span_us > MAX_INTERVAL_DAYS * DAY_US:
            raise InvalidArgument(
                [
                    (
                        "intervals",
                        f"at most {MAX_INTERVAL_DAYS} days in total per call (the sum of "
                        f"end_time - start_time), got {span_us / DAY_US:,.1f}: split the call",
                    )
                ]
            )

    def summarize(
        self, meter_ids: list[str], starts_us: list[int], ends_us: list[int]
    ) -> list[ConsumptionRow]:
        span_us = sum(end - start for start, end in zip(starts_us, ends_us, strict=True))
        self.check_work(len(meter_ids), span_us)
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
