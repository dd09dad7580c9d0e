"""Input rules shared by both ingesting services (the bounds each proto field documents).

Each service checks its readings with a hand-written fast path (one chained comparison per
reading, no exception); only a reading that fails it is explained, field by field, here."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.errors import InvalidArgument
from services.common.timeconv import (
    MICROS,
    duration_problem,
    iso,
    now_micros,
    timestamp_problem,
)

ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ID_RULE = "must be 1-64 characters of A-Z a-z 0-9 . _ : -"
EARLIEST_MICROS = 946_684_800 * MICROS  # 2000-01-01T00:00:00Z


def id_problem(value: str) -> str | None:
    """Why `value` is not a valid charger or vehicle id, or None when it is."""
    return None if ID_PATTERN.fullmatch(value) else ID_RULE


def require_id(field: str, value: str) -> None:
    problem = id_problem(value)
    if problem is not None:
        raise InvalidArgument([(field, problem)])


class KnownIds:
    """Ids already found valid; a set lookup is cheaper than the regex, and ids repeat."""

    def __init__(self, limit: int = 200_000) -> None:
        self._ids: set[str] = set()
        self._limit = limit

    def valid(self, value: str) -> bool:
        if value in self._ids:
            return True
        if ID_PATTERN.fullmatch(value) is None:
            return False
        if len(self._ids) >= self._limit:
            self._ids.clear()
        self._ids.add(value)
        return True


def time_violations(fields: Sequence[tuple[str, Timestamp | Duration]]) -> list[tuple[str, str]]:
    """(field path, why) for each Timestamp or Duration of a request outside its type's range.
    Every RPC that takes one checks it here before using it (an unset field reads as 0: valid)."""
    found = []
    for field, value in fields:
        problem = (
            timestamp_problem(value) if isinstance(value, Timestamp) else duration_problem(value)
        )
        if problem:
            found.append((field, problem))
    return found


def require_times(fields: Sequence[tuple[str, Timestamp | Duration]]) -> None:
    """Raises InvalidArgument listing every out-of-range time of `fields`."""
    violations = time_violations(fields)
    if violations:
        raise InvalidArgument(violations)


def exact(value: float) -> str:
    """A number as short as it can be written without changing it: 121, 0.5, 1000000000,
    1000.0001 (which `:g` would round to 1000, the very bound it breaks)."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
        return str(int(value)) if value or math.copysign(1, value) > 0 else "-0"
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


@dataclass(frozen=True)
class Bounds:
    """A numeric field's allowed range; `low_open` excludes the low end (voltage > 0)."""

    field: str
    low: float
    high: float
    unit: str
    low_open: bool = False

    def problem(self, value: float) -> str | None:
        if not math.isfinite(value):
            return "must be a finite number"
        below = value <= self.low if self.low_open else value < self.low
        if below or value > self.high:
            low = f"above {exact(self.low)}" if self.low_open else f"at least {exact(self.low)}"
            return f"must be {low} and at most {exact(self.high)} {self.unit}, got {exact(value)}"
        return None


@dataclass(frozen=True)
class TimeWindow:
    """Timestamps accepted now: from 2000-01-01, or from `retention_days` before the server's
    clock when that is later (RETENTION_DAYS: older readings would be dropped, so they are
    refused), to at most `skew_seconds` past the server's clock (CLOCK_SKEW_SECONDS)."""

    earliest: int
    latest: int
    skew_seconds: float = 0.0
    retention_days: int = 0

    @classmethod
    def now(cls, skew_seconds: float, retention_days: int = 0) -> TimeWindow:
        now = now_micros()
        earliest = EARLIEST_MICROS
        if retention_days:
            earliest = max(earliest, now - retention_days * 86_400 * MICROS)
        return cls(earliest, now + int(skew_seconds * MICROS), skew_seconds, retention_days)


