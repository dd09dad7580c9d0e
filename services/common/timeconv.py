"""Time on the wire is a Timestamp; inside we carry integer microseconds since the epoch
(cheaper than datetime per reading) and let PostgreSQL convert to timestamptz."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

MICROS = 1_000_000


def timestamp_to_micros(ts: Timestamp) -> int:
    return ts.seconds * MICROS + ts.nanos // 1000


def micros_to_timestamp(micros: int) -> Timestamp:
    seconds, rest = divmod(micros, MICROS)
    return Timestamp(seconds=seconds, nanos=rest * 1000)


def set_timestamp(target: Timestamp, micros: int) -> None:
    """Sets a Timestamp field in place (no intermediate message)."""
    target.seconds, rest = divmod(micros, MICROS)
    target.nanos = rest * 1000


def duration_to_micros(duration: Duration) -> int:
    return duration.seconds * MICROS + duration.nanos // 1000


def micros_to_datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / MICROS, UTC)


def now_micros() -> int:
    return int(datetime.now(UTC).timestamp() * MICROS)
