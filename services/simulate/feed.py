"""Streams a Fleet's readings into MeterService and VehicleService over many concurrent
IngestReadings streams: as fast as they accept (backfill) or in accelerated real time (live)."""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.client import ResilientStreamSender
from services.simulate.fleet import GROUP_SIZE, MINUTE_US, Fleet, MeterRow, VehicleRow, meter_id

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
    """What one service acknowledged (readings) and what went wrong on the way."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    resends: int = 0
    errors: list[str] = field(default_factory=list)
    rejections: list[Any] = field(default_factory=list)  # the first few, to say why

    @property
    def acknowledged(self) -> int:
        return self.accepted + self.duplicates + self.rejected


@dataclass
class FeedResult:
    """`sent`: readings taken from the fleet to send (all unless stopped); `total`: readings in
    the whole run; `seconds`: wall time; `end_us`: the end (exclusive, micros) of the last
    simulated minute with an acknowledged reading; `charging`: the latest acknowledged vehicle
    reading that delivered energy (else the latest acknowledged one), None when there is none."""

    meter: StreamTotals
    vehicle: StreamTotals
    sent: int
    seconds: float
    total: int = 0
    end_us: int | None = None
    charging: VehicleRow | None = None
    interrupted: bool = False

    @property
    def acknowledged(self) -> int:
        return self.meter.acknowledged + self.vehicle.acknowledged

    @property
    def rate(self) -> float:
        """Acknowledged readings per second."""
        return self.acknowledged / self.seconds if self.seconds else 0.0


def _preference(row: VehicleRow) -> tuple[bool, int, str]:
    """Charging first, then the latest, then by id (so that the choice is reproducible)."""
    return row[4] > 0, row[1], row[0]


class _Acknowledgements:
    """What the services acknowledged so far, fed by every sender thread."""

    def __init__(self, start_us: int, streams: int, chargers: int) -> None:
        self.lock = threading.Lock()
        self.meter, self.vehicle = StreamTotals(), StreamTotals()
        self._start_us = start_us
        self._streams = streams
        self._chargers = chargers
        # Per stream (entities are spread over streams by hash, each stream in time order):
        # the end of the latest minute it had acknowledged.
        self._meter_ends: dict[int, int] = {}
        self._vehicle_ends: dict[int, int] = {}
        self.charging: VehicleRow | None = None

    def stream_of(self, entity_id: str) -> int:
        """The stream that carries an entity's readings (as feed() spreads them)."""
        return hash(entity_id) % self._streams

    def _saw(self, ends: dict[int, int], rows: Sequence[MeterRow] | Sequence[VehicleRow]) -> None:
        read_us = rows[-1][1]
        end = self._start_us + ((read_us - self._start_us) // MINUTE_US + 1) * MINUTE_US
        index = self.stream_of(rows[-1][0])
        ends[index] = max(ends.get(index, self._start_us), end)

    @property
    def end_us(self) -> int | None:
        """End (exclusive, micros) of the span over which the chosen vehicle's readings and the
        meter readings of every charger it may use were all acknowledged; None when empty. After
        a Ctrl-C the streams stop at different minutes: beyond this end, the vehicle's DC could
        be acknowledged without the AC it drew, and its efficiency would look above 1."""
        if self.charging is None:
            return None
        group = int(self.charging[0].rsplit("-", 1)[1]) // GROUP_SIZE
        chargers = range(group * GROUP_SIZE, min((group + 1) * GROUP_SIZE, self._chargers))
        ends = [self._vehicle_ends.get(self.stream_of(self.charging[0]), self._start_us)]
        ends += [
            self._meter_ends.get(self.stream_of(meter_id(c)), self._start_us) for c in chargers
        ]
        end = min(ends)
        return end if end > self._start_us else None

    def _count(self, totals: StreamTotals, response: Any) -> None:
        totals.accepted += response.accepted
        totals.duplicates += response.duplicates
        totals.rejected += response.rejected
        totals.rejections.extend(response.rejections[: max(0, 3 - len(totals.rejections))])

    def meters(self, rows: Sequence[MeterRow], response: Any) -> None:
        with self.lock:
            self._count(self.meter, response)
            if rows:  # a stream's rows are in time order: the last is in its latest minute
                self._saw(self._meter_ends, rows)

    def vehicles(self, rows: Sequence[VehicleRow], response: Any) -> None:
        # The latest row that delivered energy: a vehicle that charged, worth asking about.
        charging = next((row for row in reversed(rows) if row[4] > 0), rows[-1] if rows else None)
        with self.lock:
            self._count(self.vehicle, response)
            if rows:
                self._saw(self._vehicle_ends, rows)
            if charging is not None and (
                self.charging is None or _preference(charging) > _preference(self.charging)
            ):
                self.charging = charging

    def snapshot(self) -> tuple[StreamTotals, StreamTotals]:
        """Copies: senders abandoned after a second Ctrl-C may still add to the originals."""
        with self.lock:
            meter = replace(self.meter, errors=list(self.meter.errors))
            vehicle = replace(self.vehicle, errors=list(self.vehicle.errors))
        return meter, vehicle


class _Stream(threading.Thread):
    """One sender: what its queue holds goes out over IngestReadings streams that are sent
    again after a failure (ResilientStreamSender), until it is told it is done or to stop."""

    def __init__(
        self,
        call: Callable[..., Any],
        make_request: Callable[[Sequence[Any]], Any],
        totals: StreamTotals,
        lock: threading.Lock,
        *,
        batch_size: int,
        stream_readings: int,
        on_acknowledged: Callable[[Sequence[Any], Any], None],
        stop: threading.Event,
    ) -> None:
        super().__init__(daemon=True)
        self.requests: queue.Queue[Any] = queue.Queue(maxsize=8)  # bounded: backpressure
        self._sender = ResilientStreamSender(
            call,
            make_request,
            batch_size=batch_size,
            stream_readings=stream_readings,
            on_acknowledged=on_acknowledged,
            stop=stop,
        )
        self._totals = totals
        self._lock = lock
        self._stopping = stop

    def _next(self) -> Any:
        while True:
            try:
                return self.requests.get(timeout=0.2)
            except queue.Empty:
                if self._stopping.is_set():
                    return _DONE

    def run(self) -> None:
        try:
            while (rows := self._next()) is not _DONE and not self._stopping.is_set():
                if rows:
                    self._sender.send(rows)
                else:  # an empty list asks for what was sent so far to be delivered now
                    self._sender.flush()
            if not self._stopping.is_set():
                self._sender.flush()
        except Exception as error:  # reported in the summary, not as a thread's traceback
            if isinstance(error, grpc.RpcError):
                message = f"{error.code().name}: {error.details()}"
            else:
                message = f"{type(error).__name__}: {error}"
            with self._lock:
                self._totals.errors.append(message)
            while self._next() is not _DONE:  # keep the producer from blocking
                pass
        finally:
            with self._lock:
                self._totals.resends += self._sender.totals.resends


class Progress:
    """A one-line progress bar on stderr, redrawn every half second by its own thread: readings
    acknowledged by the services (not merely queued) out of the run's total, and their rate."""

    def __init__(self, acknowledged: Callable[[], int], total: int, enabled: bool) -> None:
        self.total = total
        self._acknowledged = acknowledged
        self._enabled = enabled
        self._started = time.perf_counter()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if enabled:
            self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.5):
            self._print()

    def _print(self) -> None:
        done = self._acknowledged()
        share = done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        rate = done / max(time.perf_counter() - self._started, 1e-9)
        sys.stderr.write(
            f"\r[{bar:<30}] {share:6.1%} {done:>12,} of {self.total:,} readings acknowledged "
            f"{rate:>10,.0f}/s"
        )
        sys.stderr.flush()

    def finish(self) -> None:
        self._done.set()
        if self._enabled:
            self._thread.join()
            self._print()
            sys.stderr.write("\n")
            sys.stderr.flush()


