"""Streams a Fleet's readings into MeterService and VehicleService over many concurrent
IngestReadings streams: as fast as they accept (backfill) or in accelerated real time (live)."""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.client import ResilientStreamSender
from services.simulate.fleet import Fleet, MeterRow, VehicleRow

_DONE = None
# Readings per IngestReadings stream: a stream's readings are acknowledged when it ends, and
# kept by the client until then to be sent again after a failure.
STREAM_READINGS = 50_000


def meter_request(rows: Sequence[MeterRow]) -> meter_service_pb2.IngestReadingsRequest:
    return meter_service_pb2.IngestReadingsRequest(
        readings=[
            meter_pb2.MeterReading(
                meter_id=row[0],
                kwh_consumed_ac=row[2],
                voltage=row[3],
                timestamp=Timestamp(seconds=row[1] // 1_000_000, nanos=row[1] % 1_000_000 * 1000),
            )
            for row in rows
        ]
    )


def vehicle_request(rows: Sequence[VehicleRow]) -> vehicle_service_pb2.IngestReadingsRequest:
    return vehicle_service_pb2.IngestReadingsRequest(
        readings=[
            vehicle_pb2.VehicleReading(
                vehicle_id=row[0],
                charger_id=row[2],
                soc=row[3],
                kwh_delivered_dc=row[4],
                battery_temp=row[5],
                timestamp=Timestamp(seconds=row[1] // 1_000_000, nanos=row[1] % 1_000_000 * 1000),
            )
            for row in rows
        ]
    )


@dataclass
class StreamTotals:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    resends: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class FeedResult:
    meter: StreamTotals
    vehicle: StreamTotals
    sent: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class _Stream(threading.Thread):
    """One sender: what its queue holds goes out over IngestReadings streams that are sent
    again after a failure (ResilientStreamSender), until it is told it is done."""

    def __init__(
        self,
        call: Callable[..., Any],
        make_request: Callable[[Sequence[Any]], Any],
        totals: StreamTotals,
        lock: threading.Lock,
        *,
        batch_size: int,
        stream_readings: int,
    ) -> None:
        super().__init__(daemon=True)
        self.requests: queue.Queue[Any] = queue.Queue(maxsize=8)  # bounded: backpressure
        self._sender = ResilientStreamSender(
            call, make_request, batch_size=batch_size, stream_readings=stream_readings
        )
        self._totals = totals
        self._lock = lock

    def run(self) -> None:
        try:
            while (rows := self.requests.get()) is not _DONE:
                if rows:
                    self._sender.send(rows)
                else:  # an empty list asks for what was sent so far to be delivered now
                    self._sender.flush()
            sent = self._sender.flush()
        except grpc.RpcError as error:
            with self._lock:
                self._totals.errors.append(f"{error.code().name}: {error.details()}")
            while self.requests.get() is not _DONE:  # keep the producer from blocking
                pass
            return
        with self._lock:
            self._totals.accepted += sent.accepted
            self._totals.duplicates += sent.duplicates
            self._totals.rejected += sent.rejected
            self._totals.resends += sent.resends


class Progress:
    """A one-line progress bar on stderr with the sending rate."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.sent = 0
        self._enabled = enabled
        self._started = time.perf_counter()
        self._last_print = 0.0

    def advance(self, count: int) -> None:
        self.sent += count
        now = time.perf_counter()
        if self._enabled and now - self._last_print >= 0.5:
            self._last_print = now
            self._print(now)

    def _print(self, now: float) -> None:
        share = self.sent / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        rate = self.sent / max(now - self._started, 1e-9)
        sys.stderr.write(f"\r[{bar:<30}] {share:6.1%} {self.sent:>12,} readings {rate:>10,.0f}/s")
        sys.stderr.flush()

    def finish(self) -> None:
        if self._enabled:
            self._print(time.perf_counter())
            sys.stderr.write("\n")


def feed(
    fleet: Fleet,
    meter_channel: grpc.Channel,
    vehicle_channel: grpc.Channel,
    *,
    streams: int = 8,
    batch_size: int = 500,
    speed: float | None = None,
    progress: bool = False,
) -> FeedResult:
    """Sends the whole fleet. `speed` None: backfill, as fast as accepted; otherwise live, one
    simulated minute every 60/speed seconds, each stream sending its share every minute."""
    lock = threading.Lock()
    meter_totals, vehicle_totals = StreamTotals(), StreamTotals()
    meter_call = meter_service_pb2_grpc.MeterServiceStub(meter_channel).IngestReadings
    vehicle_call = vehicle_service_pb2_grpc.VehicleServiceStub(vehicle_channel).IngestReadings
    live = speed is not None
    sizes = {"batch_size": batch_size, "stream_readings": STREAM_READINGS}
    meter_streams = [
        _Stream(meter_call, meter_request, meter_totals, lock, **sizes) for _ in range(streams)
    ]
    vehicle_streams = [
        _Stream(vehicle_call, vehicle_request, vehicle_totals, lock, **sizes)
        for _ in range(streams)
    ]
    for stream in meter_streams + vehicle_streams:
        stream.start()
    config = fleet.config
    bar = Progress(
        config.minutes * (config.chargers + min(config.vehicles, config.chargers)), progress
    )
    meter_buckets: list[list[MeterRow]] = [[] for _ in range(streams)]
    vehicle_buckets: list[list[VehicleRow]] = [[] for _ in range(streams)]
    started = time.perf_counter()

    def flush(index: int, at_least: int) -> None:
        if len(meter_buckets[index]) >= at_least and meter_buckets[index]:
            meter_streams[index].requests.put(meter_buckets[index])
            meter_buckets[index] = []
        if len(vehicle_buckets[index]) >= at_least and vehicle_buckets[index]:
            vehicle_streams[index].requests.put(vehicle_buckets[index])
            vehicle_buckets[index] = []

    for minute in fleet.minutes():
        if live:
            due = started + minute.index * 60.0 / speed  # type: ignore[operator]
            time.sleep(max(0.0, due - time.perf_counter()))
        for row in minute.meter_rows:
            meter_buckets[hash(row[0]) % streams].append(row)
        for vrow in minute.vehicle_rows:
            vehicle_buckets[hash(vrow[0]) % streams].append(vrow)
        for index in range(streams):
            flush(index, 1 if live else batch_size)
            if live:  # deliver each simulated minute as it happens
                meter_streams[index].requests.put([])
                vehicle_streams[index].requests.put([])
        bar.advance(len(minute.meter_rows) + len(minute.vehicle_rows))
    for index in range(streams):
        flush(index, 1)
    for stream in meter_streams + vehicle_streams:
        stream.requests.put(_DONE)
    for stream in meter_streams + vehicle_streams:
        stream.join()
    bar.finish()
    return FeedResult(meter_totals, vehicle_totals, bar.sent, time.perf_counter() - started)
