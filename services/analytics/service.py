"""AnalyticsService use cases: GetVehiclePerformance in three downstream calls whatever the
number of sessions (the vehicle's sessions, the other vehicles' around them, the AC attributed
to all of them), and a fourth on chargers where sessions are concurrent."""

from __future__ import annotations

import math
from collections.abc import Callable

from services.analytics.correlation import (
    Performance,
    arrange,
    compose,
    concurrent_chargers,
    near,
    surroundings,
)
from services.analytics.downstream import Downstream
from services.common.errors import DeadlineExceeded, InvalidArgument
from services.common.timeconv import (
    DAY_US,
    MAX_TIMESTAMP_MICROS,
    MIN_TIMESTAMP_MICROS,
    now_micros,
)
from services.common.validation import id_problem, require_id

MAX_WINDOW_US = 31 * DAY_US


def downstream_budget(time_remaining: Callable[[], float | None], timeout: float) -> float:
    """A downstream call gets what is left of the caller's deadline, capped by `timeout`
    (DOWNSTREAM_TIMEOUT_SECONDS); DEADLINE_EXCEEDED when it has passed."""
    remaining = time_remaining()
    if remaining is None:
        return timeout
    if remaining <= 0:
        raise DeadlineExceeded("the caller's deadline passed")
    return min(remaining, timeout)


def page_position_issued(end_us: int, window_us: int, rank: str, value: float, key: str) -> bool:
    """Whether a page token's pinned window (its end and length) and its position (the sort
    key of the last row listed: rank "0" with a known value, or "1" with 0 for unknown, then an
    id) are ones this service could have issued."""
    return (
        rank in ("0", "1")
        and math.isfinite(value)
        and value >= 0
        and (rank == "0" or value == 0.0)
        and id_problem(key) is None
        and 0 < window_us <= MAX_WINDOW_US
        and MIN_TIMESTAMP_MICROS + window_us <= end_us <= MAX_TIMESTAMP_MICROS
    )


def window_bounds(
    end_us: int | None, window_us: int | None, clock: Callable[[], int] = now_micros
) -> tuple[int, int]:
    """[start, end) of a request's window: `window_us` (default a day, at most 31 days) ending
    at `end_us` (default now); INVALID_ARGUMENT naming `window` otherwise."""
    window_us = DAY_US if window_us is None else window_us
    if window_us <= 0:
        raise InvalidArgument([("window", "must be positive (the end must follow the start)")])
    if window_us > MAX_WINDOW_US:
        raise InvalidArgument([("window", "must be at most 31 days")])
    end_us = clock() if end_us is None else end_us
    start_us = end_us - window_us
    if start_us < MIN_TIMESTAMP_MICROS:
        raise InvalidArgument([("window", "must not reach before 0001-01-01T00:00:00Z")])
    return start_us, end_us


class VehiclePerformanceService:
    def __init__(
        self,
        downstream: Downstream,
        *,
        session_gap_us: int,
        reach_us: int,
        downstream_timeout: float,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self._downstream = downstream
        self._gap_us = session_gap_us
        # A reading interval is at most twice the reach long (see MeterService and
        # VehicleService): sessions farther apart cannot share one, nor cut each other.
        self._margin_us = 2 * reach_us
        self._timeout = downstream_timeout
        self._clock = clock

    def performance(
        self,
        vehicle_id: str,
        end_us: int | None,
        window_us: int | None,
        time_remaining: Callable[[], float | None],
    ) -> Performance:
        """The window [end - window, end); `time_remaining` is the caller's deadline, if any."""
        require_id("vehicle_id", vehicle_id)
        start_us, end_us = window_bounds(end_us, window_us, self._clock)
        sessions = self._downstream.sessions(
            vehicle_id, start_us, end_us, self._gap_us, self._budget(time_remaining)
        )
        if not sessions:
            return compose(vehicle_id, start_us, end_us, [], [])
        # The other vehicles' sessions around the vehicle's: cheap, and what each of them is
        # there is what it is over the whole window (see ListChargerSessions). Concurrent
        # sessions share a meter interval by their DC over their whole span, so on a charger
        # where some are found they are asked for over the whole window.
        window = (start_us, end_us, self._gap_us)
        around = self._downstream.charger_sessions(
            [],
            surroundings(sessions, self._margin_us, self._gap_us),
            vehicle_id,
            window,
            self._budget(time_remaining),
        )
        own, others = arrange(sessions, around, self._margin_us)
        concurrent = concurrent_chargers([*own, *others])
        if concurrent:
            whole = self._downstream.charger_sessions(
                concurrent, [], vehicle_id, window, self._budget(time_remaining)
            )
            around = sorted(
                [*(s for s in around if s.charger_id not in concurrent), *whole],
                key=lambda s: (s.charger_id, s.start_us, s.vehicle_id),
            )
            own, others = arrange(sessions, around, self._margin_us)
        # Cut on each charger from all its sessions, then only those that can share a meter
        # interval with the vehicle's are sent.
        sessions, others = own, near(others, own, self._margin_us)
        consumption = self._downstream.attribute(
            sessions, others, start_us, end_us, self._budget(time_remaining)
        )
        return compose(vehicle_id, start_us, end_us, sessions, consumption)

    def _budget(self, time_remaining: Callable[[], float | None]) -> float:
        return downstream_budget(time_remaining, self._timeout)
