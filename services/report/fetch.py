"""What the report asks AnalyticsService, over one channel: the whole fleet's efficiencies
(every page of ListChargerEfficiencies), the worst chargers' efficiency hour by hour (one
ListChargerEfficiencies call per point, charger_ids = those chargers), and the completeness
summary (GetDataCompleteness, every page)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from energy.analytics.v1 import analytics_pb2, analytics_service_pb2, analytics_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services import client
from services.common.contracts import FULL_NAMES
from services.report.model import Charger, Fleet, buckets

# Retries as the other clients have them (services/client.py), but no default timeout: gRPC
# applies the smaller of the service config's timeout and the call's deadline, and a
# fleet-wide listing takes longer than the 30 s the other clients' config allows.
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": FULL_NAMES["analytics"]}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
                },
            }
        ],
        "retryThrottling": {"maxTokens": 20, "tokenRatio": 0.1},
    }
)
CHANNEL_OPTIONS = [
    *(option for option in client.CHANNEL_OPTIONS if option[0] != "grpc.service_config"),
    ("grpc.service_config", SERVICE_CONFIG),
]
FLEET_PAGE_SIZE = 1000
COMPLETENESS_PAGE_SIZE = 1000
# Least complete chargers and vehicles shown.
LEAST_COMPLETE = 10


def channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC))
    return stamp


def _duration(length: timedelta) -> Duration:
    span = Duration()
    span.FromTimedelta(length)
    return span


def _datetime(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


class Analytics:
    """AnalyticsService's calls the report makes, each with the same deadline."""

    def __init__(self, channel: grpc.Channel, timeout: float) -> None:
        self._stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        self._timeout = timeout

    def _efficiencies(
        self, end: datetime, window: timedelta, charger_ids: list[str], page_size: int
    ) -> tuple[list[analytics_pb2.ChargerEfficiency], Any]:
        """Every page of one listing: the chargers, and the first page's response."""
        rows: list[analytics_pb2.ChargerEfficiency] = []
        first = None
        token = ""
        while True:
            response = self._stub.ListChargerEfficiencies(
                analytics_service_pb2.ListChargerEfficienciesRequest(
                    end_time=_timestamp(end),
                    window=_duration(window),
                    charger_ids=charger_ids,
                    page_size=page_size,
                    page_token=token,
                ),
                timeout=self._timeout,
            )
            first = first or response
            rows.extend(response.charger_efficiencies)
            token = response.next_page_token
            if not token:
                return rows, first

    def fleet(self, end: datetime, window: timedelta) -> Fleet:
        rows, first = self._efficiencies(end, window, [], FLEET_PAGE_SIZE)
        return Fleet(
            start=_datetime(first.start_time),
            end=_datetime(first.end_time),
            chargers=[Charger.of(row) for row in rows],
            median=(
                first.fleet_median_efficiency if first.HasField("fleet_median_efficiency") else None
            ),
            mad=first.fleet_efficiency_mad if first.HasField("fleet_efficiency_mad") else None,
        )

    def series(
        self,
        charger_ids: list[str],
        start: datetime,
        end: datetime,
        progress: Callable[[int, int], None] | None = None,
    ) -> Series:
        """The chargers' efficiency over [start, end), a point per bucket (model.buckets)."""
        step, ranges = buckets(start, end)
        series = Series(step=step, ranges=ranges, values={c: [] for c in charger_ids})
        if not charger_ids:
            return series
        for done, (left, right) in enumerate(ranges):
            rows, _ = self._efficiencies(right, right - left, charger_ids, len(charger_ids))
            found = {row.charger_id: Charger.of(row).current.efficiency for row in rows}
            for charger_id, values in series.values.items():
                values.append(found.get(charger_id))
            if progress is not None:
                progress(done + 1, len(ranges))
        return series

    def completeness(self, end: datetime, window: timedelta) -> Completeness:
        """Every page of GetDataCompleteness, keeping the totals, the unreported chargers and
        the overlaps (on every page) and the LEAST_COMPLETE first chargers and vehicles."""
        result = Completeness()
        token = ""
        while True:
            page = self._stub.GetDataCompleteness(
                analytics_service_pb2.GetDataCompletenessRequest(
                    end_time=_timestamp(end),
                    window=_duration(window),
                    page_size=COMPLETENESS_PAGE_SIZE,
                    page_token=token,
                ),
                timeout=self._timeout,
            )
            if result.page is None:
                result.page = page
            result.chargers.extend(page.chargers[: LEAST_COMPLETE - len(result.chargers)])
            result.vehicles.extend(page.vehicles[: LEAST_COMPLETE - len(result.vehicles)])
            token = page.next_page_token
            # Vehicles follow the chargers: once enough of them are in, the rest is not needed.
            if not token or len(result.vehicles) >= LEAST_COMPLETE:
                return result


@dataclass
class Series:
    """Efficiency over time: the points' [start, end) ranges, and per charger a value per
    range (None where unknown)."""

    step: timedelta
    ranges: list[tuple[datetime, datetime]]
    values: dict[str, list[float | None]]


@dataclass
class Completeness:
    """GetDataCompleteness over the window: its first page (totals, unreported chargers and
    overlaps) and the least complete devices; `unavailable` says why there is none."""

    page: analytics_pb2.DataCompleteness | None = None
    chargers: list[analytics_pb2.DeviceCompleteness] = field(default_factory=list)
    vehicles: list[analytics_pb2.DeviceCompleteness] = field(default_factory=list)
    unavailable: str = ""
