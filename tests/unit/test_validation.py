"""Reading validation: each bound at, just inside and just outside its edge, non-finite numbers,
bad ids and timestamps. The fast path (validate_batch) and the explanations (explain, through the
batch's rejections, and require_valid for unary calls) must agree on every reading: the fast path
refuses exactly what the explanation names, and names the first violation it lists."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from energy.meter.v1.meter_pb2 import MeterReading
from energy.vehicle.v1.vehicle_pb2 import VehicleReading
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.errors import InvalidArgument
from services.common.validation import (
    ID_RULE,
    Bounds,
    KnownIds,
    Rejection,
    TimeWindow,
    id_problem,
    require_valid,
)
from services.meter import rules as meter_rules
from services.vehicle import rules as vehicle_rules

INF = math.inf
NAN = math.nan
TINY = 5e-324  # the smallest positive double


def above(value: float) -> float:
    return math.nextafter(value, INF)


def below(value: float) -> float:
    return math.nextafter(value, -INF)


# 2026-11-20T10:00:00Z; the window is [2000-01-01T00:00:00Z, T + 300 s], as with 300 s of skew.
T = 1_795_168_800
EARLIEST_S = 946_684_800  # 2000-01-01T00:00:00Z: 10,957 days * 86,400 s
LATEST_S = T + 300
WINDOW = TimeWindow(EARLIEST_S * 1_000_000, LATEST_S * 1_000_000, skew_seconds=300.0)
T_US = T * 1_000_000

AFTER_2000 = "must be at or after 2000-01-01T00:00:00Z, got "
# T + 300 s = 2026-11-20T10:05:00Z, the latest time the window takes
SKEW = "must be at most 300 s ahead of the server's clock (CLOCK_SKEW_SECONDS), got "
FINITE = "must be a finite number"


def meter(**fields: Any) -> MeterReading:
    values: dict[str, Any] = {
        "meter_id": "CHG-1",
        "kwh_consumed_ac": 10.0,
        "voltage": 230.0,
        "timestamp": Timestamp(seconds=T),
    }
    values.update(fields)
    if values["timestamp"] is None:
        del values["timestamp"]
    return MeterReading(**values)


def vehicle(**fields: Any) -> VehicleReading:
    values: dict[str, Any] = {
        "vehicle_id": "VH-1",
        "charger_id": "CHG-1",
        "soc": 50.0,
        "kwh_delivered_dc": 10.0,
        "battery_temp": 25.0,
        "timestamp": Timestamp(seconds=T),
    }
    values.update(fields)
    if values["timestamp"] is None:
        del values["timestamp"]
    return VehicleReading(**values)


def outcome(rules_module: Any, reading: Any) -> tuple[str | None, str | None]:
    """(field, why) of the fast path's rejection, None for an accepted reading; checks that
    the fast path and require_valid agree on it."""
    rows, rejections = rules_module.validate_batch([reading], 7, WINDOW)
    try:
        require_valid(rules_module.RULES, reading, WINDOW)
    except InvalidArgument as refused:
        violations = refused.violations
    else:
        violations = []
    if not rejections:
        assert len(rows) == 1
        assert violations == [], "require_valid refuses what the fast path accepted"
        return None, None
    assert rows == []
    [rejection] = rejections
    assert rejection.index == 7
    assert violations, "the fast path refused what require_valid accepts"
    assert violations[0] == (f"reading.{rejection.field}", rejection.description)
    return rejection.field, rejection.description


def in_kwh(value: float) -> str:
    return f"must be at least 0 and at most 1000 kWh, got {value:g}"


METER_CASES = [
    # kwh_consumed_ac: [0, 1000]
    ("kwh at 0", {"kwh_consumed_ac": 0.0}, None, None),
    ("kwh at -0", {"kwh_consumed_ac": -0.0}, None, None),
    ("kwh just inside 0", {"kwh_consumed_ac": TINY}, None, None),
    ("kwh just below 0", {"kwh_consumed_ac": -TINY}, "kwh_consumed_ac", in_kwh(-TINY)),
    ("kwh at 1000", {"kwh_consumed_ac": 1000.0}, None, None),
    ("kwh just inside 1000", {"kwh_consumed_ac": below(1000.0)}, None, None),
    ("kwh just above 1000", {"kwh_consumed_ac": above(1000.0)}, "kwh_consumed_ac", None),
    ("kwh 1000.5", {"kwh_consumed_ac": 1000.5}, "kwh_consumed_ac", in_kwh(1000.5)),
    ("kwh NaN", {"kwh_consumed_ac": NAN}, "kwh_consumed_ac", FINITE),
    ("kwh inf", {"kwh_consumed_ac": INF}, "kwh_consumed_ac", FINITE),
    ("kwh -inf", {"kwh_consumed_ac": -INF}, "kwh_consumed_ac", FINITE),
    # voltage: (0, 2000], the low end excluded
    ("voltage at 0", {"voltage": 0.0}, "voltage", "must be above 0 and at most 2000 V, got 0"),
    ("voltage at -0", {"voltage": -0.0}, "voltage", "must be above 0 and at most 2000 V, got -0"),
    ("voltage just inside 0", {"voltage": TINY}, None, None),
    ("voltage at 2000", {"voltage": 2000.0}, None, None),
    ("voltage just inside 2000", {"voltage": below(2000.0)}, None, None),
    ("voltage just above 2000", {"voltage": above(2000.0)}, "voltage", None),
    ("voltage -1", {"voltage": -1.0}, "voltage", "must be above 0 and at most 2000 V, got -1"),
    ("voltage NaN", {"voltage": NAN}, "voltage", FINITE),
    ("voltage inf", {"voltage": INF}, "voltage", FINITE),
    # meter_id
    ("id of 64", {"meter_id": "x" * 64}, None, None),
    ("id of 65", {"meter_id": "x" * 65}, "meter_id", ID_RULE),
    ("id empty", {"meter_id": ""}, "meter_id", ID_RULE),
    ("id every allowed sign", {"meter_id": "Az09._:-"}, None, None),
    ("id with a space", {"meter_id": "CHG 1"}, "meter_id", ID_RULE),
    ("id with a trailing newline", {"meter_id": "CHG-1\n"}, "meter_id", ID_RULE),
    ("id with NUL", {"meter_id": "CHG\x001"}, "meter_id", ID_RULE),
    ("id non-ASCII", {"meter_id": "CHG-é"}, "meter_id", ID_RULE),
]


@pytest.mark.parametrize(
    ("fields", "field", "why"),
    [case[1:] for case in METER_CASES],
    ids=[case[0] for case in METER_CASES],
)
def test_meter_bounds_edges(fields, field, why):
    got_field, got_why = outcome(meter_rules, meter(**fields))
    assert got_field == field
    if why is not None:
        assert got_why == why
    elif field is not None:
        assert (got_why or "").startswith("must be ")


def in_range(low: int, high: int, unit: str, value: float) -> str:
    return f"must be at least {low} and at most {high} {unit}, got {value:g}"


VEHICLE_CASES = [
    # soc: [0, 100]
    ("soc at 0", {"soc": 0.0}, None, None),
    ("soc just below 0", {"soc": -TINY}, "soc", None),
    ("soc at 100", {"soc": 100.0}, None, None),
    ("soc just inside 100", {"soc": below(100.0)}, None, None),
    ("soc just above 100", {"soc": above(100.0)}, "soc", None),
    ("soc 100.5", {"soc": 100.5}, "soc", in_range(0, 100, "%", 100.5)),
    ("soc NaN", {"soc": NAN}, "soc", FINITE),
    ("soc -inf", {"soc": -INF}, "soc", FINITE),
    # kwh_delivered_dc: [0, 1000]
    ("dc at 0", {"kwh_delivered_dc": 0.0}, None, None),
    ("dc -1", {"kwh_delivered_dc": -1.0}, "kwh_delivered_dc", in_range(0, 1000, "kWh", -1)),
    ("dc at 1000", {"kwh_delivered_dc": 1000.0}, None, None),
    ("dc just above 1000", {"kwh_delivered_dc": above(1000.0)}, "kwh_delivered_dc", None),
    ("dc inf", {"kwh_delivered_dc": INF}, "kwh_delivered_dc", FINITE),
    # battery_temp: [-60, 120]
    ("temp at -60", {"battery_temp": -60.0}, None, None),
    ("temp just inside -60", {"battery_temp": above(-60.0)}, None, None),
    ("temp just below -60", {"battery_temp": below(-60.0)}, "battery_temp", None),
    ("temp -60.5", {"battery_temp": -60.5}, "battery_temp", in_range(-60, 120, "°C", -60.5)),
    ("temp at 120", {"battery_temp": 120.0}, None, None),
    ("temp just above 120", {"battery_temp": above(120.0)}, "battery_temp", None),
    ("temp NaN", {"battery_temp": NAN}, "battery_temp", FINITE),
    # ids: both are checked, the vehicle's first
    ("vehicle id of 65", {"vehicle_id": "v" * 65}, "vehicle_id", ID_RULE),
    ("charger id empty", {"charger_id": ""}, "charger_id", ID_RULE),
    ("charger id with a slash", {"charger_id": "CHG/1"}, "charger_id", ID_RULE),
    ("both ids bad", {"vehicle_id": "", "charger_id": ""}, "vehicle_id", ID_RULE),
]


@pytest.mark.parametrize(
    ("fields", "field", "why"),
    [case[1:] for case in VEHICLE_CASES],
    ids=[case[0] for case in VEHICLE_CASES],
)
def test_vehicle_bounds_edges(fields, field, why):
    got_field, got_why = outcome(vehicle_rules, vehicle(**fields))
    assert got_field == field
    if why is not None:
        assert got_why == why
    elif field is not None:
        assert (got_why or "").startswith("must be ")


TIMESTAMP_CASES = [
    ("at 2000-01-01", Timestamp(seconds=EARLIEST_S), None),
    # 1999-12-31T23:59:59.999999999Z: 946,684,799,999,999 us, one short of the earliest
    (
        "a nanosecond before 2000",
        Timestamp(seconds=EARLIEST_S - 1, nanos=999_999_999),
        AFTER_2000 + "1999-12-31T23:59:59.999999Z",
    ),
    ("in 1970", Timestamp(seconds=1), AFTER_2000 + "1970-01-01T00:00:01Z"),
    ("at the skew limit", Timestamp(seconds=LATEST_S), None),
    # 999 ns past the limit is still the limit's microsecond; 1,000 ns is the next one
    ("999 ns past the skew limit", Timestamp(seconds=LATEST_S, nanos=999), None),
    (
        "1 us past the skew limit",
        Timestamp(seconds=LATEST_S, nanos=1000),
        SKEW + "2026-11-20T10:05:00.000001Z, 300 s ahead",
    ),
    (
        "a second past the skew limit",
        Timestamp(seconds=LATEST_S + 1),
        SKEW + "2026-11-20T10:05:01Z, 301 s ahead",
    ),
    ("nanos at their maximum", Timestamp(seconds=T, nanos=999_999_999), None),
    (
        "nanos negative",
        Timestamp(seconds=T, nanos=-1),
        "nanos must be within 0 and 999999999, got -1",
    ),
    (
        "nanos a whole second",
        Timestamp(seconds=T, nanos=1_000_000_000),
        "nanos must be within 0 and 999999999, got 1000000000",
    ),
    (
        "epoch milliseconds given as seconds",
        Timestamp(seconds=T * 1000),
        "must be within 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, "
        "got seconds=1795168800000 (epoch milliseconds given as seconds?)",
    ),
    (
        "far before year 1",
        Timestamp(seconds=-(2**62)),
        "must be within 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, "
        "got seconds=-4611686018427387904",
    ),
    ("unset", None, "must be set, got nothing"),
]


@pytest.mark.parametrize(
    ("timestamp", "why"),
    [case[1:] for case in TIMESTAMP_CASES],
    ids=[case[0] for case in TIMESTAMP_CASES],
)
@pytest.mark.parametrize(
    ("rules_module", "make"),
    [(meter_rules, meter), (vehicle_rules, vehicle)],
    ids=["meter", "vehicle"],
)
def test_timestamp_edges(rules_module, make, timestamp, why):
    got = outcome(rules_module, make(timestamp=timestamp))
    assert got == ((None, None) if why is None else ("timestamp", why))


def test_an_accepted_meter_reading_becomes_its_staging_row():
    # T s + 250,000,999 ns = T * 10^6 + 250,000 us (the 999 ns are dropped)
    reading = meter(
        kwh_consumed_ac=12.5, voltage=400.0, timestamp=Timestamp(seconds=T, nanos=250_000_999)
    )
    rows, rejections = meter_rules.validate_batch([reading], 0, WINDOW)
    assert rejections == []
    # (meter_id, read_us, interval kWh, register kWh (not sent), voltage, index in the stream)
    assert rows == [("CHG-1", T_US + 250_000, 12.5, None, 400.0, 0)]


def test_an_accepted_vehicle_reading_becomes_its_staging_row():
    reading = vehicle(soc=80.0, kwh_delivered_dc=3.25, battery_temp=-10.0)
    rows, rejections = vehicle_rules.validate_batch([reading], 0, WINDOW)
    assert rejections == []
    # (vehicle_id, read_us, charger_id, soc, interval kWh, register kWh (not sent), temp, index)
    assert rows == [("VH-1", T_US, "CHG-1", 80.0, 3.25, None, -10.0, 0)]


def test_rejections_carry_their_index_in_the_whole_stream():
    # A batch starting at reading 100 of its stream: the second and fourth are refused.
    batch = [meter(), meter(voltage=0.0), meter(meter_id="CHG-2"), meter(kwh_consumed_ac=-1.0)]
    rows, rejections = meter_rules.validate_batch(batch, 100, WINDOW)
    assert [row[0] for row in rows] == ["CHG-1", "CHG-2"]
    assert [(r.index, r.field) for r in rejections] == [(101, "voltage"), (103, "kwh_consumed_ac")]


def test_the_fast_path_names_the_first_violation_and_require_valid_lists_them_all():
    reading = meter(meter_id="", kwh_consumed_ac=NAN, voltage=0.0, timestamp=None)
    _, rejections = meter_rules.validate_batch([reading], 0, WINDOW)
    assert rejections == [Rejection(0, "meter_id", ID_RULE)]
    with pytest.raises(InvalidArgument) as refused:
        require_valid(meter_rules.RULES, reading, WINDOW)
    assert refused.value.violations == [
        ("reading.meter_id", ID_RULE),
        ("reading.kwh_consumed_ac", FINITE),
        ("reading.voltage", "must be above 0 and at most 2000 V, got 0"),
        ("reading.timestamp", "must be set, got nothing"),
    ]


@pytest.mark.parametrize(
    ("bounds", "value", "why"),
    [
        (Bounds("kwh", 0.0, 1000.0, "kWh"), 0.0, None),
        (Bounds("kwh", 0.0, 1000.0, "kWh"), 1000.0, None),
        (
            Bounds("kwh", 0.0, 1000.0, "kWh"),
            -0.5,
            "must be at least 0 and at most 1000 kWh, got -0.5",
        ),
        (
            Bounds("v", 0.0, 2000.0, "V", low_open=True),
            0.0,
            "must be above 0 and at most 2000 V, got 0",
        ),
        (Bounds("v", 0.0, 2000.0, "V", low_open=True), 0.001, None),
        (
            Bounds("t", -60.0, 120.0, "°C"),
            121.0,
            "must be at least -60 and at most 120 °C, got 121",
        ),
        (Bounds("t", -60.0, 120.0, "°C"), NAN, FINITE),
        (Bounds("t", -60.0, 120.0, "°C"), -INF, FINITE),
    ],
)
def test_bounds_explain_what_is_allowed_and_what_was_given(bounds, value, why):
    assert bounds.problem(value) == why


@pytest.mark.parametrize(
    ("value", "valid"),
    [("a", True), ("x" * 64, True), ("x" * 65, False), ("", False), ("a\n", False), ("ä", False)],
)
def test_known_ids_accept_exactly_what_the_id_rule_accepts(value, valid):
    known = KnownIds()
    assert (id_problem(value) is None) is valid
    assert known.valid(value) is valid
    assert known.valid(value) is valid  # the second time, from the cache or not


def test_known_ids_still_judge_after_their_cache_fills_and_is_emptied():
    known = KnownIds(limit=2)
    assert [known.valid(v) for v in ("a", "b", "c", "a", "no way", "c")] == [True] * 4 + [
        False,
        True,
    ]


def test_the_time_window_starts_in_2000_and_ends_the_skew_after_now():
    before_us = time.time_ns() // 1000
    window = TimeWindow.now(300)
    after_us = time.time_ns() // 1000
    assert window.earliest == 946_684_800_000_000
    # 300 s of skew = 300,000,000 us past the moment it was made
    assert before_us + 300_000_000 <= window.latest <= after_us + 300_000_000


# Any reading: the fast path and an oracle written from the documented bounds agree.

ALLOWED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            *(0.0, -0.0, TINY, -TINY, 100.0, above(100.0), 120.0, above(120.0)),
            *(-60.0, below(-60.0), 1000.0, above(1000.0), 2000.0, above(2000.0)),
        ]
    ),
    st.floats(min_value=-100, max_value=2100),
)
ids = st.one_of(
    st.text(alphabet="".join(sorted(ALLOWED)), max_size=70),
    st.text(max_size=70),
    st.sampled_from(["", "x" * 64, "x" * 65, "CHG-1\n", "é"]),
)
timestamps = st.one_of(
    st.none(),
    st.builds(
        lambda seconds, nanos: Timestamp(seconds=seconds, nanos=nanos),
        st.one_of(
            st.integers(min_value=EARLIEST_S - 2, max_value=EARLIEST_S + 2),
            st.integers(min_value=LATEST_S - 2, max_value=LATEST_S + 2),
            st.integers(min_value=-(2**40), max_value=2**40),
        ),
        st.one_of(
            st.sampled_from([-1, 0, 999, 1000, 999_999_999, 1_000_000_000]),
            st.integers(min_value=-(2**31), max_value=2**31 - 1),
        ),
    ),
)


def id_ok(value: str) -> bool:
    return 1 <= len(value) <= 64 and set(value) <= ALLOWED


def within(value: float, low: float, high: float, *, low_open: bool = False) -> bool:
    return math.isfinite(value) and (value > low if low_open else value >= low) and value <= high


def time_ok(ts: Timestamp | None) -> bool:
    if ts is None or not 0 <= ts.nanos <= 999_999_999:
        return False
    micros = ts.seconds * 1_000_000 + ts.nanos // 1000
    return EARLIEST_S * 1_000_000 <= micros <= LATEST_S * 1_000_000


@settings(max_examples=400, deadline=None)
@given(ids, numbers, numbers, timestamps)
def test_any_meter_reading_is_refused_for_its_first_bad_field(meter_id, kwh, voltage, ts):
    reading = meter(meter_id=meter_id, kwh_consumed_ac=kwh, voltage=voltage, timestamp=ts)
    checks = [
        ("meter_id", id_ok(meter_id)),
        ("kwh_consumed_ac", within(kwh, 0, 1000)),
        ("voltage", within(voltage, 0, 2000, low_open=True)),
        ("timestamp", time_ok(ts)),
    ]
    expected = next((field for field, ok in checks if not ok), None)
    assert outcome(meter_rules, reading)[0] == expected


@settings(max_examples=400, deadline=None)
@given(st.tuples(ids, ids, numbers, numbers, numbers, timestamps))
def test_any_vehicle_reading_is_refused_for_its_first_bad_field(fields):
    vid, cid, soc, dc, temp, ts = fields
    reading = vehicle(
        vehicle_id=vid,
        charger_id=cid,
        soc=soc,
        kwh_delivered_dc=dc,
        battery_temp=temp,
        timestamp=ts,
    )
    checks = [
        ("vehicle_id", id_ok(vid)),
        ("charger_id", id_ok(cid)),
        ("soc", within(soc, 0, 100)),
        ("kwh_delivered_dc", within(dc, 0, 1000)),
        ("battery_temp", within(temp, -60, 120)),
        ("timestamp", time_ok(ts)),
    ]
    expected = next((field for field, ok in checks if not ok), None)
    assert outcome(vehicle_rules, reading)[0] == expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1000.0001, "got 1000.0001"), (1000.5, "got 1000.5"), (-0.25, "got -0.25"), (2e3, "got 2000")],
)
def test_a_refused_value_is_shown_exactly_not_rounded_to_the_bound(value: float, shown: str):
    # 1000.0001 printed with six significant digits would read "1000": the bound itself.
    problem = meter_rules.KWH_CONSUMED_AC.problem(value)
    assert problem is not None and problem.endswith(shown), problem
