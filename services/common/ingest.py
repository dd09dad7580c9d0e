"""Ingestion use cases shared by MeterService and VehicleService: validate, hand the valid
readings to the group-commit writers, answer once they are committed."""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from services.common.group_commit import Conflict, GroupCommitWriters, Row, Ticket
from services.common.metrics import ServiceMetrics
from services.common.validation import (
    BatchValidator,
    ReadingRules,
    Rejection,
    TimeWindow,
    require_valid,
)

# A device's stream is held until its end (nothing of it may be stored if one reading names
# another id), so its size is bounded: a day of one reading a minute is 1,440.
MAX_DEVICE_STREAM_READINGS = 100_000
# Defaults of the byte bound of a device stream and of a device's concurrent streams (Settings:
# MAX_DEVICE_STREAM_BYTES, MAX_STREAMS_PER_DEVICE). 100,000 readings take about 4-7 MB on the
# wire, so an honest device meets the readings bound first.
DEFAULT_MAX_DEVICE_STREAM_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_STREAMS_PER_DEVICE = 2

# One message of a stream: its readings and the bytes it took once decoded (0 when not counted).
Batch = tuple[Sequence[Any], int]


def batches_of(requests: Iterable[Any], device: str | None) -> Iterator[Batch]:
    """The (readings, bytes) of each IngestReadingsRequest. A device's messages are measured
    (unknown fields included) for MAX_DEVICE_STREAM_BYTES; other callers' are not."""
    if device is None:
        for request in requests:
            yield request.readings, 0
    else:
        for request in requests:
            size = request.ByteSize()
            readings = request.readings
            # Not kept while the next message is awaited: the caller drops it once validated.
            del request
            yield readings, size
            del readings


@dataclass
class StreamOutcome:
    """The committed truth of a stream: counts, and the first rejections and conflicts."""

    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    conflicts: int = 0
    conflicting: list[Conflict] = field(default_factory=list)
    # Every rejection's field, for the metrics (the list above keeps only the first ones).
    rejected_fields: collections.Counter[str] = field(default_factory=collections.Counter)

    def take(self, ticket: Ticket) -> StreamOutcome:
        """Adds what the writers committed for this stream; returns self."""
        self.accepted = ticket.accepted
        self.duplicates = ticket.duplicates
        self.conflicts = ticket.conflict_count
        self.conflicting = ticket.conflicts
        return self


@dataclass(frozen=True)
class ReadingOutcome:
    """What became of one reading: "accepted", "duplicate" or "conflict" (with its Conflict)."""

    outcome: str
    conflict: Conflict | None = None


