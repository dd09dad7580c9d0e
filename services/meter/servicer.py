"""gRPC entrypoint of MeterService: the shared reading RPCs (services.readings.servicer) bound
to its names, and SummarizeConsumption."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc

from services.common.errors import InvalidArgument, translate_errors
from services.common.timeconv import (
    MAX_TIMESTAMP_SECONDS,
    MICROS,
    MIN_TIMESTAMP_SECONDS,
    timestamp_to_micros,
)
from services.common.validation import time_violations
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


class MeterServicer(ReadingServicer[MeterReadings], meter_service_pb2_grpc.MeterServiceServicer):
    """MeterService: the shared ingest and status RPCs, and SummarizeConsumption."""

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
            for name in ("start_time", "end_time"):
                path = f"intervals[{index}].{name}"
                if interval.HasField(name):
                    violations += time_violations([(path, getattr(interval, name))])
                else:
                    violations.append((path, "must be set, got nothing"))
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