@dataclass(frozen=True)
class ReadingRules:
    """The rules of one reading type, used to explain a rejection. A bound on a field with
    presence (`optional`) applies only when the field is set; `exclusive` pairs are fields of
    which a reading may set one (the two energy forms)."""

    id_fields: Sequence[str]
    bounds: Sequence[Bounds]
    exclusive: Sequence[tuple[str, str]] = ()

    def violations(self, reading: Any, window: TimeWindow) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for field in self.id_fields:
            problem = id_problem(getattr(reading, field))
            if problem:
                found.append((field, problem))
        for first, second in self.exclusive:
            if reading.HasField(first) and reading.HasField(second):
                found.append((first, f"must be unset when {second} is set: one energy form"))
                found.append((second, f"must be unset when {first} is set: one energy form"))
        presence = reading.DESCRIPTOR.fields_by_name
        for bounds in self.bounds:
            if presence[bounds.field].has_presence and not reading.HasField(bounds.field):
                continue
            problem = bounds.problem(getattr(reading, bounds.field))
            if problem:
                found.append((bounds.field, problem))
        found += timestamp_violations(reading, window)
        return found


def timestamp_violations(reading: Any, window: TimeWindow) -> list[tuple[str, str]]:
    """The reading's timestamp against `window`, each message saying the bound and the value."""
    if not reading.HasField("timestamp"):
        return [("timestamp", "must be set, got nothing")]
    ts = reading.timestamp
    problem = timestamp_problem(ts)
    if problem:
        return [("timestamp", problem)]
    micros = ts.seconds * MICROS + ts.nanos // 1000
    if micros < EARLIEST_MICROS:
        return [("timestamp", f"must be at or after 2000-01-01T00:00:00Z, got {iso(micros)}")]
    if micros < window.earliest:
        return [
            (
                "timestamp",
                f"must be at most {window.retention_days} days old (RETENTION_DAYS: older "
                f"readings are not kept), at or after {iso(window.earliest)}, got {iso(micros)}",
            )
        ]
    if micros > window.latest:
        ahead = (micros - window.latest) / MICROS + window.skew_seconds
        return [
            (
                "timestamp",
                f"must be at most {exact(window.skew_seconds)} s ahead of the server's clock "
                f"(CLOCK_SKEW_SECONDS), got {iso(micros)}, {ahead:,.0f} s ahead",
            )
        ]
    return []


@dataclass
class Rejection:
    index: int
    field: str
    description: str


def explain(rules: ReadingRules, reading: Any, index: int, window: TimeWindow) -> Rejection:
    """The first violation of a reading the fast path refused."""
    violations = rules.violations(reading, window)
    field, why = violations[0] if violations else ("reading", "is invalid")
    return Rejection(index, field, why)


def require_valid(rules: ReadingRules, reading: Any, window: TimeWindow) -> None:
    """Unary calls: every violation, as field paths of the request."""
    violations = rules.violations(reading, window)
    if violations:
        raise InvalidArgument([(f"reading.{field}", why) for field, why in violations])


# A service's fast path: (readings, index of the first, window) → (valid rows, rejections).
BatchValidator = Callable[
    [Sequence[Any], int, TimeWindow], tuple[list[tuple[Any, ...]], list[Rejection]]
]

# A kind's check of one reading's values: (reading, its time in micros, its index in the stream)
# → the row COPY writes, (id, micros, *values, index), or None when a value breaks its rules (the
# reading is then explained by ReadingRules).
RowOf = Callable[[Any, int, int], tuple[Any, ...] | None]


def batch_validator(rules: ReadingRules, row_of: RowOf) -> BatchValidator:
    """The fast path of a kind: the time checks here, the values in `row_of`. One call and a
    few comparisons a reading, no exception; only a refused reading is explained field by
    field (`explain`), so the rows and the explanations must agree on every bound."""

    def validate_batch(
        readings: Sequence[Any], first_index: int, window: TimeWindow
    ) -> tuple[list[tuple[Any, ...]], list[Rejection]]:
        rows: list[tuple[Any, ...]] = []
        rejections: list[Rejection] = []
        earliest, latest = window.earliest, window.latest
        for index, reading in enumerate(readings, first_index):
            ts = reading.timestamp
            nanos = ts.nanos
            micros = ts.seconds * MICROS + nanos // 1000
            row = (
                row_of(reading, micros, index)
                if earliest <= micros <= latest and 0 <= nanos < 1_000_000_000
                else None
            )
            if row is None:
                rejections.append(explain(rules, reading, index, window))
            else:
                rows.append(row)
        return rows, rejections

    return validate_batch
