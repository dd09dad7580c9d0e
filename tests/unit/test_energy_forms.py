"""The two energy forms and the measurands a device may leave out, without a database: what the
fast paths store (the staging row) and what they refuse, each checked to agree with the
explanations; and how a conflict is told from a duplicate."""

from __future__ import annotations

from typing import Any

import pytest
from energy.meter.v1.meter_pb2 import MeterReading
from energy.vehicle.v1.vehicle_pb2 import VehicleReading
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.errors import InvalidArgument
from services.common.group_commit import Conflict, conflict_of
from services.common.validation import TimeWindow, require_valid
from services.meter import rules as meter_rules
from services.vehicle import rules as vehicle_rules

T = 1_795_168_800  # 2026-11-20T10:00:00Z
T_US = T * 1_000_000
WINDOW = TimeWindow(946_684_800 * 1_000_000, (T + 300) * 1_000_000, skew_seconds=300.0)
BOTH_AC = [
    (
        "reading.kwh_consumed_ac",
        "must be unset when kwh_consumed_ac_register is set: one energy form",
    ),
    (
        "reading.kwh_consumed_ac_register",
        "must be unset when kwh_consumed_ac is set: one energy form",
    ),
]


def stored(rules: Any, reading: Any) -> tuple[Any, ...] | None:
    """The staging row of an accepted reading, None for a refused one; the fast path and
    require_valid must agree."""
    rows, rejections = rules.validate_batch([reading], 4, WINDOW)
    try:
        require_valid(rules.RULES, reading, WINDOW)
        explained = True
    except InvalidArgument:
        explained = False
    assert explained == (not rejections), (rows, rejections)
    return rows[0] if rows else None


def meter(**fields: Any) -> MeterReading:
    return MeterReading(meter_id="CHG-1", voltage=230.0, timestamp=Timestamp(seconds=T), **fields)


def vehicle(**fields: Any) -> VehicleReading:
    return VehicleReading(
        vehicle_id="VH-1", charger_id="CHG-1", timestamp=Timestamp(seconds=T), **fields
    )


@pytest.mark.parametrize(
    ("fields", "row"),
    [
        # (meter_id, read_us, interval kWh, register kWh, voltage, index in the stream)
        ({"kwh_consumed_ac": 0.25}, ("CHG-1", T_US, 0.25, None, 230.0, 4)),
        ({}, ("CHG-1", T_US, 0.0, None, 230.0, 4)),  # neither form: interval energy 0
        ({"kwh_consumed_ac": 0.0}, ("CHG-1", T_US, 0.0, None, 230.0, 4)),
        ({"kwh_consumed_ac_register": 130.5}, ("CHG-1", T_US, None, 130.5, 230.0, 4)),
        # a register at 0 (a new or reset meter) is a register, not "no energy"
        ({"kwh_consumed_ac_register": 0.0}, ("CHG-1", T_US, None, 0.0, 230.0, 4)),
        ({"kwh_consumed_ac_register": 1e9}, ("CHG-1", T_US, None, 1e9, 230.0, 4)),
        ({"kwh_consumed_ac_register": 1e9 + 1}, None),
        ({"kwh_consumed_ac_register": -0.5}, None),
        ({"kwh_consumed_ac_register": float("nan")}, None),
        ({"kwh_consumed_ac": 0.25, "kwh_consumed_ac_register": 130.5}, None),
        ({"kwh_consumed_ac": 0.0, "kwh_consumed_ac_register": 0.0}, None),
        ({"kwh_consumed_ac": 2000.0, "kwh_consumed_ac_register": 130.5}, None),
    ],
)
def test_meter_energy_forms(fields: dict[str, float], row: tuple[Any, ...] | None) -> None:
    assert stored(meter_rules, meter(**fields)) == row


def test_both_forms_are_refused_naming_both_fields() -> None:
    reading = meter(kwh_consumed_ac=0.0, kwh_consumed_ac_register=130.5)
    with pytest.raises(InvalidArgument) as refused:
        require_valid(meter_rules.RULES, reading, WINDOW)
    assert refused.value.violations == BOTH_AC
    _, [rejection] = meter_rules.validate_batch([reading], 0, WINDOW)
    assert (rejection.field, rejection.description) == (
        "kwh_consumed_ac",
        "must be unset when kwh_consumed_ac_register is set: one energy form",
    )


def test_a_register_out_of_bounds_names_its_bound() -> None:
    with pytest.raises(InvalidArgument) as refused:
        require_valid(meter_rules.RULES, meter(kwh_consumed_ac_register=1e9 + 1), WINDOW)
    assert refused.value.violations == [
        (
            "reading.kwh_consumed_ac_register",
            "must be at least 0 and at most 1000000000 kWh, got 1000000001",
        )
    ]


@pytest.mark.parametrize(
    ("fields", "row"),
    [
        # (vehicle_id, read_us, charger_id, soc, interval kWh, register kWh, temp, index)
        (
            {"soc": 50.0, "kwh_delivered_dc": 0.5, "battery_temp": 25.0},
            ("VH-1", T_US, "CHG-1", 50.0, 0.5, None, 25.0, 4),
        ),
        # asleep: neither SoC nor temperature, unknown rather than 0 % and 0 °C
        ({"kwh_delivered_dc": 0.5}, ("VH-1", T_US, "CHG-1", None, 0.5, None, None, 4)),
        # an explicit 0 % and 0 °C are values
        (
            {"soc": 0.0, "battery_temp": 0.0},
            ("VH-1", T_US, "CHG-1", 0.0, 0.0, None, 0.0, 4),
        ),
        (
            {"kwh_delivered_dc_register": 12.75, "soc": 61.0},
            ("VH-1", T_US, "CHG-1", 61.0, None, 12.75, None, 4),
        ),
        ({"soc": 100.5}, None),
        ({"battery_temp": -60.5}, None),
        ({"kwh_delivered_dc": 0.5, "kwh_delivered_dc_register": 12.75}, None),
        ({"kwh_delivered_dc_register": -1.0}, None),
    ],
)
def test_vehicle_forms_and_unknown_measurands(
    fields: dict[str, float], row: tuple[Any, ...] | None
) -> None:
    assert stored(vehicle_rules, vehicle(**fields)) == row


NAMES = ("kwh_consumed_ac", "kwh_consumed_ac_register", "voltage")


def test_the_same_values_are_a_duplicate_not_a_conflict() -> None:
    # stored values come back from JSON: 230 (an int) equals 230.0
    assert conflict_of(NAMES, [0.2, None, 230], ("CHG-DUP", T_US, 0.2, None, 230.0, 0)) is None


def test_a_conflict_names_the_first_differing_field_and_every_difference() -> None:
    sent = ("CHG-DUP", T_US, 0.55, None, 231.0, 3)
    assert conflict_of(NAMES, [0.2, None, 230.0], sent) == Conflict(
        index=3,
        field="kwh_consumed_ac",
        description="stored with other values, not stored (first write wins): "
        "kwh_consumed_ac stored 0.2, sent 0.55; voltage stored 230, sent 231",
    )


def test_a_form_changed_under_the_same_key_is_a_conflict() -> None:
    sent = ("CHG-DUP", T_US, None, 120.25, 230.0, 0)
    conflict = conflict_of(NAMES, [0.2, None, 230.0], sent)
    assert conflict is not None
    assert conflict.field == "kwh_consumed_ac"
    assert conflict.description.endswith(
        "kwh_consumed_ac stored 0.2, sent unset; kwh_consumed_ac_register stored unset, sent 120.25"
    )