class Ingestor:
    def __init__(
        self,
        writers: GroupCommitWriters,
        rules: ReadingRules,
        validate_batch: BatchValidator,
        *,
        clock_skew_seconds: float,
        retention_days: int = 0,
        max_rejections_listed: int,
        max_device_stream_bytes: int = DEFAULT_MAX_DEVICE_STREAM_BYTES,
        max_streams_per_device: int = DEFAULT_MAX_STREAMS_PER_DEVICE,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self._writers = writers
        self._metrics = metrics or ServiceMetrics("readings")
        self._rules = rules
        self._validate_batch = validate_batch
        self._skew = clock_skew_seconds
        self._retention_days = retention_days
        self._max_rejections = max_rejections_listed
        self._max_device_bytes = max_device_stream_bytes
        self._max_streams = max_streams_per_device
        self._streams: dict[str, int] = {}
        self._streams_lock = threading.Lock()

    def _require_own(self, readings: Sequence[Any], device: str | None) -> None:
        """A device may only write its own id; otherwise nothing of the request is stored."""
        if device is None:
            return
        field = self._rules.id_fields[0]
        for reading in readings:
            if getattr(reading, field) != device:
                raise PermissionDenied(
                    f"device {device} may not write {field} {getattr(reading, field)!r}",
                    principal=device,
                )

    @contextmanager
    def _device_slot(self, device: str) -> Iterator[None]:
        """At most MAX_STREAMS_PER_DEVICE streams of one device at a time."""
        with self._streams_lock:
            open_now = self._streams.get(device, 0)
            if open_now >= self._max_streams:
                raise ResourceExhausted(
                    f"device {device} already has {open_now} streams open; at most "
                    f"{self._max_streams} at a time (MAX_STREAMS_PER_DEVICE)",
                    principal=device,
                )
            self._streams[device] = open_now + 1
        try:
            yield
        finally:
            with self._streams_lock:
                left = self._streams[device] - 1
                if left:
                    self._streams[device] = left
                else:
                    del self._streams[device]

    def _note(self, outcome: StreamOutcome, rejections: list[Rejection]) -> None:
        if rejections:
            outcome.rejected_fields.update(r.field for r in rejections)
            outcome.rejected += len(rejections)
            room = self._max_rejections - len(outcome.rejections)
            outcome.rejections += rejections[: max(room, 0)]

    def _whole_device_stream(
        self, batches: Iterable[Batch], device: str, outcome: StreamOutcome
    ) -> list[list[Row]]:
        """Reads a device's stream to its end and checks every id before any commit. What is
        held is the validated rows (no message, no unknown field), bounded in readings and in
        the bytes received."""
        held: list[list[Row]] = []
        readings = 0
        received = 0
        index = 0
        for batch, size in batches:
            received += size
            if received > self._max_device_bytes:
                raise ResourceExhausted(
                    f"a device stream holds at most {self._max_device_bytes} bytes "
                    "(MAX_DEVICE_STREAM_BYTES); send the rest in another stream",
                    principal=device,
                )
            self._require_own(batch, device)
            readings += len(batch)
            if readings > MAX_DEVICE_STREAM_READINGS:
                raise ResourceExhausted(
                    f"a device stream holds at most {MAX_DEVICE_STREAM_READINGS} readings; "
                    "send the rest in another stream",
                    principal=device,
                )
            rows, rejections = self._validate_batch(
                batch, index, TimeWindow.now(self._skew, self._retention_days)
            )
            index += len(batch)
            del batch  # the message goes now, not when the next one has arrived
            self._note(outcome, rejections)
            if rows:
                held.append(rows)
        return held

    def ingest_one(self, reading: Any, device: str | None = None) -> ReadingOutcome:
        """Stores one reading once committed. INVALID_ARGUMENT lists every problem."""
        self._require_own([reading], device)
        window = TimeWindow.now(self._skew, self._retention_days)
        rows, rejections = self._validate_batch([reading], 0, window)
        if rejections:
            self._metrics.count_rejections([rejections[0].field])
            self._metrics.count_readings(rejected=1)
            require_valid(self._rules, reading, window)  # raises, naming every violation
            first = rejections[0]
            raise InvalidArgument([(f"reading.{first.field}", first.description)])
        ticket = Ticket()
        self._writers.submit(rows, ticket, lead=True)
        ticket.wait()
        self._metrics.count_readings(
            accepted=ticket.accepted, duplicates=ticket.duplicates, conflicts=ticket.conflict_count
        )
        if ticket.conflicts:
            return ReadingOutcome("conflict", ticket.conflicts[0])
        return ReadingOutcome("duplicate" if ticket.duplicates else "accepted")

    def ingest_stream(self, batches: Iterable[Batch], device: str | None = None) -> StreamOutcome:
        """Validates and submits each batch as it arrives; returns once all of it is committed.
        A device's stream is read whole and checked before anything of it is submitted."""
        with self._metrics.stream_open():
            if device is None:
                return self._ingest_as_it_comes(batches)
            return self._ingest_device_stream(batches, device)

    def _ingest_device_stream(self, batches: Iterable[Batch], device: str) -> StreamOutcome:
        with self._device_slot(device):
            outcome = StreamOutcome()
            held = self._whole_device_stream(batches, device, outcome)
            ticket = Ticket(self._max_rejections)
            for rows in held:
                self._writers.submit(rows, ticket)
            del held
            ticket.wait()
            return self._counted(outcome.take(ticket))

    def _ingest_as_it_comes(self, batches: Iterable[Batch]) -> StreamOutcome:
        outcome = StreamOutcome()
        ticket = Ticket(self._max_rejections)
        index = 0
        for readings, _ in batches:
            rows, rejections = self._validate_batch(
                readings, index, TimeWindow.now(self._skew, self._retention_days)
            )
            index += len(readings)
            self._note(outcome, rejections)
            self._writers.submit(rows, ticket)
        ticket.wait()
        return self._counted(outcome.take(ticket))

    def _counted(self, outcome: StreamOutcome) -> StreamOutcome:
        """The answered stream counted in the metrics, rejections with the rest: a stream that
        fails part-way counts none of them."""
        self._metrics.count_rejections(outcome.rejected_fields.elements())
        self._metrics.count_readings(
            accepted=outcome.accepted,
            duplicates=outcome.duplicates,
            conflicts=outcome.conflicts,
            rejected=outcome.rejected,
        )
        return outcome
