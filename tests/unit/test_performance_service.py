"""VehiclePerformanceService's composition against a fake downstream (a plain object with the
calls it makes: the vehicle's sessions and the other vehicles' sessions around them (and on
chargers where some are concurrent, over the whole window) from VehicleService, the AC
attributed to them from MeterService): what each call is asked, which
other vehicles' sessions are sent along and how they are kept apart from the vehicle's, what
deadline each call gets, and what it refuses before calling anyone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import pytest

from services.analytics.correlation import ChargerSpan, Consumption, Figures, Quality, Session
from services.analytics.downstream import Downstream
from services.analytics.service import VehiclePerformanceService
from services.common.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
NOW = 20_000 * DAY  # the fake clock: day 20,000 after the epoch (2024-10-04)
YEAR_1 = -62_135_596_800 * SECOND  # 0001-01-01T00:00:00Z
GAP = 300 * SECOND  # the session gap the service is built with
REACH = 900 * SECOND  # the reach it is built with: other sessions within 2 * 900 s matter


def session(
    vehicle: str,
    charger: str,
    first: int,
    last: int,
    *,
    start: int | None = None,
    dc: float = 1.0,
    readings: int = 2,
    temp_sum: float = 0.0,
    temp_count: int = 0,
) -> Session:
    """A session read from `first` to `last`, spanning [start, last); by default its first
    interval reaches one minute before its first reading."""
    return Session(
        vehicle_id=vehicle,
        charger_id=charger,
        start_us=first - MINUTE if start is None else start,
        end_us=last,
        kwh_delivered_dc=dc,
        reading_count=readings,
        battery_temp_sum=temp_sum,
        battery_temp_count=temp_count,
        first_reading_us=first,
        last_reading_us=last,
    )


def used(ac: float = 0.0, readings: int = 0, covered: int = 0) -> Consumption:
    return Consumption(ac, readings, covered, implausible_count=0, unknown_energy_count=0)


class FakeDownstream:
    """Answers `sessions` with `own`, `charger_sessions` with those of `on_chargers` on the
    chargers asked for (of the ranges too: a superset of what VehicleService gives) but the
    excluded vehicle's, and `attribute` with `consumption` (by default an empty one per
    session); records every call, and raises `fail` from the call named `failing`."""

    def __init__(
        self,
        own: Sequence[Session] = (),
        on_chargers: Sequence[Session] = (),
        consumption: Sequence[Consumption] | None = None,
        *,
        fail: Exception | None = None,
        failing: str = "sessions",
    ) -> None:
        self._own = list(own)
        self._on_chargers = list(on_chargers)
        self._consumption = None if consumption is None else list(consumption)
        self._fail = fail
        self._failing = failing
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def _called(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self._fail is not None and name == self._failing:
            raise self._fail

    def sessions(
        self, vehicle_id: str, start_us: int, end_us: int, gap_us: int, timeout: float
    ) -> list[Session]:
        self._called("sessions", vehicle_id, start_us, end_us, gap_us, timeout)
        return list(self._own)

    def charger_sessions(
        self,
        charger_ids: Sequence[str],
        ranges: Sequence[ChargerSpan],
        excluded_vehicle_id: str,
        window: tuple[int, int, int],
        timeout: float,
    ) -> list[Session]:
        self._called(
            "charger_sessions",
            list(charger_ids),
            list(ranges),
            excluded_vehicle_id,
            window,
            timeout,
        )
        chargers = {*charger_ids, *(item.charger_id for item in ranges)}
        return [
            s
            for s in self._on_chargers
            if s.charger_id in chargers and s.vehicle_id != excluded_vehicle_id
        ]

    def attribute(
        self,
        sessions: Sequence[Session],
        others: Sequence[Session],
        start_us: int,
        end_us: int,
        timeout: float,
    ) -> list[Consumption]:
        self._called("attribute", list(sessions), list(others), start_us, end_us, timeout)
        if self._consumption is None:
            return [used() for _ in sessions]
        return list(self._consumption)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def service(downstream: FakeDownstream, **overrides: Any) -> VehiclePerformanceService:
    settings: dict[str, Any] = {
        "session_gap_us": GAP,
        "reach_us": REACH,
        "downstream_timeout": 5.0,
        "clock": lambda: NOW,
    }
    settings.update(overrides)
    return VehiclePerformanceService(cast(Downstream, downstream), **settings)


def no_deadline() -> float | None:
    return None


# One session in the middle of the default window (the day ending NOW).
MIDDAY = session("VH-1", "CHG-A", NOW - 12 * HOUR, NOW - 11 * HOUR)


# --- the calls -------------------------------------------------------------------------------


def test_the_default_window_is_the_day_ending_now():
    fake = FakeDownstream()
    result = service(fake).performance("VH-1", None, None, no_deadline)
    assert (result.start_us, result.end_us) == (NOW - DAY, NOW)
    # the window, the configured session gap (300 s) and, without a caller deadline, the setting
    assert fake.calls == [("sessions", ("VH-1", NOW - DAY, NOW, 300 * SECOND, 5.0))]


def test_a_given_end_and_window_are_asked_for_as_they_are():
    fake = FakeDownstream()
    end = NOW - 7 * DAY
    result = service(fake).performance("VH-1", end, 2 * DAY, no_deadline)
    assert fake.calls[0][1][1:3] == (end - 2 * DAY, end)
    assert (result.start_us, result.end_us) == (end - 2 * DAY, end)


def test_a_vehicle_without_sessions_asks_nothing_more_and_gets_zeros():
    fake = FakeDownstream(on_chargers=[MIDDAY])
    result = service(fake).performance("VH-1", None, None, no_deadline)
    assert fake.names() == ["sessions"]  # no charger sessions, no attribution
    assert result.sessions == []
    # nothing to attribute: 0 AC and 0 loss are known; no ratio, no average, no flag
    assert result.totals == Figures(0.0, 0.0, None, 0.0, None, 0, 0, 0.0, ())


def test_other_sessions_are_asked_once_around_the_vehicles_sessions():
    own = [
        session("VH-1", "CHG-B", NOW - 20 * HOUR, NOW - 19 * HOUR),
        session("VH-1", "CHG-A", NOW - 15 * HOUR, NOW - 14 * HOUR),
        session("VH-1", "CHG-B", NOW - 10 * HOUR, NOW - 9 * HOUR),
        # 20 min after the one before on CHG-B: its range joins that one's
        session("VH-1", "CHG-B", NOW - 8 * HOUR - 40 * MINUTE, NOW - 8 * HOUR),
    ]
    fake = FakeDownstream(own)
    service(fake).performance("VH-1", NOW, DAY, no_deadline)
    assert fake.names() == ["sessions", "charger_sessions", "attribute"]
    # By charger then start: from the margin (2 * 900 s) and the gap (300 s) before each span
    # (which starts a minute before its first reading) to twice the margin and the gap after
    # it, overlapping ones merged; the vehicle itself excluded; the window and the gap.
    before, after = 30 * MINUTE + 5 * MINUTE, 60 * MINUTE + 5 * MINUTE
    assert fake.calls[1] == (
        "charger_sessions",
        (
            [],
            [
                ChargerSpan("CHG-A", NOW - 15 * HOUR - MINUTE - before, NOW - 14 * HOUR + after),
                ChargerSpan("CHG-B", NOW - 20 * HOUR - MINUTE - before, NOW - 19 * HOUR + after),
                ChargerSpan("CHG-B", NOW - 10 * HOUR - MINUTE - before, NOW - 8 * HOUR + after),
            ],
            "VH-1",
            (NOW - DAY, NOW, 300 * SECOND),
            5.0,
        ),
    )


def test_the_vehicles_own_sessions_alone_are_attributed_when_nobody_else_charged():
    own = [MIDDAY]
    # ListChargerSessions gives every vehicle's sessions, the vehicle's own among them
    fake = FakeDownstream(own, on_chargers=[MIDDAY])
    service(fake).performance("VH-1", NOW, DAY, no_deadline)
    assert fake.calls[2] == ("attribute", ([MIDDAY], [], NOW - DAY, NOW, 5.0))


def test_others_near_are_arranged_with_the_vehicles_sessions_and_attributed_in_one_call():
    t = NOW - DAY  # the window's start
    # CHG-B: this vehicle read 10:00..11:00, its first interval inferred back to 09:50, inside
    # VH-2's session that ended 09:55 (back to back); VH-3 charged there 01:00..02:00.
    own_b = session("VH-1", "CHG-B", t + 10 * HOUR, t + 11 * HOUR, start=t + 9 * HOUR + 50 * MINUTE)
    before = session("VH-2", "CHG-B", t + 9 * HOUR, t + 9 * HOUR + 55 * MINUTE)
    far = session("VH-3", "CHG-B", t + 1 * HOUR, t + 2 * HOUR)
    # CHG-A: this vehicle read 14:00..15:00 while VH-4 read 14:30..15:30 (two outlets).
    own_a = session("VH-1", "CHG-A", t + 14 * HOUR, t + 15 * HOUR)
    beside = session("VH-4", "CHG-A", t + 14 * HOUR + 30 * MINUTE, t + 15 * HOUR + 30 * MINUTE)
    fake = FakeDownstream(
        [own_b, own_a],
        # by charger, then start, as VehicleService orders them; the vehicle's own included
        on_chargers=[own_a, beside, far, before, own_b],
    )
    result = service(fake).performance("VH-1", NOW, DAY, no_deadline)

    moved = replace(own_b, start_us=t + 9 * HOUR + 55 * MINUTE)  # max(09:50, VH-2's end 09:55)
    own_concurrent = replace(own_a, flags=frozenset({Quality.CONCURRENT_SESSIONS}))
    other_concurrent = replace(beside, flags=frozenset({Quality.CONCURRENT_SESSIONS}))
    # CHG-A has concurrent sessions: its others are asked for again over the whole window
    assert fake.calls[2] == (
        "charger_sessions",
        (["CHG-A"], [], "VH-1", (NOW - DAY, NOW, 300 * SECOND), 5.0),
    )
    # far ended 02:00, not after own_b's start (moved) 09:55 - 2 * 900 s = 09:25: left out
    assert fake.calls[3] == (
        "attribute",
        ([moved, own_concurrent], [other_concurrent, before], NOW - DAY, NOW, 5.0),
    )
    assert [item.session for item in result.sessions] == [moved, own_concurrent]


def test_own_sessions_overlapping_on_two_chargers_are_flagged_before_attribution():
    t = NOW - DAY
    on_a = session("VH-1", "CHG-A", t + 10 * HOUR, t + 11 * HOUR)
    on_b = session("VH-1", "CHG-B", t + 10 * HOUR + 30 * MINUTE, t + 11 * HOUR + 30 * MINUTE)
    fake = FakeDownstream([on_a, on_b])
    result = service(fake).performance("VH-1", NOW, DAY, no_deadline)
    two = frozenset({Quality.VEHICLE_ON_TWO_CHARGERS})
    assert fake.calls[2][1][0] == [replace(on_a, flags=two), replace(on_b, flags=two)]
    for item in result.sessions:
        assert item.figures.flags == (
            Quality.METER_DATA_MISSING,  # the fake's meters saw nothing
            Quality.VEHICLE_ON_TWO_CHARGERS,
        )


def test_own_sessions_back_to_back_on_two_chargers_keep_their_starts():
    t = NOW - DAY
    on_a = session("VH-1", "CHG-A", t + 10 * HOUR, t + 11 * HOUR)  # starts 09:59
    # read from 11:10 (after on_a's last reading at 11:00: back to back), its first interval
    # inferred back to 10:50, inside on_a's span [09:59, 11:00) but behind another meter
    on_b = session(
        "VH-1",
        "CHG-B",
        t + 11 * HOUR + 10 * MINUTE,
        t + 12 * HOUR,
        start=t + 10 * HOUR + 50 * MINUTE,
    )
    fake = FakeDownstream([on_a, on_b], on_chargers=[on_a, on_b])
    result = service(fake).performance("VH-1", NOW, DAY, no_deadline)
    # neither cut (on_b keeps 10:50, not max(10:50, 11:00) = 11:00) nor flagged
    assert fake.calls[2] == ("attribute", ([on_a, on_b], [], NOW - DAY, NOW, 5.0))
    assert [item.session for item in result.sessions] == [on_a, on_b]


def test_another_vehicles_session_is_sent_cut_alike_whichever_vehicle_asks():
    t = NOW - DAY
    # VH-1 read on CHG-A 10:00..11:00, then on CHG-B 11:10..12:00 (inferred back to 10:50);
    # VH-2 read on CHG-B 12:10..13:00, its first interval inferred back to 11:55, inside
    # VH-1's CHG-B session that ended 12:00: cut to max(11:55, 12:00) = 12:00.
    vh1_a = session("VH-1", "CHG-A", t + 10 * HOUR, t + 11 * HOUR)
    vh1_b = session(
        "VH-1",
        "CHG-B",
        t + 11 * HOUR + 10 * MINUTE,
        t + 12 * HOUR,
        start=t + 10 * HOUR + 50 * MINUTE,
    )
    vh2_b = session(
        "VH-2",
        "CHG-B",
        t + 12 * HOUR + 10 * MINUTE,
        t + 13 * HOUR,
        start=t + 11 * HOUR + 55 * MINUTE,
    )
    cut = replace(vh2_b, start_us=t + 12 * HOUR)

    asking_vh1 = FakeDownstream([vh1_a, vh1_b], on_chargers=[vh1_a, vh1_b, vh2_b])
    service(asking_vh1).performance("VH-1", NOW, DAY, no_deadline)
    assert asking_vh1.calls[2][1][:2] == ([vh1_a, vh1_b], [cut])

    # VH-2 is only on CHG-B: VH-1's CHG-A session is not in its request at all
    asking_vh2 = FakeDownstream([vh2_b], on_chargers=[vh1_b, vh2_b])
    service(asking_vh2).performance("VH-2", NOW, DAY, no_deadline)
    assert [item.charger_id for item in asking_vh2.calls[1][1][1]] == ["CHG-B"]
    # the same two CHG-B sessions, cut the same: VH-1's still from 10:50, VH-2's from 12:00
    assert asking_vh2.calls[2][1][:2] == ([cut], [vh1_b])


def test_a_far_other_session_still_cuts_a_nearer_one_before_it_is_left_out():
    t = NOW - DAY
    own = session("VH-1", "CHG-A", t + 10 * HOUR, t + 11 * HOUR)  # starts 09:59
    # VH-2 read 08:00..09:00; VH-3 read 09:20..09:40, its first interval inferred back to
    # 08:50, inside VH-2's session: cut to max(08:50, 09:00) = 09:00 (VH-2's last reading
    # 09:00 > 09:20 - 2 * 900 s = 08:50: within the horizon, compared).
    far = session("VH-2", "CHG-A", t + 8 * HOUR, t + 9 * HOUR)
    nearer = session(
        "VH-3",
        "CHG-A",
        t + 9 * HOUR + 20 * MINUTE,
        t + 9 * HOUR + 40 * MINUTE,
        start=t + 8 * HOUR + 50 * MINUTE,
    )
    fake = FakeDownstream([own], on_chargers=[far, nearer, own])
    service(fake).performance("VH-1", NOW, DAY, no_deadline)
    # the margin from own's start: 09:59 - 30 min = 09:29. far ends 09:00 <= 09:29: left out;
    # nearer ends 09:40 > 09:29: sent, cut by far all the same (from 09:00, not 08:50).
    # own is not cut: max(09:59, nearer's end 09:40) = 09:59.
    assert fake.calls[2][1][:2] == ([own], [replace(nearer, start_us=t + 9 * HOUR)])


@pytest.mark.parametrize(
    ("last", "own_start"),
    [
        # the horizon is the margin, 2 * 900 s = 30 min before own's first reading 10:00: a
        # session read until 09:30 is not compared, and own keeps its start 09:00 (inferred
        # back an hour, past the horizon, only so that a comparison would show)
        pytest.param(9 * HOUR + 30 * MINUTE, 9 * HOUR, id="last reading at the horizon"),
        # read until a microsecond later: compared, back to back: max(09:00, 09:30 + 1 us)
        pytest.param(
            9 * HOUR + 30 * MINUTE + 1, 9 * HOUR + 30 * MINUTE + 1, id="a microsecond nearer"
        ),
    ],
)
def test_sessions_are_compared_within_the_margin_as_horizon(last, own_start):
    t = NOW - DAY
    own = session("VH-1", "CHG-A", t + 10 * HOUR, t + 11 * HOUR, start=t + 9 * HOUR)
    other = session("VH-2", "CHG-A", t + 8 * HOUR, t + last)
    fake = FakeDownstream([own], on_chargers=[other, own])
    service(fake).performance("VH-1", NOW, DAY, no_deadline)
    # sent either way: it ends after own's start - 30 min (08:30, or 09:00 + 1 us)
    assert fake.calls[2][1][:2] == ([replace(own, start_us=t + own_start)], [other])


@pytest.mark.parametrize(
    ("end", "sent"),
    [
        # the own session starts at 09:59 (its first reading 10:00, minus a minute); the margin
        # is 2 * 900 s = 30 min, so another session matters when it ends after 09:29
        pytest.param(29 * MINUTE + 1, True, id="ending a microsecond after start - margin"),
        pytest.param(29 * MINUTE, False, id="ending exactly at start - margin"),
    ],
)
def test_others_are_sent_when_within_twice_the_reach(end, sent):
    t = NOW - DAY
    own = session("VH-1", "CHG-A", t + 10 * HOUR, t + 11 * HOUR)
    other = session("VH-2", "CHG-A", t + 8 * HOUR, t + 9 * HOUR + end)
    fake = FakeDownstream([own], on_chargers=[other, own])
    service(fake).performance("VH-1", NOW, DAY, no_deadline)
    assert fake.calls[2][1][1] == ([other] if sent else [])


def test_the_attributed_energy_is_composed_per_session_and_in_total():
    t = NOW - DAY
    first = session(
        "VH-1",
        "CHG-A",
        t + 1 * HOUR,
        t + 2 * HOUR,
        dc=18.0,
        readings=10,
        temp_sum=250.0,
        temp_count=10,
        start=t + 1 * HOUR,
    )
    second = session(
        "VH-1",
        "CHG-B",
        t + 5 * HOUR,
        t + 6 * HOUR,
        dc=9.0,
        readings=5,
        temp_sum=150.0,
        temp_count=5,
        start=t + 5 * HOUR,
    )
    fake = FakeDownstream(
        [first, second],
        consumption=[used(20.0, 4, HOUR), used(10.0, 4, HOUR)],  # each span fully covered
    )
    result = service(fake).performance("VH-1", NOW, DAY, no_deadline)
    assert [s.figures.efficiency_ratio for s in result.sessions] == [0.9, 0.9]  # 18/20, 9/10
    assert result.totals == Figures(
        energy_consumed_ac=30.0,  # 20 + 10
        energy_delivered_dc=27.0,  # 18 + 9
        efficiency_ratio=0.9,  # 27 / 30
        energy_loss_kwh=3.0,  # 30 - 27
        avg_battery_temperature=400.0 / 15,  # (250 + 150) / (10 + 5)
        data_points=15,  # 10 + 5
        meter_data_points=8,  # 4 + 4
        ac_coverage=1.0,  # (1 h + 1 h) / (1 h + 1 h)
        flags=(),
    )


# --- deadlines -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "budget"),
    [(2.0, 2.0), (5.0, 5.0), (60.0, 5.0)],
    ids=["less than the setting", "equal", "more than the setting"],
)
def test_each_downstream_call_gets_the_callers_remaining_time_capped_by_the_setting(
    remaining, budget
):
    fake = FakeDownstream([MIDDAY])
    service(fake).performance("VH-1", None, None, lambda: remaining)
    assert fake.names() == ["sessions", "charger_sessions", "attribute"]
    assert [args[-1] for _, args in fake.calls] == [budget, budget, budget]


def test_each_call_gets_what_is_left_when_it_is_made():
    fake = FakeDownstream([MIDDAY])
    left = iter([4.0, 2.5, 0.5])
    service(fake).performance("VH-1", None, None, lambda: next(left))
    assert [args[-1] for _, args in fake.calls] == [4.0, 2.5, 0.5]


@pytest.mark.parametrize("remaining", [0.0, -1.0])
def test_a_caller_whose_deadline_passed_is_not_served(remaining):
    fake = FakeDownstream([MIDDAY])
    with pytest.raises(DeadlineExceeded):
        service(fake).performance("VH-1", None, None, lambda: remaining)
    assert fake.calls == []


@pytest.mark.parametrize(
    ("left", "made"),
    [
        pytest.param([1.5, 0.0], ["sessions"], id="after the sessions"),
        pytest.param([1.5, 1.0, 0.0], ["sessions", "charger_sessions"], id="before attribution"),
    ],
)
def test_a_deadline_that_passes_midway_stops_the_later_calls(left, made):
    fake = FakeDownstream([MIDDAY])
    remaining = iter(left)
    with pytest.raises(DeadlineExceeded):
        service(fake).performance("VH-1", None, None, lambda: next(remaining))
    assert fake.names() == made


# --- refusals and failures -------------------------------------------------------------------


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
    fake = FakeDownstream([MIDDAY])
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
    refused_fake = FakeDownstream()
    with pytest.raises(InvalidArgument) as refused:
        service(refused_fake).performance("VH-1", YEAR_1 + DAY - 1, DAY, no_deadline)
    assert refused.value.violations == [("window", "must not reach before 0001-01-01T00:00:00Z")]
    assert refused_fake.calls == []


@pytest.mark.parametrize(
    ("failing", "error", "made"),
    [
        pytest.param("sessions", NotFound("vehicle VH-1 not found"), ["sessions"], id="sessions"),
        pytest.param(
            "charger_sessions",
            Unavailable("VehicleService unavailable"),
            ["sessions", "charger_sessions"],
            id="charger sessions",
        ),
        pytest.param(
            "attribute",
            Unavailable("MeterService unavailable"),
            ["sessions", "charger_sessions", "attribute"],
            id="attribution",
        ),
    ],
)
def test_a_downstream_failure_reaches_the_caller_and_stops_the_later_calls(failing, error, made):
    fake = FakeDownstream([MIDDAY], fail=error, failing=failing)
    with pytest.raises(type(error)) as raised:
        service(fake).performance("VH-1", None, None, no_deadline)
    assert raised.value is error
    assert fake.names() == made