def feed(
    fleet: Fleet,
    meter_channel: grpc.Channel,
    vehicle_channel: grpc.Channel,
    *,
    streams: int = 8,
    batch_size: int = 500,
    stream_readings: int = STREAM_READINGS,
    speed: float | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
    abandon: threading.Event | None = None,
) -> FeedResult:
    """Sends the whole fleet. `speed` None: backfill, as fast as accepted; otherwise live, one
    simulated minute every 60/speed seconds, each stream sending its share every minute.

    Setting `stop` (from another thread or a signal handler) ends the run early: nothing more
    is sent, streams in flight end at their current message and their acknowledgements are
    awaited; setting `abandon` as well stops waiting for them. The result then counts what was
    acknowledged until then and has `interrupted` set."""
    stop = stop if stop is not None else threading.Event()
    abandon = abandon if abandon is not None else threading.Event()
    config = fleet.config
    acks = _Acknowledgements(config.start_us, streams, config.chargers)
    lock = acks.lock
    meter_call = meter_service_pb2_grpc.MeterServiceStub(meter_channel).IngestReadings
    vehicle_call = vehicle_service_pb2_grpc.VehicleServiceStub(vehicle_channel).IngestReadings
    live = speed is not None

    def streams_of(
        call: Callable[..., Any],
        make_request: Callable[[Sequence[Any]], Any],
        totals: StreamTotals,
        on_acknowledged: Callable[[Sequence[Any], Any], None],
    ) -> list[_Stream]:
        return [
            _Stream(
                call,
                make_request,
                totals,
                lock,
                batch_size=batch_size,
                stream_readings=stream_readings,
                on_acknowledged=on_acknowledged,
                stop=stop,
            )
            for _ in range(streams)
        ]

    meter_streams = streams_of(meter_call, meter_request, acks.meter, acks.meters)
    vehicle_streams = streams_of(vehicle_call, vehicle_request, acks.vehicle, acks.vehicles)
    everyone = meter_streams + vehicle_streams
    for stream in everyone:
        stream.start()

    def acknowledged() -> int:
        with lock:
            return acks.meter.acknowledged + acks.vehicle.acknowledged

    bar = Progress(acknowledged, sum(fleet.reading_count()), progress)
    meter_buckets: list[list[MeterRow]] = [[] for _ in range(streams)]
    vehicle_buckets: list[list[VehicleRow]] = [[] for _ in range(streams)]
    started = time.perf_counter()
    sent = 0

    def put(stream: _Stream, item: Any) -> None:
        while not stop.is_set():  # a full queue must not keep us from noticing a stop
            try:
                stream.requests.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def flush(index: int, at_least: int) -> None:
        if len(meter_buckets[index]) >= at_least and meter_buckets[index]:
            put(meter_streams[index], meter_buckets[index])
            meter_buckets[index] = []
        if len(vehicle_buckets[index]) >= at_least and vehicle_buckets[index]:
            put(vehicle_streams[index], vehicle_buckets[index])
            vehicle_buckets[index] = []

    for minute in fleet.minutes():
        if live:
            due = started + minute.index * 60.0 / speed  # type: ignore[operator]
            stop.wait(max(0.0, due - time.perf_counter()))
        if stop.is_set():
            break
        for row in minute.meter_rows:
            meter_buckets[hash(row[0]) % streams].append(row)
        for vrow in minute.vehicle_rows:
            vehicle_buckets[hash(vrow[0]) % streams].append(vrow)
        for index in range(streams):
            flush(index, 1 if live else batch_size)
            if live:  # deliver each simulated minute as it happens
                put(meter_streams[index], [])
                put(vehicle_streams[index], [])
        sent += len(minute.meter_rows) + len(minute.vehicle_rows)
    for index in range(streams):
        flush(index, 1)
    for stream in everyone:
        if stop.is_set():
            with contextlib.suppress(queue.Full):  # a busy sender sees the stop by itself
                stream.requests.put_nowait(_DONE)
        else:
            put(stream, _DONE)
    for stream in everyone:
        while stream.is_alive() and not abandon.is_set():
            stream.join(0.2)
    bar.finish()
    meter, vehicle = acks.snapshot()
    with lock:
        end_us, charging = acks.end_us, acks.charging
    if charging is not None and not stop.is_set() and not meter.errors and not vehicle.errors:
        end_us = config.start_us + config.minutes * MINUTE_US  # all of it was acknowledged
    return FeedResult(
        meter,
        vehicle,
        sent,
        time.perf_counter() - started,
        total=bar.total,
        end_us=end_us,
        charging=charging,
        interrupted=stop.is_set(),
    )
