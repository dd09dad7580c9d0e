"""The correlation rule's composing half as pure functions (README, "How correlation works"):
when two sessions' readings interleave, how sessions of one charger (or of one vehicle) are kept
from sharing time, which other vehicles' sessions are near enough to matter, and the figures of
a session and of the window with their coverage and quality flags. No database, no I/O.

Times are plain microsecond counts; every expected value is worked out by hand beside it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.analytics.correlation import (
    FULL_COVERAGE,
    Consumption,
    Figures,
    Quality,
    Session,
    arrange,
    compose,
    figures,
    near,
    separate,
)


def session(
    vehicle: str,
    charger: str,
    start: int,
    end: int,
    *,
    first: int | None = None,
    last: int | None = None,
    dc: float = 0.0,
    readings: int = 1,
    temp_sum: float = 0.0,
    temp_count: int = 0,
    flags: frozenset[Quality] = frozenset(),
) -> Session:
    """A session spanning [start, end); its readings run from `first` (default: the span's
    end, a one-reading session) to `last` (default: the span's end)."""
    return Session(
        vehicle_id=vehicle,
        charger_id=charger,
        start_us=start,
        end_us=end,
        kwh_delivered_dc=dc,
        reading_count=readings,
        battery_temp_sum=temp_sum,
        battery_temp_count=temp_count,
        first_reading_us=end if first is None else first,
        last_reading_us=end if last is None else last,
        flags=flags,
    )


def run(vehicle: str, charger: str, first: int, last: int) -> Session:
    """A session of which only the readings matter (`interleaves`): span = its readings."""
    return session(vehicle, charger, first, last, first=first, last=last)


CONCURRENT = Quality.CONCURRENT_SESSIONS
TWO_CHARGERS = Quality.VEHICLE_ON_TWO_CHARGERS
# How far a span may start before its first reading, in the tests that are not about it: more
# than any session here reaches back (at most 300 - 50 = 250), so every pair is compared.
HORIZON = 1_000


# --- Session.interleaves ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        pytest.param((100, 200), (150, 250), True, id="overlapping runs"),
        pytest.param((100, 400), (200, 300), True, id="one run inside the other"),
        pytest.param((100, 200), (100, 200), True, id="the same run"),
        # 100 < 300 but 200 < 200 is false: a shared instant is not a reading inside the other
        pytest.param((100, 200), (200, 300), False, id="touching runs (strict)"),
        pytest.param((100, 200), (201, 300), False, id="disjoint runs"),
        # one reading at 150: 150 < 200 and 100 < 150
        pytest.param((150, 150), (100, 200), True, id="one reading strictly inside a run"),
        # one reading at 100, the run's first: both start at the same instant
        pytest.param((100, 100), (100, 200), True, id="one reading at the run's first"),
        # one reading at 200: 200 < 200 is false
        pytest.param((200, 200), (100, 200), False, id="one reading at the run's last"),
        # 150 < 150 is false both ways, but both start at 150
        pytest.param((150, 150), (150, 150), True, id="two single readings at one instant"),
        pytest.param((150, 150), (160, 160), False, id="two single readings apart"),
    ],
)
def test_interleaves_compares_the_runs_of_readings_strictly(a, b, expected):
    first = run("VH-1", "CHG-A", *a)
    second = run("VH-2", "CHG-A", *b)
    assert first.interleaves(second) is expected
    assert second.interleaves(first) is expected  # symmetric


def test_interleaves_looks_at_readings_not_at_spans():
    # The spans [50, 200) and [150, 300) overlap by 50, but the readings (100..200 and
    # 250..300) do not: 250 < 200 is false. Back-to-back, not concurrent.
    first = session("VH-1", "CHG-A", 50, 200, first=100, last=200)
    second = session("VH-2", "CHG-A", 150, 300, first=250, last=300)
    assert not first.interleaves(second)
    assert not second.interleaves(first)


# --- separate --------------------------------------------------------------------------------


