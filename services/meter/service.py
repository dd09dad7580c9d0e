"""MeterService use cases (the shared ones and SummarizeConsumption); raises domain errors,
knows neither gRPC nor SQL."""

from __future__ import annotations

from services.common.errors import InvalidArgument
from services.common.validation import id_problem
from services.meter.repository import ConsumptionRow, MeterRepository
from services.readings.service import ReadingService

MAX_INTERVALS = 10_000
# The work of one SummarizeConsumption call is the meter readings it sums, about its intervals'
# total length: at most 62 interval-days per call (two 31-day windows; AnalyticsService sends
# at most 31 days a call, see services/analytics/downstream.py). At a reading a minute that is
# 89,280 index entries, tens of milliseconds; 10,000 intervals of 31 days would be 446M.
DAY_US = 24 * 3600 * 1_000_000
MAX_INTERVAL_DAYS = 62


class MeterReadings(ReadingService[MeterRepository]):
    """The shared ingest and status use cases, and SummarizeConsumption."""

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
