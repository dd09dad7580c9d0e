"""AnalyticsService's clients of VehicleService and MeterService: the only module that speaks
to them. gRPC failures become domain errors here; every call carries a deadline."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc

from services.analytics.correlation import ChargerSpan, Consumption, Session
from services.common.errors import DeadlineExceeded, NotFound, Unavailable
from services.common.timeconv import (
    DAY_US,
    duration_to_micros,
    micros_to_duration,
    micros_to_timestamp,
    timestamp_to_micros,
)


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


@dataclass(frozen=True)
class ChargerOverlap:
    """A vehicle naming two chargers at once over [start_us, end_us] (micros)."""

    vehicle_id: str
    charger_id: str
    other_charger_id: str
    start_us: int
    end_us: int


@dataclass(frozen=True)
class DeviceReport:
    """One device's reporting over the window, as its service summarized it (micros); a
    vehicle's `charger_ids` and `overlaps` too."""

    device_id: str
    received: int
    expected: int | None
    usual_interval_us: int | None
    gaps: list[tuple[int, int]]
    conflicts: int
    charger_ids: list[str]
    overlaps: list[ChargerOverlap]

    @property
    def completeness(self) -> float | None:
        """received / expected; None when expected is unknown or 0."""
        return self.received / self.expected if self.expected else None


# Statuses per ListChargerStatuses page read (its maximum).
PAGE_SIZE = 10_000
# Device-days per ListReportingSummaries page: each page reads every reading of its devices over
# the window, and must finish within DOWNSTREAM_TIMEOUT_SECONDS (a day of 1000 vehicles read
# every minute took 10 s in one page on a loaded 2-core machine; 100 took 0.5 s; 7 days of 200,
# over 12 s). A page that still runs out of time is asked for again in halves.
REPORTING_DEVICE_DAYS_PER_PAGE = 200


