"""gRPC entrypoint of MeterService: the shared reading RPCs (services.readings.servicer) bound
to its names, SummarizeConsumption and AttributeConsumption."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc

from services.common.errors import InvalidArgument, translate_errors
from services.common.timeconv import (
    MAX_TIMESTAMP_SECONDS,
    MICROS,
    MIN_TIMESTAMP_SECONDS,
    micros_to_duration,
    timestamp_to_micros,
)
from services.common.validation import time_violations
from services.meter.repository import SpanColumns
from services.meter.service import MeterReadings
from services.readings.servicer import ReadingServicer


def _valid_span_seconds(intervals: Sequence[meter_pb2.ConsumptionInterval]) -> int:
    """The total length of the intervals whose times are valid and in order (the others are
    refused one by one, naming their fields), in whole seconds: cheap enough to refuse a call
    that is too large before anything else is spent on it."""
    total = 0
    for interval in intervals:
        start, end = interval.start_time.seconds, interval.end_time.seconds
        if MIN_TIMESTAMP_SECONDS <= start <= end <= MAX_TIMESTAMP_SECONDS:
            total += end - start
    return total


def _time_range_violations(
    prefix: str,
    message: meter_pb2.ConsumptionInterval
    | meter_pb2.SessionSpan
    | meter_service_pb2.AttributeConsumptionRequest,
) -> list[tuple[str, str]]:
    """(field path, why) for a message's start_time and end_time that are unset or out of the
    Timestamp range; `prefix` leads the path ("intervals[3]." ...)."""
    violations = []
    for name in ("start_time", "end_time"):
        if message.HasField(name):
            violations += time_violations([(prefix + name, getattr(message, name))])
        else:
            violations.append((prefix + name, "must be set, got nothing"))
    return violations


def _spans(
    field: str, spans: Sequence[meter_pb2.SessionSpan]
) -> tuple[SpanColumns, list[tuple[str, str]]]:
    """The spans as columns, and the violations of their times (unset or out of range)."""
    violations = []
    for index, span in enumerate(spans):
        violations += _time_range_violations(f"{field}[{index}].", span)
    if violations:
        return SpanColumns([], [], [], []), violations
    return (
        SpanColumns(
            [span.charger_id for span in spans],
            [timestamp_to_micros(span.start_time) for span in spans],
            [timestamp_to_micros(span.end_time) for span in spans],
            [span.kwh_delivered_dc for span in spans],
        ),
        [],
    )


class MeterServicer(ReadingServicer[MeterReadings], meter_service_pb2_grpc.MeterServiceServicer):
    """MeterService: the shared ingest and status RPCs, SummarizeConsumption and
    AttributeConsumption."""

    GetChargerStatus = ReadingServicer.get_status
    ListChargerStatuses = ReadingServicer.list_statuses

    @translate_errors
    def SummarizeConsumption(
        self,
        request: meter_service_pb2.SummarizeConsumptionRequest,
        context: grpc.ServicerContext,
    ) -> meter_service_pb2.SummarizeConsumptionResponse:
        self._auth.require_reader(context)
        intervals = request.intervals
        self._readings.check_work(len(intervals), _valid_span_seconds(intervals) * MICROS)
        violations = []
        for index, interval in enumerate(intervals):
            violations += _time_range_violations(f"intervals[{index}].", interval)
        if violations:
            raise InvalidArgument(violations)
        totals = self._readings.summarize(
            [interval.charger_id for interval in intervals],
            [timestamp_to_micros(interval.start_time) for interval in intervals],
            [timestamp_to_micros(interval.end_time) for interval in intervals],
        )
        return meter_service_pb2.SummarizeConsumptionResponse(
            summaries=[
                meter_pb2.ConsumptionSummary(
                    charger_id=interval.charger_id,
                    start_time=interval.start_time,
                    end_time=interval.end_time,
                    kwh_consumed_ac=total.kwh_consumed_ac,
                    reading_count=total.reading_count,
                    unknown_energy_count=total.unknown_energy_count,
                )
                for interval, total in zip(intervals, totals, strict=True)
            ]
        )

    @translate_errors
    def AttributeConsumption(
        self,
        request: meter_service_pb2.AttributeConsumptionRequest,
        context: grpc.ServicerContext,
    ) -> meter_service_pb2.AttributeConsumptionResponse:
        self._auth.require_reader(context)
        violations = _time_range_violations("", request)
        sessions, problems = _spans("sessions", request.sessions)
        others, other_problems = _spans("other_sessions", request.other_sessions)
        violations += problems + other_problems
        if violations:
            raise InvalidArgument(violations)
        rows = self._readings.attribute(
            sessions,
            others,
            timestamp_to_micros(request.start_time),
            timestamp_to_micros(request.end_time),
        )
        return meter_service_pb2.AttributeConsumptionResponse(
            consumptions=[
                meter_pb2.SessionConsumption(
                    charger_id=span.charger_id,
                    start_time=span.start_time,
                    end_time=span.end_time,
                    kwh_consumed_ac=row.kwh_consumed_ac,
                    reading_count=row.reading_count,
                    covered_duration=micros_to_duration(round(row.covered_seconds * MICROS)),
                    implausible_reading_count=row.implausible_count,
                    unknown_energy_count=row.unknown_energy_count,
                )
                for span, row in zip(request.sessions, rows, strict=True)
            ]
        )
