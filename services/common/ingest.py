"""Ingestion use cases shared by MeterService and VehicleService: validate, hand the valid
readings to the group-commit writers, answer once they are committed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from services.common.group_commit import GroupCommitWriters, Ticket
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


@dataclass
class StreamOutcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)


class Ingestor:
    def __init__(
        self,
        writers: GroupCommitWriters,
        rules: ReadingRules,
        validate_batch: BatchValidator,
        *,
        clock_skew_seconds: float,
        max_rejections_listed: int,
    ) -> None:
        self._writers = writers
        self._rules = rules
        self._validate_batch = validate_batch
        self._skew = clock_skew_seconds
        self._max_rejections = max_rejections_listed

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

    def _whole_device_stream(
        self, batches: Iterable[Sequence[Any]], device: str
    ) -> list[Sequence[Any]]:
        """Reads a device's stream to its end (bounded) and checks every id before any commit."""
        held: list[Sequence[Any]] = []
        readings = 0
        for batch in batches:
            self._require_own(batch, device)
            readings += len(batch)
            if readings > MAX_DEVICE_STREAM_READINGS:
                raise ResourceExhausted(
                    f"a device stream holds at most {MAX_DEVICE_STREAM_READINGS} readings; "
                    "send the rest in another stream"
                )
            held.append(list(batch))
        return held

    def ingest_one(self, reading: Any, device: str | None = None) -> bool:
        """Stores one reading; True when a duplicate. INVALID_ARGUMENT lists every problem."""
        self._require_own([reading], device)
        window = TimeWindow.now(self._skew)
        rows, rejections = self._validate_batch([reading], 0, window)
        if rejections:
            require_valid(self._rules, reading, window)  # raises, naming every violation
            first = rejections[0]
            raise InvalidArgument([(f"reading.{first.field}", first.description)])
        ticket = Ticket()
        self._writers.submit(rows, ticket)
        ticket.wait()
        return ticket.duplicates > 0

    def ingest_stream(
        self, batches: Iterable[Sequence[Any]], device: str | None = None
    ) -> StreamOutcome:
        """Validates and submits each batch as it arrives; returns once all of it is committed.
        A device's stream is read whole and checked before anything of it is submitted."""
        if device is not None:
            batches = self._whole_device_stream(batches, device)
        outcome = StreamOutcome()
        ticket = Ticket()
        index = 0
        for readings in batches:
            rows, rejections = self._validate_batch(readings, index, TimeWindow.now(self._skew))
            index += len(readings)
            if rejections:
                outcome.rejected += len(rejections)
                room = self._max_rejections - len(outcome.rejections)
                outcome.rejections += rejections[: max(room, 0)]
            self._writers.submit(rows, ticket)
        ticket.wait()
        outcome.accepted = ticket.accepted
        outcome.duplicates = ticket.duplicates
        return outcome