def per_read(device_days: int, window_us: int) -> int:
    """Devices one downstream read may take so that it reads `device_days` days of devices
    over a window of `window_us`: at least one."""
    return max(1, int(device_days * DAY_US // max(window_us, 1)))


def _session(message: vehicle_pb2.ChargingSession) -> Session:
    return Session(
        vehicle_id=message.vehicle_id,
        charger_id=message.charger_id,
        start_us=timestamp_to_micros(message.start_time),
        end_us=timestamp_to_micros(message.end_time),
        kwh_delivered_dc=message.kwh_delivered_dc,
        reading_count=message.reading_count,
        battery_temp_sum=message.battery_temp_sum,
        battery_temp_count=message.battery_temp_count,
        first_reading_us=timestamp_to_micros(message.first_reading_time),
        last_reading_us=timestamp_to_micros(message.last_reading_time),
    )


def _span(session: Session) -> meter_pb2.SessionSpan:
    return meter_pb2.SessionSpan(
        charger_id=session.charger_id,
        start_time=micros_to_timestamp(session.start_us),
        end_time=micros_to_timestamp(session.end_us),
        kwh_delivered_dc=max(session.kwh_delivered_dc, 0.0),
    )


class Downstream:
    def __init__(self, vehicle_channel: grpc.Channel, meter_channel: grpc.Channel) -> None:
        self._vehicles = vehicle_service_pb2_grpc.VehicleServiceStub(vehicle_channel)
        self._meters = meter_service_pb2_grpc.MeterServiceStub(meter_channel)

    def sessions(
        self, vehicle_id: str, start_us: int, end_us: int, gap_us: int, timeout: float
    ) -> list[Session]:
        """The vehicle's sessions in [start_us, end_us), ordered by start."""
        request = vehicle_service_pb2.ListChargingSessionsRequest(
            vehicle_id=vehicle_id,
            start_time=micros_to_timestamp(start_us),
            end_time=micros_to_timestamp(end_us),
            session_gap=micros_to_duration(gap_us),
        )
        try:
            response = self._vehicles.ListChargingSessions(request, timeout=timeout)
        except grpc.RpcError as error:
            raise _translate(error, "VehicleService") from None
        return [_session(s) for s in response.sessions]

    def charger_sessions(
        self,
        charger_ids: Sequence[str],
        ranges: Sequence[ChargerSpan],
        excluded_vehicle_id: str,
        window: tuple[int, int, int],
        timeout: float,
    ) -> list[Session]:
        """The other vehicles' sessions on the chargers over the window, and around the ranges
        (ListChargerSessions); `window` is (start_us, end_us, gap_us). One call."""
        start_us, end_us, gap_us = window
        request = vehicle_service_pb2.ListChargerSessionsRequest(
            charger_ids=charger_ids,
            ranges=[
                vehicle_service_pb2.ChargerTimeRange(
                    charger_id=item.charger_id,
                    start_time=micros_to_timestamp(item.start_us),
                    end_time=micros_to_timestamp(item.end_us),
                )
                for item in ranges
            ],
            excluded_vehicle_id=excluded_vehicle_id,
            start_time=micros_to_timestamp(start_us),
            end_time=micros_to_timestamp(end_us),
            session_gap=micros_to_duration(gap_us),
        )
        try:
            response = self._vehicles.ListChargerSessions(request, timeout=timeout)
        except grpc.RpcError as error:
            raise _translate(error, "VehicleService") from None
        return [_session(s) for s in response.sessions]

    def attribute(
        self,
        sessions: Sequence[Session],
        others: Sequence[Session],
        start_us: int,
        end_us: int,
        timeout: float,
    ) -> list[Consumption]:
        """The AC MeterService attributes to each of `sessions`, in order: one call."""
        request = meter_service_pb2.AttributeConsumptionRequest(
            sessions=[_span(s) for s in sessions],
            other_sessions=[_span(s) for s in others],
            start_time=micros_to_timestamp(start_us),
            end_time=micros_to_timestamp(end_us),
        )
        try:
            response = self._meters.AttributeConsumption(request, timeout=timeout)
        except grpc.RpcError as error:
            raise _translate(error, "MeterService") from None
        return [
            Consumption(
                kwh_consumed_ac=c.kwh_consumed_ac,
                reading_count=c.reading_count,
                covered_us=duration_to_micros(c.covered_duration),
                implausible_count=c.implausible_reading_count,
                unknown_energy_count=c.unknown_energy_count,
            )
            for c in response.consumptions
        ]

    def reported_chargers(self, timeout: float) -> list[str]:
        """Every charger that has reported a meter reading (ListChargerStatuses, page by page),
        by id; `timeout` bounds each page."""
        chargers: list[str] = []
        token = ""
        while True:
            request = meter_service_pb2.ListChargerStatusesRequest(
                page_size=PAGE_SIZE, page_token=token
            )
            try:
                response = self._meters.ListChargerStatuses(request, timeout=timeout)
            except grpc.RpcError as error:
                raise _translate(error, "MeterService") from None
            chargers.extend(status.meter_id for status in response.charger_statuses)
            token = response.next_page_token
            if not token:
                return chargers

    def reporting(
        self,
        vehicles: bool,
        start_us: int,
        end_us: int,
        gap_us: int,
        budget: Callable[[], float],
    ) -> list[DeviceReport]:
        """Every charger's (or, with `vehicles`, every vehicle's) reporting over
        [start_us, end_us) (ListReportingSummaries, page by page, in id order); `budget()`
        gives each page's timeout (and raises once the caller's deadline has passed)."""
        service = "VehicleService" if vehicles else "MeterService"
        call = (
            self._vehicles.ListReportingSummaries
            if vehicles
            else self._meters.ListReportingSummaries
        )
        module = vehicle_service_pb2 if vehicles else meter_service_pb2
        reports: list[DeviceReport] = []
        token = ""
        page_size = per_read(REPORTING_DEVICE_DAYS_PER_PAGE, end_us - start_us)
        while True:
            request = module.ListReportingSummariesRequest(
                start_time=micros_to_timestamp(start_us),
                end_time=micros_to_timestamp(end_us),
                gap=micros_to_duration(gap_us),
                page_size=page_size,
                page_token=token,
            )
            try:
                response = call(request, timeout=budget())
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and page_size > 1:
                    # A page too slow for the deadline (a loaded database): the same page in
                    # halves. The caller's own deadline still bounds the whole call.
                    page_size //= 2
                    continue
                raise _translate(error, service) from None
            reports.extend(_report(summary, vehicles) for summary in response.reporting_summaries)
            token = response.next_page_token
            if not token:
                return reports


def _report(summary: Any, vehicle: bool) -> DeviceReport:
    return DeviceReport(
        device_id=summary.vehicle_id if vehicle else summary.meter_id,
        received=summary.received_count,
        expected=summary.expected_count if summary.HasField("expected_count") else None,
        usual_interval_us=(
            duration_to_micros(summary.usual_interval)
            if summary.HasField("usual_interval")
            else None
        ),
        gaps=[
            (timestamp_to_micros(gap.start_time), timestamp_to_micros(gap.end_time))
            for gap in summary.gaps
        ],
        conflicts=summary.conflict_count,
        charger_ids=list(summary.charger_ids) if vehicle else [],
        overlaps=[
            ChargerOverlap(
                vehicle_id=overlap.vehicle_id,
                charger_id=overlap.charger_id,
                other_charger_id=overlap.other_charger_id,
                start_us=timestamp_to_micros(overlap.start_time),
                end_us=timestamp_to_micros(overlap.end_time),
            )
            for overlap in summary.charger_overlaps
        ]
        if vehicle
        else [],
    )
