"""Time on the wire is a Timestamp; inside we carry integer microseconds since the epoch
(cheaper than datetime per reading) and let PostgreSQL convert to timestamptz."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

MICROS = 1_000_000
DAY_US = 24 * 3600 * MICROS

# The well-known types' own ranges: Timestamp 0001-01-01T00:00:00Z … 9999-12-31T23:59:59.999999999Z,
# Duration ±10,000 years. Anything outside is a client bug (often epoch milliseconds given as
# seconds), refused before it reaches arithmetic or SQL.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
MIN_TIMESTAMP_MICROS = MIN_TIMESTAMP_SECONDS * MICROS
MAX_TIMESTAMP_MICROS = MAX_TIMESTAMP_SECONDS * MICROS + 999_999
MAX_DURATION_SECONDS = 315_576_000_000
_NANOS = 1_000_000_000


def timestamp_problem(ts: Timestamp) -> str | None:
    """Why `ts` is not a valid Timestamp, or None."""
    if not MIN_TIMESTAMP_SECONDS <= ts.seconds <= MAX_TIMESTAMP_SECONDS:
        hint = next(
            (
                f" (epoch {unit} given as seconds?)"
                for unit, per_second in (("milliseconds", 1_000), ("microseconds", MICROS))
                if MIN_TIMESTAMP_SECONDS <= ts.seconds // per_second <= MAX_TIMESTAMP_SECONDS
            ),
            "",
        )
        return (
            "must be within 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, "
            f"got seconds={ts.seconds}{hint}"
        )
    if not 0 <= ts.nanos < _NANOS:
        return f"nanos must be within 0 and 999999999, got {ts.nanos}"
    return None


def duration_problem(duration: Duration) -> str | None:
    """Why `duration` is not a valid Duration, or None."""
    if not -MAX_DURATION_SECONDS <= duration.seconds <= MAX_DURATION_SECONDS:
        return (
            f"must be within ±{MAX_DURATION_SECONDS} seconds (10,000 years), "
            f"got seconds={duration.seconds}"
        )
    if not -_NANOS < duration.nanos < _NANOS or duration.seconds * duration.nanos < 0:
        return (
            "nanos must be within -999999999 and 999999999 with the sign of seconds, "
            f"got seconds={duration.seconds} nanos={duration.nanos}"
        )
    return None


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


def micros_to_duration(micros: int) -> Duration:
    """A Duration of `micros` >= 0 microseconds."""
    seconds, rest = divmod(micros, MICROS)
    return Duration(seconds=seconds, nanos=rest * 1000)


def micros_to_datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / MICROS, UTC)


def now_micros() -> int:
    return int(datetime.now(UTC).timestamp() * MICROS)


def iso(micros: int) -> str:
    """RFC 3339 in UTC as Timestamps print in JSON: 2026-11-20T14:00:00Z, …T14:00:00.500Z."""
    return micros_to_timestamp(micros).ToJsonString()


# Times leave the database as integer microseconds since the epoch: cheap to convert, and
# exact (a double holds every microsecond of these centuries; extract() would be numeric, slower).
MICROS_SQL = "round(date_part('epoch', {col}) * 1000000)::int8"
# And they come in as integer microseconds, made timestamptz in SQL (exact, and cheaper than a
# datetime per reading): `{us}` is an int8 expression.
TIMESTAMPTZ_SQL = "timestamptz 'epoch' + {us} * interval '1 microsecond'"
