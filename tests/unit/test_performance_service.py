"""VehiclePerformanceService's composition against a fake downstream (a plain object with the
two calls it makes to VehicleService and MeterService): which window it asks for, the intervals
it sums, what deadline each downstream call gets, and what it refuses before calling anyone."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest

from services.analytics.correlation import Consumption, Interval, Session
from services.analytics.downstream import Downstream
from services.analytics.service import VehiclePerformanceService
from services.common.errors import DeadlineExceeded, InvalidArgument, NotFound

SECOND = 1_000_000
DAY = 86_400 * SECOND
NOW = 20_000 * DAY  # the fake clock: day 20,000 after the epoch (2024-10-04)
YEAR_1 = -62_135_596_800 * SECOND  # 0001-01-01T00:00:00Z


class FakeDownstream:
    """Answers `sessions` with the given sessions and `consumption` with one summary per
    interval from `per_charger` (charger → (kWh, meter readings)); records every call."""

    def __init__(
        self,
        sessions: Sequence[Session] = (),
        per_charger: dict[str, tuple[float, int]] | None = None,
        fail: Exception | None = None,
    ) -> None:
        self._sessions = list(sessions)
        self._per_charger = per_charger or {}
        self._fail = fail
        self.calls: list[tuple[str, Any]] = []

    def sessions(
        self, vehicle_id: str, start_us: int, end_us: int, gap_us: int, timeout: float
    ) -> list[Session]:
        self.calls.append(("sessions", (vehicle_id, start_us, end_us, gap_us, timeout)))
        if self._fail is not None:
            raise self._fail
        return self._sessions

    def consumption(self, intervals: Sequence[Interval], timeout: float) -> list[Consumption]:
        self.calls.append(("consumption", (list(intervals), timeout)))
        return [Consumption(*self._per_charger.get(i.charger_id, (0.0, 0))) for i in intervals]


def service(downstream: FakeDownstream, **overrides: Any) -> VehiclePerformanceService:
    settings: dict[str, Any] = {
        "session_gap_us": 600 * SECOND,
        "tolerance_us": 30 * SECOND,
        "downstream_timeout": 5.0,
        "clock": lambda: NOW,
    }
    settings.update(overrides)
    return VehiclePerformanceService(cast(Downstream, downstream), **settings)


def no_deadline() -> float | None:
    return None


def test_the_default_window_is_the_day_ending_now():
    fake = FakeDownstream()
    result = service(fake).performance("VH-1", None, None, no_deadline)
    assert (result.start_us, result.end_us) == (NOW - DAY, NOW)
    # the window, the configured session gap (600 s) and, without a caller deadline, the setting
    assert fake.calls[0] == ("sessions", ("VH-1", NOW - DAY, NOW, 600 * SECOND, 5.0))


def test_a_given_end_and_window_are_asked_for_as_they_are():
    fake = FakeDownstream()
    end = NOW - 7 * DAY
    service(fake).performance("VH-1", end, 2 * DAY, no_deadline)
    assert fake.calls[0][1][1:3] == (end - 2 * DAY, end)


def test_sessions_are_summed_over_their_widened_intervals_and_composed():
    hour = 3600 * SECOND
    end = NOW
    start = end - DAY
    sessions = [
        Session("CHG-A", start + hour, start + 2 * hour, 18.0, 10, 250.0, 10),
        Session("CHG-B", start + 5 * hour, start + 6 * hour, 9.0, 5, 150.0, 5),
    ]
    fake = FakeDownstream(sessions, {"CHG-A": (20.0, 60), "CHG-B": (10.0, 60)})
    result = service(fake).performance("VH-1", end, DAY, no_deadline)
    # each session widened by the 30 s tolerance on both sides
    assert fake.calls[1] == (
        "consumption",
        (
            [
                Interval("CHG-A", start + hour - 30 * SECOND, start + 2 * hour + 30 * SECOND),
                Interval("CHG-B", start + 5 * hour - 30 * SECOND, start + 6 * hour + 30 * SECOND),
            ],
            5.0,
        ),
    )
    assert [s.figures.efficiency_ratio for s in result.sessions] == [0.9, 0.9]  # 18/20, 9/10
    assert result.totals.energy_consumed_ac == 30.0  # 20 + 10
    assert result.totals.energy_delivered_dc == 27.0  # 18 + 9
    assert result.totals.efficiency_ratio == 0.9  # 27 / 30
    assert result.totals.avg_battery_temperature == 400.0 / 15  # (250 + 150) / (10 + 5)
    assert (result.totals.data_points, result.totals.meter_data_points) == (15, 120)


def test_a_session_reaching_past_the_window_is_summed_only_within_it():
    end = NOW
    sessions = [Session("CHG-A", end - DAY - 60 * SECOND, end - DAY + 60 * SECOND, 1, 2, 0, 0)]
    fake = FakeDownstream(sessions)
    service(fake).performance("VH-1", end, DAY, no_deadline)
    # start - 30 s is before the window: clipped to its start, end - DAY
    assert fake.calls[1][1][0] == [Interval("CHG-A", end - DAY, end - DAY + 90 * SECOND)]


@pytest.mark.parametrize(
    ("remaining", "budget"),
    [(2.0, 2.0), (5.0, 5.0), (60.0, 5.0)],
    ids=["less than the setting", "equal", "more than the setting"],
)
def test_each_downstream_call_gets_the_callers_remaining_time_capped_by_the_setting(
    remaining, budget
):
    fake = FakeDownstream([Session("CHG-A", NOW - DAY // 2, NOW - DAY // 4, 1.0, 1, 0.0, 0)])
    service(fake).performance("VH-1", None, None, lambda: remaining)
    assert [call[1][-1] for call in fake.calls] == [budget, budget]


@pytest.mark.parametrize("remaining", [0.0, -1.0])
def test_a_caller_whose_deadline_passed_is_not_served(remaining):
    fake = FakeDownstream()
    with pytest.raises(DeadlineExceeded):
        service(fake).performance("VH-1", None, None, lambda: remaining)
    assert fake.calls == []


def test_a_deadline_that_passes_after_the_sessions_stops_before_the_meters():
    fake = FakeDownstream([Session("CHG-A", NOW - DAY // 2, NOW - DAY // 4, 1.0, 1, 0.0, 0)])
    left = iter([1.5, 0.0])
    with pytest.raises(DeadlineExceeded):
        service(fake).performance("VH-1", None, None, lambda: next(left))
    assert [name for name, _ in fake.calls] == ["sessions"]


@pytest.mark.parametrize(
    ("vehicle_id", "window", "field"),
    [
        ("", None, "vehicle_id"),
        ("VH 1", None, "vehicle_id"),
        ("v" * 65, None, "vehicle_id"),
        ("VH-1", 0, "window"),
        ("VH-1", -SECOND, "window"),
        ("VH-1", 31 * DAY + 1, "window"),  # one microsecond over 31 days
    ],
)
def test_bad_requests_are_refused_before_any_downstream_call(vehicle_id, window, field):
    fake = FakeDownstream()
    with pytest.raises(InvalidArgument) as refused:
        service(fake).performance(vehicle_id, None, window, no_deadline)
    assert [f for f, _ in refused.value.violations] == [field]
    assert fake.calls == []


def test_a_window_of_exactly_31_days_is_served():
    fake = FakeDownstream()
    result = service(fake).performance("VH-1", None, 31 * DAY, no_deadline)
    assert result.start_us == NOW - 31 * DAY


def test_a_window_may_start_at_year_1_but_not_before():
    fake = FakeDownstream()
    result = service(fake).performance("VH-1", YEAR_1 + DAY, DAY, no_deadline)
    assert result.start_us == YEAR_1
    with pytest.raises(InvalidArgument) as refused:
        service(fake).performance("VH-1", YEAR_1 + DAY - 1, DAY, no_deadline)
    assert refused.value.violations == [("window", "must not reach before 0001-01-01T00:00:00Z")]


def test_a_downstream_failure_reaches_the_caller_and_the_meters_are_not_asked():
    fake = FakeDownstream(fail=NotFound("vehicle VH-1 not found"))
    with pytest.raises(NotFound, match="VH-1"):
        service(fake).performance("VH-1", None, None, no_deadline)
    assert [name for name, _ in fake.calls] == ["sessions"]


def test_a_vehicle_without_sessions_gets_zeros_and_asks_for_no_energy():
    fake = FakeDownstream()
    result = service(fake).performance("VH-1", None, None, no_deadline)
    assert result.sessions == []
    assert (result.totals.energy_consumed_ac, result.totals.efficiency_ratio) == (0.0, None)
    # an empty list of intervals: the real client makes no MeterService call for it
    assert fake.calls[1] == ("consumption", ([], 5.0))
