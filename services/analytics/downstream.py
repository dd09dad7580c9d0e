"""AnalyticsService's clients of VehicleService and MeterService: the only module that speaks
to them. gRPC failures become domain errors here; every call carries a deadline."""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration

from services.analytics.correlation import Consumption, Interval, Session
from services.common.errors import DeadlineExceeded, NotFound, Unavailable
from services.common.timeconv import micros_to_timestamp, timestamp_to_micros

# MeterService takes at most 10,000 intervals and 62 interval-days per SummarizeConsumption
# call (services/meter/service.py); a call here carries at most half of each. The intervals of
# one window are clipped to it (at most 31 days each) and one vehicle's sessions never overlap,
# so a 31-day window needs one call, two when the tolerances add up past 31 days.
INTERVALS_PER_CALL = 5_000
SPAN_PER_CALL_US = 31 * 24 * 3600 * 1_000_000


def _calls(intervals: Sequence[Interval]) -> list[Sequence[Interval]]:
    """The intervals in order, cut into calls of at most INTERVALS_PER_CALL intervals and
    SPAN_PER_CALL_US of total length (a longer interval goes alone)."""
    calls: list[Sequence[Interval]] = []
    first, span = 0, 0
    for index, interval in enumerate(intervals):
        length = interval.end_us - interval.start_us
        if index > first and (
            index - first >= INTERVALS_PER_CALL or span + length > SPAN_PER_CALL_US
        ):
            calls.append(intervals[first:index])
            first, span = index, 0
        span += length
    if first < len(intervals):
        calls.append(intervals[first:])
    return calls


def _translate(error: grpc.RpcError, service: str) -> Exception:
    code = error.code()
    details = error.details()
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{service} did not answer in time")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        return Unavailable(f"{service} unavailable: {details}")
    # Anything else means we sent something wrong or it broke: a bug, reported as INTERNAL.
    return RuntimeError(f"{service} answered {code.name}: {details}")


class Downstream:
    def __init__(self, vehicle_channel: grpc.Channel, meter_channel: grpc.Channel) -> None:
        self._vehicles = vehicle_service_pb2_grpc.VehicleServiceStub(vehicle_channel)
        self._meters = meter_service_pb2_grpc.MeterServiceStub(meter_channel)

    def sessions(
        self, vehicle_id: str, start_us: int, end_us: int, gap_us: int, timeout: float
    ) -> list[Session]:
        gap = Duration(seconds=gap_us // 1_000_000, nanos=(gap_us % 1_000_000) * 1000)
        request = vehicle_service_pb2.ListChargingSessionsRequest(
            vehicle_id=vehicle_id,
            start_time=micros_to_timestamp(start_us),
            end_time=micros_to_timestamp(end_us),
            session_gap=gap,
        )
        try:
            response = self._vehicles.ListChargingSessions(request, timeout=timeout)
        except grpc.RpcError as error:
            raise _translate(error, "VehicleService") from None
        return [
            Session(
                charger_id=s.charger_id,
                start_us=timestamp_to_micros(s.start_time),
                end_us=timestamp_to_micros(s.end_time),
                kwh_delivered_dc=s.kwh_delivered_dc,
                reading_count=s.reading_count,
                battery_temp_sum=s.battery_temp_sum,
                battery_temp_count=s.battery_temp_count,
            )
            for s in response.sessions
        ]

    def consumption(self, intervals: Sequence[Interval], timeout: float) -> list[Consumption]:
        """As few calls as MeterService's limits allow (one for any realistic window)."""
        deadline = time.monotonic() + timeout
        found: list[Consumption] = []
        for chunk in _calls(intervals):
            request = meter_service_pb2.SummarizeConsumptionRequest(
                intervals=[
                    meter_pb2.ConsumptionInterval(
                        charger_id=interval.charger_id,
                        start_time=micros_to_timestamp(interval.start_us),
                        end_time=micros_to_timestamp(interval.end_us),
                    )
                    for interval in chunk
                ]
            )
            try:
                response = self._meters.SummarizeConsumption(
                    request, timeout=max(deadline - time.monotonic(), 0.0)
                )
            except grpc.RpcError as error:
                raise _translate(error, "MeterService") from None
            found += [Consumption(s.kwh_consumed_ac, s.reading_count) for s in response.summaries]
        return found
