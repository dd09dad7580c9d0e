"""Ingestion use cases shared by MeterService and VehicleService: validate, hand the valid
readings to the group-commit writers, answer once they are committed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import InvalidArgument
from services.common.group_commit import GroupCommitWriters, Ticket
from services.common.validation import (
    BatchValidator,
    ReadingRules,
    Rejection,
    TimeWindow,
    require_valid,
)


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

    def ingest_one(self, reading: Any) -> bool:
        """Stores one reading; True when a duplicate. INVALID_ARGUMENT lists every problem."""
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

    def ingest_stream(self, batches: Iterable[Sequence[Any]]) -> StreamOutcome:
        """Validates and submits each batch as it arrives; returns once all of it is committed."""
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
