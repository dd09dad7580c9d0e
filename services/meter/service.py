"""MeterService use cases (the shared ones and SummarizeConsumption); raises domain errors,
knows neither gRPC nor SQL."""

from __future__ import annotations

import math

from services.common.errors import InvalidArgument
from services.common.timeconv import DAY_US
from services.common.validation import id_problem
from services.meter.repository import (
    AttributionRow,
    ConsumptionRow,
    MeterRepository,
    SpanColumns,
)
from services.readings.service import ReadingService

MAX_INTERVALS = 10_000
# The work of one SummarizeConsumption call is the meter readings it sums, about its intervals'
# total length: at most 62 interval-days per call (two 31-day windows; AnalyticsService sends
# at most 31 days a call, see services/analytics/downstream.py). At a reading a minute that is
# 89,280 index entries, tens of milliseconds; 10,000 intervals of 31 days would be 446M.
MAX_INTERVAL_DAYS = 62
# AttributeConsumption: sessions of one window (AnalyticsService's largest: 31 days) in all.
MAX_ATTRIBUTION_SESSIONS = 10_000
MAX_WINDOW_DAYS = 31


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

    def attribute(
        self,
        sessions: SpanColumns,
        others: SpanColumns,
        window_start_us: int,
        window_end_us: int,
    ) -> list[AttributionRow]:
        """The AC attributed to each of `sessions` (see MeterRepository.attribute).

        INVALID_ARGUMENT naming the field: a window that ends before it starts or lasts more
        than MAX_WINDOW_DAYS, more than MAX_ATTRIBUTION_SESSIONS sessions in all, a malformed
        charger id, a span ending before it starts or reaching outside the window, a DC
        energy that is negative or not finite."""
        count = len(sessions.charger_ids) + len(others.charger_ids)
        if count > MAX_ATTRIBUTION_SESSIONS:
            raise InvalidArgument(
                [
                    (
                        "sessions",
                        f"at most {MAX_ATTRIBUTION_SESSIONS} with other_sessions, got {count}",
                    )
                ]
            )
        if window_end_us < window_start_us:
            raise InvalidArgument([("end_time", "must not be before start_time")])
        if window_end_us - window_start_us > MAX_WINDOW_DAYS * DAY_US:
            raise InvalidArgument(
                [("end_time", f"must be at most {MAX_WINDOW_DAYS} days after start_time")]
            )
        violations = [
            *_span_violations("sessions", sessions, window_start_us, window_end_us),
            *_span_violations("other_sessions", others, window_start_us, window_end_us),
        ]
        if violations:
            raise InvalidArgument(violations)
        if not sessions.charger_ids:
            return []
        return self._repository.attribute(sessions, others, window_start_us, window_end_us)


def _span_violations(
    field: str, spans: SpanColumns, window_start_us: int, window_end_us: int
) -> list[tuple[str, str]]:
    violations = []
    for index, (charger_id, start, end, dc) in enumerate(zip(*spans, strict=True)):
        path = f"{field}[{index}]"
        problem = id_problem(charger_id)
        if problem:
            violations.append((f"{path}.charger_id", problem))
        if end < start:
            violations.append((f"{path}.end_time", "must not be before start_time"))
        for name, outside in (
            ("start_time", start < window_start_us),
            ("end_time", end > window_end_us),
        ):
            if outside:
                violations.append(
                    (f"{path}.{name}", "the span must lie within the window [start_time, end_time]")
                )
        if not math.isfinite(dc) or dc < 0:
            violations.append((f"{path}.kwh_delivered_dc", f"must be finite and >= 0, got {dc!r}"))
    return violations