def test_back_to_back_the_later_start_moves_to_the_earlier_end():
    earlier = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    # its first interval was inferred back to 180, 20 inside the earlier session [90, 200)
    later = session("VH-2", "CHG-A", 180, 300, first=230, last=300)
    result = separate([earlier, later], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
    # the later starts at max(180, 200) = 200; the earlier is untouched; nobody flagged
    assert result == [earlier, replace(later, start_us=200)]


def test_back_to_back_given_later_first_is_still_the_later_that_moves_and_order_is_kept():
    earlier = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    later = session("VH-2", "CHG-A", 180, 300, first=230, last=300)
    result = separate([later, earlier], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
    # "later" by its first reading (230 > 100), wherever it stands in the list
    assert result == [replace(later, start_us=200), earlier]


def test_a_later_session_that_starts_after_the_earlier_end_is_left_alone():
    earlier = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    later = session("VH-2", "CHG-A", 250, 300, first=260, last=300)
    # max(250, 200) = 250: unchanged
    assert separate([earlier, later], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON) == [
        earlier,
        later,
    ]


def test_a_start_never_moves_past_its_own_end():
    # The window ends at 400: the earlier session, read until 500, is cut to [90, 400); the
    # later's first reading (520) is after the window but its inferred interval reaches back
    # to 390, so it is cut to [390, 400).
    earlier = session("VH-1", "CHG-A", 90, 400, first=100, last=500)
    later = session("VH-2", "CHG-A", 390, 400, first=520, last=600)
    result = separate([earlier, later], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
    # start = min(max(390, 400), 400) = 400: an empty span [400, 400), never negative
    assert result == [earlier, replace(later, start_us=400)]
    assert result[1].end_us - result[1].start_us == 0


def test_runs_that_begin_at_one_instant_are_concurrent_whatever_their_order():
    # Both runs begin at 100: both vehicles were on the charger then. Concurrent, in either
    # order, and neither start moves.
    earlier = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    single = session("VH-2", "CHG-A", 50, 100, first=100, last=100)
    flagged = [
        replace(earlier, flags=frozenset({CONCURRENT})),
        replace(single, flags=frozenset({CONCURRENT})),
    ]
    assert (
        separate([earlier, single], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
        == flagged
    )
    assert (
        separate([single, earlier], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
        == flagged[::-1]
    )


def test_a_one_reading_session_at_the_earlier_last_reading_becomes_empty():
    earlier = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    # one reading at 200 (= the earlier's last: not interleaving), its interval [150, 200)
    single = session("VH-2", "CHG-A", 150, 200, first=200, last=200)
    result = separate([earlier, single], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
    # min(max(150, 200), 200) = 200: [200, 200)
    assert result == [earlier, replace(single, start_us=200)]


def test_interleaving_sessions_are_both_flagged_and_keep_their_starts():
    first = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    second = session("VH-2", "CHG-A", 140, 250, first=150, last=250)  # 150 < 200: interleave
    result = separate([first, second], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
    assert result == [
        replace(first, flags=frozenset({CONCURRENT})),
        replace(second, flags=frozenset({CONCURRENT})),  # start still 140, not 200
    ]


def test_a_flag_joins_the_flags_a_session_already_has():
    first = session("VH-1", "CHG-A", 90, 200, first=100, last=200, flags=frozenset({TWO_CHARGERS}))
    second = session("VH-2", "CHG-A", 140, 250, first=150, last=250)
    result = separate([first, second], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
    assert result[0].flags == frozenset({TWO_CHARGERS, CONCURRENT})
    assert result[1].flags == frozenset({CONCURRENT})


def test_sessions_alike_in_the_apart_key_are_ignored():
    # one vehicle's two sessions on one charger: apart by vehicle, they are never compared,
    # neither the interleaving pair nor the back-to-back one
    a = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    b = session("VH-1", "CHG-A", 140, 250, first=150, last=250)  # readings interleave a's
    c = session("VH-1", "CHG-A", 240, 300, first=260, last=300)  # start 240 inside b's span
    assert separate([a, b, c], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON) == [a, b, c]


def test_apart_by_charger_flags_one_vehicle_on_two_chargers():
    on_a = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    on_b = session("VH-1", "CHG-B", 140, 250, first=150, last=250)
    result = separate([on_a, on_b], apart="charger_id", flag=TWO_CHARGERS, horizon_us=HORIZON)
    assert [s.flags for s in result] == [frozenset({TWO_CHARGERS})] * 2
    assert [s.start_us for s in result] == [90, 140]


def test_three_sessions_out_of_order_each_starts_after_every_earlier_end():
    a = session("VH-1", "CHG-A", 0, 100, first=10, last=100)
    b = session("VH-2", "CHG-A", 80, 200, first=120, last=200)  # reaches 20 into a
    c = session("VH-3", "CHG-A", 50, 300, first=250, last=300)  # reaches into a and b
    result = separate([c, a, b], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
    # order kept; b: max(80, 100) = 100; c: max(50, 100, 200) = 200
    assert result == [replace(c, start_us=200), a, replace(b, start_us=100)]


def test_an_interleaving_pair_and_a_back_to_back_one_in_the_same_list():
    a = session("VH-1", "CHG-A", 0, 100, first=10, last=100)
    b = session("VH-2", "CHG-A", 40, 150, first=50, last=150)  # 50 < 100: interleaves a
    c = session("VH-3", "CHG-A", 120, 200, first=160, last=200)  # after both: 160 > 150
    result = separate([a, b, c], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
    # c: max(120, a's end 100, b's end 150) = 150
    assert result == [
        replace(a, flags=frozenset({CONCURRENT})),
        replace(b, flags=frozenset({CONCURRENT})),
        replace(c, start_us=150),
    ]


def test_separating_nothing_or_one_session():
    only = session("VH-1", "CHG-A", 0, 100, first=10, last=100)
    assert separate([], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON) == []
    assert separate([only], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON) == [only]


def test_earlier_is_by_first_reading_not_by_start():
    # `reaching` starts first (50) but reads last (300, its interval inferred back to 50);
    # `short` reads 110..200. By first reading, short is the earlier: reaching (300 >= 200,
    # back to back) starts at max(50, 200) = 200, and short is not cut by reaching's start.
    reaching = session("VH-1", "CHG-A", 50, 350, first=300, last=350)
    short = session("VH-2", "CHG-A", 100, 200, first=110, last=200)
    result = separate([reaching, short], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON)
    assert result == [replace(reaching, start_us=200), short]


def test_without_clip_only_interleaving_pairs_are_flagged_and_no_start_moves():
    a = session("VH-1", "CHG-A", 0, 100, first=10, last=100)
    b = session("VH-2", "CHG-A", 40, 150, first=50, last=150)  # 50 < 100: interleaves a
    c = session("VH-3", "CHG-A", 120, 200, first=160, last=200)  # back to back after both
    result = separate(
        [a, b, c], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON, clip=False
    )
    # with clip, c would start at max(120, 100, 150) = 150; without, it keeps 120
    assert result == [
        replace(a, flags=frozenset({CONCURRENT})),
        replace(b, flags=frozenset({CONCURRENT})),
        c,
    ]


def test_without_clip_back_to_back_sessions_are_returned_as_they_are():
    earlier = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    later = session("VH-2", "CHG-A", 180, 300, first=230, last=300)  # reaches 20 into earlier
    result = separate(
        [earlier, later], apart="vehicle_id", flag=CONCURRENT, horizon_us=HORIZON, clip=False
    )
    assert result == [earlier, later]  # start 180, not max(180, 200) = 200


@pytest.mark.parametrize(
    ("earlier_last", "later_start"),
    [
        # 200 <= 300 - 100: at the horizon, not compared; the later keeps its start 150 (this
        # later reaches back 150, past the horizon, only so that a comparison would show)
        pytest.param(200, 150, id="last reading exactly the horizon before: not compared"),
        # 201 > 300 - 100: compared, back to back (300 >= 201): max(150, 201) = 201
        pytest.param(201, 201, id="a microsecond nearer: compared"),
    ],
)
def test_sessions_beyond_the_horizon_are_not_compared(earlier_last, later_start):
    earlier = session("VH-1", "CHG-A", 90, earlier_last, first=100, last=earlier_last)
    later = session("VH-2", "CHG-A", 150, 400, first=300, last=400)
    result = separate([earlier, later], apart="vehicle_id", flag=CONCURRENT, horizon_us=100)
    assert result == [earlier, replace(later, start_us=later_start)]


def test_the_horizon_is_from_the_last_reading_so_a_long_session_stays_near():
    # long reads 0..1,000 and short 100..150 (interleaving it); late's first reading is at
    # 1,050, its span inferred back to 950. Horizon 100: 1,050 - 100 = 950; short (150 <= 950)
    # has dropped out, long (1,000 > 950) is still compared although it began long before.
    long = session("VH-1", "CHG-A", 0, 1000, first=0, last=1000)
    short = session("VH-2", "CHG-A", 90, 150, first=100, last=150)
    late = session("VH-3", "CHG-A", 950, 1100, first=1050, last=1100)
    result = separate([long, short, late], apart="vehicle_id", flag=CONCURRENT, horizon_us=100)
    assert result == [
        replace(long, flags=frozenset({CONCURRENT})),  # 100 < 1,000 and 0 < 150: interleave
        replace(short, flags=frozenset({CONCURRENT})),
        replace(late, start_us=1000),  # 1,050 >= 1,000: back to back, max(950, 1,000)
    ]


def test_runs_that_begin_at_one_instant_are_compared_within_any_horizon():
    # two single readings at 500, each span inferred back 1: 500 > 500 - 1, still near
    first = session("VH-1", "CHG-A", 499, 500, first=500, last=500)
    second = session("VH-2", "CHG-A", 499, 500, first=500, last=500)
    result = separate([first, second], apart="vehicle_id", flag=CONCURRENT, horizon_us=1)
    assert result == [
        replace(first, flags=frozenset({CONCURRENT})),
        replace(second, flags=frozenset({CONCURRENT})),
    ]


# --- arrange ---------------------------------------------------------------------------------


def test_own_sessions_back_to_back_on_two_chargers_keep_their_starts():
    on_a = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    # reaches 20 into on_a's span, but behind another meter: 230 >= 200, not interleaving
    on_b = session("VH-1", "CHG-B", 180, 300, first=230, last=300)
    own, others = arrange([on_a, on_b], [], HORIZON)
    assert own == [on_a, on_b]  # start still 180 (not max(180, 200) = 200), no flag
    assert others == []


def test_other_vehicles_sessions_are_cut_alike_whichever_vehicle_asks():
    # VH-1 charged on CHG-A, then on CHG-B, its CHG-B span inferred back to 180 (inside its
    # CHG-A span); VH-2 charged on CHG-B before. Asked about VH-1 (chargers A and B) or about
    # VH-2 (charger B alone), CHG-B's sessions come out the same: VH-1's keeps 180.
    vh1_a = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    vh1_b = session("VH-1", "CHG-B", 180, 300, first=230, last=300)
    vh2_b = session("VH-2", "CHG-B", 50, 150, first=60, last=150)  # ends 150 <= 180: no cut
    assert arrange([vh1_a, vh1_b], [vh2_b], HORIZON) == ([vh1_a, vh1_b], [vh2_b])
    assert arrange([vh2_b], [vh1_b], HORIZON) == ([vh2_b], [vh1_b])


def test_own_sessions_interleaving_on_two_chargers_are_flagged():
    on_a = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    on_b = session("VH-1", "CHG-B", 140, 250, first=150, last=250)  # 150 < 200
    own, _ = arrange([on_a, on_b], [], HORIZON)
    assert own == [
        replace(on_a, flags=frozenset({TWO_CHARGERS})),
        replace(on_b, flags=frozenset({TWO_CHARGERS})),
    ]


def test_own_after_another_vehicle_on_its_charger_is_clipped():
    other = session("VH-2", "CHG-A", 90, 200, first=100, last=200)
    mine = session("VH-1", "CHG-A", 180, 300, first=230, last=300)
    own, others = arrange([mine], [other], HORIZON)
    assert own == [replace(mine, start_us=200)]  # max(180, 200)
    assert others == [other]


def test_another_vehicle_after_own_on_its_charger_is_clipped():
    mine = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    other = session("VH-2", "CHG-A", 180, 300, first=230, last=300)
    own, others = arrange([mine], [other], HORIZON)
    assert own == [mine]
    assert others == [replace(other, start_us=200)]  # max(180, 200)


def test_own_interleaving_another_vehicle_on_its_charger_are_both_concurrent():
    mine = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    other = session("VH-2", "CHG-A", 140, 250, first=150, last=250)  # 150 < 200
    own, others = arrange([mine], [other], HORIZON)
    assert own == [replace(mine, flags=frozenset({CONCURRENT}))]
    assert others == [replace(other, flags=frozenset({CONCURRENT}))]


def test_sessions_on_other_chargers_are_untouched():
    mine = session("VH-1", "CHG-A", 90, 200, first=100, last=200)
    # at the same time, interleaving even, but behind another meter
    other = session("VH-2", "CHG-B", 140, 250, first=150, last=250)
    assert arrange([mine], [other], HORIZON) == ([mine], [other])


def test_other_vehicles_on_one_charger_are_kept_apart_too():
    mine = session("VH-1", "CHG-A", 500, 600, first=510, last=600)
    first = session("VH-2", "CHG-A", 90, 200, first=100, last=200)
    second = session("VH-3", "CHG-A", 180, 300, first=230, last=300)
    _, others = arrange([mine], [first, second], HORIZON)
    assert others == [first, replace(second, start_us=200)]  # max(180, 200)


def test_own_start_moves_past_another_vehicle_on_its_charger_not_past_its_other_charger():
    own_b = session("VH-1", "CHG-B", 50, 200, first=100, last=200)
    other_a = session("VH-2", "CHG-A", 60, 170, first=100, last=170)
    own_a = session("VH-1", "CHG-A", 150, 300, first=260, last=300)
    own, others = arrange([own_b, own_a], [other_a], HORIZON)
    # on CHG-A: max(150, other_a's end 170) = 170; own_b's end 200 on CHG-B does not count
    # (260 >= 200: back to back, so no flag either)
    assert own == [own_b, replace(own_a, start_us=170)]
    assert others == [other_a]


def test_both_lists_keep_their_order():
    own_b = session("VH-1", "CHG-B", 1000, 1100, first=1010, last=1100)
    own_a = session("VH-1", "CHG-A", 0, 100, first=10, last=100)
    other_b = session("VH-2", "CHG-B", 1080, 1200, first=1150, last=1200)  # after own_b
    other_a = session("VH-3", "CHG-A", 50, 60, first=55, last=60)  # inside own_a's readings
    own, others = arrange([own_b, own_a], [other_b, other_a], HORIZON)
    # own_b (1,010..1,100) and own_a (10..100) are far apart: untouched
    assert own == [own_b, replace(own_a, flags=frozenset({CONCURRENT}))]
    # other_b: max(1,080, 1,100) = 1,100; other_a: 55 inside 10..100, concurrent
    assert others == [
        replace(other_b, start_us=1100),
        replace(other_a, flags=frozenset({CONCURRENT})),
    ]


def test_arranging_nothing():
    assert arrange([], [], HORIZON) == ([], [])


# --- near ------------------------------------------------------------------------------------

MINE = session("VH-1", "CHG-A", 1000, 2000, first=1010, last=2000)


@pytest.mark.parametrize(
    ("start", "end", "is_near"),
    [
        pytest.param(1200, 1800, True, id="inside"),
        # 2,099 < 2,000 + 100 = 2,100
        pytest.param(2099, 2200, True, id="starting just within the margin after"),
        # 2,100 < 2,100 is false
        pytest.param(2100, 2200, False, id="starting exactly the margin after"),
        # 1,000 - 100 = 900 < 901
        pytest.param(800, 901, True, id="ending just within the margin before"),
        # 900 < 900 is false
        pytest.param(800, 900, False, id="ending exactly the margin before"),
        pytest.param(0, 5000, True, id="around it"),
    ],
)
def test_near_is_within_the_margin_of_an_own_session(start, end, is_near):
    other = session("VH-2", "CHG-A", start, end)
    assert near([other], [MINE], 100) == ([other] if is_near else [])


def test_near_with_no_margin_needs_overlap():
    touching_after = session("VH-2", "CHG-A", 2000, 2100)  # 2,000 < 2,000 + 0 is false
    touching_before = session("VH-2", "CHG-A", 900, 1000)  # 1,000 - 0 < 1,000 is false
    overlapping = session("VH-2", "CHG-A", 1999, 2100)  # 1,999 < 2,000 and 1,000 < 2,100
    assert near([touching_after, touching_before, overlapping], [MINE], 0) == [overlapping]


def test_near_only_on_the_chargers_of_own_sessions():
    elsewhere = session("VH-2", "CHG-B", 1200, 1800)  # same time, another charger
    assert near([elsewhere], [MINE], 100) == []


def test_near_any_own_session_keeps_the_others_order():
    second_own = session("VH-1", "CHG-B", 5000, 6000)
    late = session("VH-3", "CHG-B", 6050, 6200)  # near second_own: 6,050 < 6,000 + 100
    early = session("VH-2", "CHG-A", 950, 1050)  # near MINE
    far = session("VH-4", "CHG-A", 5000, 6000)  # CHG-A, but 5,000 >= 2,000 + 100
    # a generator, as the service passes one
    result = near((s for s in [late, far, early]), [MINE, second_own], 100)
    assert result == [late, early]


def test_near_nothing_without_own_sessions():
    assert near([session("VH-2", "CHG-A", 1000, 2000)], [], 100) == []


# --- figures ---------------------------------------------------------------------------------


def figures_of(
    *,
    ac: float = 10.0,
    covered_us: int = 100,
    span_us: int = 100,
    dc: float = 9.0,
    temp_sum: float = 0.0,
    temp_count: int = 0,
    data_points: int = 1,
    meter_points: int = 1,
    meter_readings_seen: int = 1,
    implausible: int = 0,
    flags: tuple[Quality, ...] = (),
    empty: bool = False,
) -> Figures:
    """figures() with a fully covered, plausible session of efficiency 0.9 unless told."""
    return figures(
        ac=ac,
        covered_us=covered_us,
        span_us=span_us,
        dc=dc,
        temp_sum=temp_sum,
        temp_count=temp_count,
        data_points=data_points,
        meter_points=meter_points,
        meter_readings_seen=meter_readings_seen,
        implausible=implausible,
        flags=flags,
        empty=empty,
    )


def test_figures_of_a_fully_covered_session():
    assert figures_of(
        ac=10.0, dc=9.0, temp_sum=75.0, temp_count=3, data_points=4, meter_points=6
    ) == Figures(
        energy_consumed_ac=10.0,
        energy_delivered_dc=9.0,
        efficiency_ratio=0.9,  # 9 / 10
        energy_loss_kwh=1.0,  # 10 - 9
        avg_battery_temperature=25.0,  # 75 / 3
        data_points=4,
        meter_data_points=6,
        ac_coverage=1.0,  # 100 / 100
        flags=(),
    )


def test_without_temperatures_the_average_is_unset():
    assert figures_of(temp_sum=0.0, temp_count=0).avg_battery_temperature is None


def test_no_coverage_leaves_ac_efficiency_and_loss_unset():
    result = figures_of(ac=0.0, covered_us=0, meter_readings_seen=3)
    assert result.ac_coverage == 0.0  # 0 / 100
    assert (result.energy_consumed_ac, result.efficiency_ratio, result.energy_loss_kwh) == (
        None,
        None,
        None,
    )
    assert result.energy_delivered_dc == 9.0  # DC is the vehicle's, known regardless
    # readings were seen (3), none covering: partial, not missing
    assert result.flags == (Quality.METER_DATA_PARTIAL,)


def test_ac_without_coverage_is_still_unset():
    # 5 kWh reported over no covered time cannot be told: unset, with no ratio from it
    result = figures_of(ac=5.0, covered_us=0)
    assert (result.energy_consumed_ac, result.efficiency_ratio, result.energy_loss_kwh) == (
        None,
        None,
        None,
    )


def test_no_meter_reading_seen_is_missing_not_partial():
    result = figures_of(ac=0.0, covered_us=0, meter_points=0, meter_readings_seen=0)
    assert result.flags == (Quality.METER_DATA_MISSING,)
    assert result.energy_consumed_ac is None


def test_coverage_is_the_covered_fraction_of_the_span():
    result = figures_of(ac=4.0, dc=3.6, covered_us=250, span_us=1000)
    assert result.ac_coverage == 0.25  # 250 / 1,000
    assert result.energy_consumed_ac == 4.0  # only the covered part's, but known
    assert result.efficiency_ratio == 0.9  # 3.6 / 4
    assert result.flags == (Quality.METER_DATA_PARTIAL,)  # 0.25 < 0.95


def test_coverage_is_capped_at_one():
    assert figures_of(covered_us=150, span_us=100).ac_coverage == 1.0  # min(1.5, 1)


@pytest.mark.parametrize(
    ("covered", "partial"),
    [
        pytest.param(94, True, id="0.94"),
        pytest.param(95, False, id="exactly 0.95"),
        pytest.param(96, False, id="0.96"),
        pytest.param(100, False, id="all"),
    ],
)
def test_partial_is_below_95_percent_coverage(covered, partial):
    assert FULL_COVERAGE == 0.95
    result = figures_of(covered_us=covered, span_us=100)  # covered / 100
    assert result.flags == ((Quality.METER_DATA_PARTIAL,) if partial else ())


def test_implausible_meter_data_is_flagged():
    result = figures_of(implausible=1)
    assert result.flags == (Quality.IMPLAUSIBLE_METER_DATA,)
    assert figures_of(implausible=0).flags == ()


@pytest.mark.parametrize(
    ("dc", "ac", "efficiency", "out_of_range"),
    [
        pytest.param(8.8, 8.0, 1.1, True, id="above 1 (1.1)"),
        pytest.param(8.0, 8.0, 1.0, False, id="exactly 1"),
        # 462 kWh summed in two orders: an ulp apart, a lossless session all the same.
        pytest.param(462.0000000000004, 462.00000000000034, 1.0000000000000002, False, id="1+ulp"),
        pytest.param(8.00000001, 8.0, 1.00000000125, True, id="1 + 1.25e-9"),
        pytest.param(6.0, 8.0, 0.75, False, id="inside (0.75)"),
        pytest.param(4.0, 8.0, 0.5, False, id="exactly 0.5"),
        pytest.param(3.0, 8.0, 0.375, True, id="below 0.5 (0.375)"),
    ],
)
def test_efficiency_out_of_range_is_flagged_but_reported(dc, ac, efficiency, out_of_range):
    result = figures_of(dc=dc, ac=ac)
    assert result.efficiency_ratio == efficiency  # dc / ac
    assert result.flags == ((Quality.EFFICIENCY_OUT_OF_RANGE,) if out_of_range else ())


def test_zero_ac_with_coverage_leaves_efficiency_unset_but_reports_the_loss():
    result = figures_of(ac=0.0, dc=2.0, covered_us=100, span_us=100)
    assert result.energy_consumed_ac == 0.0  # covered, and the meter measured nothing
    assert result.efficiency_ratio is None  # 2 / 0 is no ratio
    assert result.energy_loss_kwh == -2.0  # 0 - 2
    # DC where the meter measured nothing: physically impossible, flagged
    assert result.flags == (Quality.EFFICIENCY_OUT_OF_RANGE,)


def test_zero_ac_and_zero_dc_with_coverage_is_not_flagged():
    result = figures_of(ac=0.0, dc=0.0, covered_us=100, span_us=100)
    # a plugged vehicle that did not charge: 0 and 0, no ratio, nothing wrong
    assert (result.energy_consumed_ac, result.efficiency_ratio, result.energy_loss_kwh) == (
        0.0,
        None,
        0.0,
    )
    assert result.flags == ()


def test_zero_span_of_no_sessions_is_zeros_and_no_flags():
    result = figures(
        ac=0.0,
        covered_us=0,
        span_us=0,
        dc=0.0,
        temp_sum=0.0,
        temp_count=0,
        data_points=0,
        meter_points=0,
        meter_readings_seen=0,
        implausible=0,
        flags=(),
        empty=True,
    )
    # nothing to attribute: no consumption is a known 0, not a missing meter
    assert result == Figures(0.0, 0.0, None, 0.0, None, 0, 0, 0.0, ())


@pytest.mark.parametrize(
    ("seen", "flag"),
    [
        pytest.param(0, Quality.METER_DATA_MISSING, id="no meter reading seen: missing"),
        # readings seen, but a zero span has no time to cover: coverage 0 < 0.95
        pytest.param(2, Quality.METER_DATA_PARTIAL, id="meter readings seen: partial"),
    ],
)
def test_a_session_of_zero_length_has_ac_efficiency_and_loss_unset_and_is_flagged(seen, flag):
    # a real session (not `empty`), its span emptied: 0.25 kWh DC, no time for any AC
    result = figures_of(
        ac=0.0, covered_us=0, span_us=0, dc=0.25, meter_points=0, meter_readings_seen=seen
    )
    assert result == Figures(
        energy_consumed_ac=None,  # unknown, not 0
        energy_delivered_dc=0.25,
        efficiency_ratio=None,
        energy_loss_kwh=None,  # not 0 - 0.25 = -0.25
        avg_battery_temperature=None,
        data_points=1,
        meter_data_points=0,
        ac_coverage=0.0,  # no span: 0, not 0 / 0
        flags=(flag,),
    )


def test_flags_come_sorted_by_their_wire_value_and_once_each():
    result = figures_of(
        dc=12.0,  # 12 / 10 = 1.2: out of range (6)
        implausible=2,  # implausible (4)
        covered_us=50,  # 50 / 100 = 0.5: partial (2)
        flags=(
            Quality.EFFICIENCY_OUT_OF_RANGE,
            TWO_CHARGERS,
            CONCURRENT,
            TWO_CHARGERS,
        ),
    )
    assert result.flags == (
        Quality.METER_DATA_PARTIAL,  # 2
        Quality.CONCURRENT_SESSIONS,  # 3
        Quality.IMPLAUSIBLE_METER_DATA,  # 4
        Quality.VEHICLE_ON_TWO_CHARGERS,  # 5
        Quality.EFFICIENCY_OUT_OF_RANGE,  # 6
    )


# --- compose ---------------------------------------------------------------------------------


def test_compose_reports_each_session_and_the_totals_over_all_of_them():
    covered = session(
        "VH-1",
        "CHG-A",
        0,
        1000,
        first=10,
        last=1000,
        dc=9.0,
        readings=3,
        temp_sum=60.0,
        temp_count=3,
        flags=frozenset({CONCURRENT}),
    )
    unmetered = session(
        "VH-1",
        "CHG-B",
        2000,
        3000,
        first=2010,
        last=3000,
        dc=5.0,
        readings=2,
        temp_sum=40.0,
        temp_count=1,
    )
    used = [
        Consumption(
            kwh_consumed_ac=10.0,
            reading_count=4,
            covered_us=1000,
            implausible_count=0,
            unknown_energy_count=0,
        ),
        Consumption(0.0, 0, 0, 0, 0),  # CHG-B's meter never reported
    ]
    performance = compose("VH-1", 0, 5000, [covered, unmetered], used)

    assert (performance.vehicle_id, performance.start_us, performance.end_us) == ("VH-1", 0, 5000)
    assert [p.session for p in performance.sessions] == [covered, unmetered]
    assert performance.sessions[0].figures == Figures(
        energy_consumed_ac=10.0,
        energy_delivered_dc=9.0,
        efficiency_ratio=0.9,  # 9 / 10
        energy_loss_kwh=1.0,  # 10 - 9
        avg_battery_temperature=20.0,  # 60 / 3
        data_points=3,
        meter_data_points=4,
        ac_coverage=1.0,  # 1,000 / (1,000 - 0)
        flags=(CONCURRENT,),  # the session's own flag
    )
    assert performance.sessions[1].figures == Figures(
        energy_consumed_ac=None,  # no coverage
        energy_delivered_dc=5.0,
        efficiency_ratio=None,
        energy_loss_kwh=None,
        avg_battery_temperature=40.0,  # 40 / 1
        data_points=2,
        meter_data_points=0,
        ac_coverage=0.0,  # 0 / 1,000
        flags=(Quality.METER_DATA_MISSING,),  # 0 + 0 + 0 meter readings seen
    )
    assert performance.totals == Figures(
        energy_consumed_ac=10.0,  # 10 + 0
        energy_delivered_dc=14.0,  # 9 + 5
        efficiency_ratio=1.4,  # 14 / 10
        energy_loss_kwh=-4.0,  # 10 - 14
        # (60 + 40) / (3 + 1) = 25, not the mean of the averages (20 + 40) / 2 = 30
        avg_battery_temperature=25.0,
        data_points=5,  # 3 + 2
        meter_data_points=4,  # 4 + 0
        ac_coverage=0.5,  # (1,000 + 0) / (1,000 + 1,000)
        flags=(
            Quality.METER_DATA_MISSING,  # the second session's
            Quality.METER_DATA_PARTIAL,  # the totals' own: 0.5 < 0.95
            Quality.CONCURRENT_SESSIONS,  # the first session's
            Quality.EFFICIENCY_OUT_OF_RANGE,  # the totals' own: 1.4 > 1
        ),
    )


def test_compose_counts_implausible_and_unknown_meter_readings_as_seen():
    first = session("VH-1", "CHG-A", 0, 100, first=10, last=100, dc=1.0)
    second = session("VH-1", "CHG-A", 500, 600, first=510, last=600, dc=1.0)
    used = [
        Consumption(0.0, 0, 0, implausible_count=1, unknown_energy_count=0),
        Consumption(0.0, 0, 0, implausible_count=0, unknown_energy_count=2),
    ]
    performance = compose("VH-1", 0, 1000, [first, second], used)
    # seen 0 + 1 + 0 = 1 and 0 + 0 + 2 = 2: the meter reports, none of it usable: partial
    assert [p.figures.flags for p in performance.sessions] == [
        (Quality.METER_DATA_PARTIAL, Quality.IMPLAUSIBLE_METER_DATA),
        (Quality.METER_DATA_PARTIAL,),
    ]
    assert performance.totals.flags == (
        Quality.METER_DATA_PARTIAL,
        Quality.IMPLAUSIBLE_METER_DATA,  # 1 + 0 implausible
    )
    assert performance.totals.ac_coverage == 0.0  # (0 + 0) / (100 + 100)
    assert performance.totals.energy_consumed_ac is None


def test_compose_totals_coverage_is_over_all_spans_together():
    short = session("VH-1", "CHG-A", 0, 100, first=10, last=100, dc=0.9)
    long = session("VH-1", "CHG-A", 1000, 1300, first=1010, last=1300, dc=0.9)
    used = [Consumption(1.0, 1, 100, 0, 0), Consumption(1.0, 1, 150, 0, 0)]
    performance = compose("VH-1", 0, 2000, [short, long], used)
    assert [p.figures.ac_coverage for p in performance.sessions] == [1.0, 0.5]  # 100/100, 150/300
    # (100 + 150) / (100 + 300) = 0.625, not the mean of the fractions (1 + 0.5) / 2 = 0.75
    assert performance.totals.ac_coverage == 0.625


def test_compose_without_sessions_is_zeros_and_unset_ratios():
    performance = compose("VH-1", 0, 1000, [], [])
    assert performance.sessions == []
    assert performance.totals == Figures(0.0, 0.0, None, 0.0, None, 0, 0, 0.0, ())


def test_compose_refuses_a_consumption_per_session_mismatch():
    with pytest.raises(ValueError):
        compose("VH-1", 0, 1000, [session("VH-1", "CHG-A", 0, 100)], [])


def test_a_session_emptied_by_separation_reports_no_made_up_ac_or_loss():
    """README rule 5: a figure that cannot be known is unset, never faked. The window ends at
    400; another vehicle, read until 500, is cut to [90, 400). This vehicle's first reading
    (520, after the window) reports 0.25 kWh DC inside the window for its interval inferred
    back to 390: arrange() empties its span to [400, 400) but its DC stays. No meter interval
    can be attributed to an empty span, so its AC is unknown, and so is its loss; 0 AC and a
    loss of 0 - 0.25 = -0.25 kWh (a charger giving more than it took) would be made up."""
    other = session("VH-2", "CHG-A", 90, 400, first=100, last=500)
    mine = session("VH-1", "CHG-A", 390, 400, first=520, last=600, dc=0.25)
    own, _ = arrange([mine], [other], HORIZON)
    assert (own[0].start_us, own[0].end_us) == (400, 400)  # min(max(390, 400), 400)
    performance = compose("VH-1", 0, 400, own, [Consumption(0.0, 0, 0, 0, 0)])
    for result in (performance.sessions[0].figures, performance.totals):
        assert result.energy_delivered_dc == 0.25
        assert result.energy_consumed_ac is None
        assert result.energy_loss_kwh is None
        assert result.efficiency_ratio is None
