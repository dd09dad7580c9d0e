"""OCPP meter values → readings, hand-computed: units, contexts, phases, ids, timestamps."""

from __future__ import annotations

import asyncio

import pytest

from services.ocpp.gateway import RateLimit, charge_point_id_of
from services.ocpp.mapping import Reading, meter_id, readings, timestamp_micros

T0 = 1_770_681_600_000_000  # 2026-02-10T00:00:00Z
RECEIVED = T0 + 42_000_000


def one(meter_values, connector=1, cp="cp-Berlin-7"):
    return readings(cp, connector, meter_values, RECEIVED)


def test_a_1_6_register_in_wh_becomes_kwh_and_voltage_phases_are_averaged():
    found = one(
        [
            {
                "timestamp": "2026-02-10T00:00:00Z",
                "sampled_value": [
                    {"value": "163630", "measurand": "Energy.Active.Import.Register"},
                    {"value": "229.0", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
                    {"value": "231.0", "measurand": "Voltage", "phase": "L2-N", "unit": "V"},
                    {"value": "233.0", "measurand": "Voltage", "phase": "L3-N", "unit": "V"},
                    {"value": "400.0", "measurand": "Voltage", "phase": "L1-L2", "unit": "V"},
                ],
            }
        ]
    )
    assert found == [Reading("CP-BERLIN-7:1", T0, None, 163.63, 231.0)]


def test_the_periodic_value_wins_over_another_context_in_the_same_message():
    """Seen in the field: Sample.Periodic 163,630 Wh beside Transaction.Begin 157,440 Wh, or
    beside 0 Wh: always the periodic one."""
    for other in ("157440", "0"):
        found = one(
            [
                {
                    "timestamp": "2026-02-10T00:00:00Z",
                    "sampled_value": [
                        {"value": other, "context": "Transaction.Begin"},
                        {"value": "163630", "context": "Sample.Periodic"},
                    ],
                }
            ]
        )
        assert [r.kwh_consumed_ac_register for r in found] == [163.63]


def test_kwh_units_interval_energy_and_a_2_0_1_multiplier():
    found = one(
        [
            {
                "timestamp": "2026-02-10T00:15:00+10:00",
                "sampled_value": [
                    {
                        "value": 1.25,
                        "measurand": "Energy.Active.Import.Interval",
                        "unit_of_measure": {"unit": "kWh"},
                    },
                ],
            },
            {
                "timestamp": "2026-02-10T00:16:00Z",
                "sampled_value": [
                    {"value": 163.63, "unit_of_measure": {"unit": "Wh", "multiplier": 3}},
                ],
            },
        ],
        connector=2,
    )
    assert found == [
        Reading("CP-BERLIN-7:2", T0 - 10 * 3600_000_000 + 15 * 60_000_000, 1.25, None, None),
        Reading("CP-BERLIN-7:2", T0 + 16 * 60_000_000, None, 163.63, None),
    ]


def test_per_phase_energy_is_summed_unless_the_whole_meter_is_given():
    phases = [
        {"value": "1000", "phase": "L1"},
        {"value": "2000", "phase": "L2"},
        {"value": "3000", "phase": "L3"},
    ]
    alone = one([{"timestamp": "2026-02-10T00:00:00Z", "sampled_value": phases}])
    with_total = one(
        [{"timestamp": "2026-02-10T00:00:00Z", "sampled_value": [*phases, {"value": "6500"}]}]
    )
    assert [r.kwh_consumed_ac_register for r in alone + with_total] == [6.0, 6.5]


def test_no_energy_no_reading_and_ev_side_signed_and_garbage_values_are_skipped():
    found = one(
        [
            {
                "timestamp": "2026-02-10T00:00:00Z",
                "sampled_value": [{"value": "230", "measurand": "Voltage"}],
            },
            {
                "timestamp": "2026-02-10T00:01:00Z",
                "sampled_value": [{"value": "99000", "location": "EV"}],
            },
            {
                "timestamp": "2026-02-10T00:02:00Z",
                "sampled_value": [{"value": "AB12", "format": "SignedData"}],
            },
            {"timestamp": "2026-02-10T00:03:00Z", "sampled_value": [{"value": "n/a"}]},
            {
                "timestamp": "2026-02-10T00:04:00Z",
                "sampled_value": [{"value": "500", "format": "SignedData"}, {"value": "5000"}],
            },
        ]
    )
    assert found == [Reading("CP-BERLIN-7:1", T0 + 4 * 60_000_000, None, 5.0, None)]


def test_register_and_interval_in_one_sample_keep_the_register():
    found = one(
        [
            {
                "timestamp": "2026-02-10T00:00:00Z",
                "sampled_value": [
                    {"value": "250", "measurand": "Energy.Active.Import.Interval"},
                    {"value": "163630", "measurand": "Energy.Active.Import.Register"},
                ],
            }
        ]
    )
    assert [(r.kwh_consumed_ac, r.kwh_consumed_ac_register) for r in found] == [(None, 163.63)]


def test_a_missing_timestamp_is_the_receive_time_and_flagged():
    found = one([{"sampled_value": [{"value": "1000"}]}])
    assert found == [Reading("CP-BERLIN-7:1", RECEIVED, None, 1.0, None, timestamp_missing=True)]


def test_a_timestamp_without_an_offset_is_refused():
    with pytest.raises(ValueError, match="has no UTC offset"):
        timestamp_micros("2026-02-10T00:00:00")


@pytest.mark.parametrize(
    ("cp", "connector", "expected"),
    [
        ("cp-1", 1, "CP-1:1"),
        ("Cp-1", 0, "CP-1"),
        ("CP-1", None, "CP-1"),
        ("cp.a_b", 12, "CP.A_B:12"),
    ],
)
def test_meter_ids_are_the_canonical_charge_point_id_and_the_connector(cp, connector, expected):
    assert meter_id(cp, connector) == expected


def test_only_line_conductors_add_up_when_no_total_is_sent():
    found = one(
        [
            {
                "timestamp": "2026-02-10T00:00:00Z",
                "sampled_value": [
                    {"value": "1000", "phase": "L1"},
                    {"value": "1000", "phase": "L1-N"},
                    {"value": "5", "phase": "N"},
                    {"value": "2000", "phase": "L2"},
                ],
            }
        ]
    )
    assert [r.kwh_consumed_ac_register for r in found] == [3.0]


@pytest.mark.parametrize("multiplier", [400, "x"])
def test_an_unrepresentable_multiplier_is_refused(multiplier):
    with pytest.raises(ValueError, match="unit multiplier"):
        one(
            [
                {
                    "timestamp": "2026-02-10T00:00:00Z",
                    "sampled_value": [
                        {"value": 1.0, "unit_of_measure": {"unit": "Wh", "multiplier": multiplier}}
                    ],
                }
            ]
        )


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/CP-1", "CP-1"), ("/ocpp/cp-1/", "cp-1"), ("/ocpp/CP-1?token=abc", "CP-1"), ("/", "")],
)
def test_the_charge_point_id_is_the_urls_last_path_segment(path, expected):
    assert charge_point_id_of(path) == expected


def test_a_charge_points_messages_are_paced_after_a_burst_never_refused():
    """10 a second after a burst of 20: the 21st message at once waits 0.1 s, the 22nd 0.2 s;
    after a quiet second the bucket holds 10 again."""
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def run() -> list[float]:
        limit = RateLimit(10.0, 20, clock=lambda: now[0], sleep=sleep)
        waits = [await limit.wait() for _ in range(22)]
        now[0] += 1.0 + 0.2  # a second and the two owed
        waits += [await limit.wait() for _ in range(11)]
        return waits

    waits = asyncio.run(run())
    assert waits[:20] == [0.0] * 20
    assert [round(w, 6) for w in waits[20:22]] == [0.1, 0.2]
    assert waits[22:32] == [0.0] * 10
    assert round(waits[32], 6) == 0.1
    assert [round(s, 6) for s in slept] == [0.1, 0.2, 0.1]


def test_entries_of_one_timestamp_are_one_sample_whatever_their_order():
    """The Transaction.Begin 0 Wh and the periodic 163,630 Wh as entries of their own (the
    same instant written two ways), and the voltage in a third: one reading, 163.63 kWh at 230 V."""
    found = one(
        [
            {
                "timestamp": "2026-02-10T00:00:00Z",
                "sampled_value": [{"value": "0", "context": "Transaction.Begin"}],
            },
            {
                "timestamp": "2026-02-10T10:00:00+10:00",
                "sampled_value": [{"value": "163630", "context": "Sample.Periodic"}],
            },
            {
                "timestamp": "2026-02-10T00:00:00.000Z",
                "sampled_value": [{"value": "230", "measurand": "Voltage"}],
            },
        ]
    )
    assert found == [Reading("CP-BERLIN-7:1", T0, None, 163.63, 230.0)]


@pytest.mark.parametrize(
    ("unit", "kwh"),
    [
        ("Wh", 163.63),
        ("wh", 163.63),
        ("WH", 163.63),
        ("kWh", 163630.0),
        ("KWH", 163630.0),
        ("MWh", 163_630_000.0),
    ],
)
def test_energy_units_are_read_case_insensitively(unit, kwh):
    sample = {"value": "163630", "unit": unit}
    found = one([{"timestamp": "2026-02-10T00:00:00Z", "sampled_value": [sample]}])
    assert [r.kwh_consumed_ac_register for r in found] == [kwh]


@pytest.mark.parametrize("unit", ["varh", "kvarh", "W", "kW", "VA"])
def test_a_value_in_a_unit_that_is_not_active_energy_gives_no_reading(unit):
    sample = {"value": "5000", "unit": unit}
    assert one([{"timestamp": "2026-02-10T00:00:00Z", "sampled_value": [sample]}]) == []


def test_per_phase_energy_named_l1_n_is_summed_once_per_line():
    """L1-N 1,000 Wh and L2-N 2,000 Wh: 3 kWh; L1 and L1-N both sent: L1 once (not twice)."""
    found = one(
        [
            {
                "timestamp": "2026-02-10T00:00:00Z",
                "sampled_value": [
                    {"value": "1000", "phase": "L1-N"},
                    {"value": "2000", "phase": "L2-N"},
                ],
            },
            {
                "timestamp": "2026-02-10T00:01:00Z",
                "sampled_value": [
                    {"value": "1000", "phase": "L1"},
                    {"value": "1000", "phase": "L1-N"},
                    {"value": "500", "phase": "L2"},
                ],
            },
        ]
    )
    assert [r.kwh_consumed_ac_register for r in found] == [3.0, 1.5]


@pytest.mark.parametrize(
    ("voltages", "volts"),
    [
        # 1.6 chargers often name phase-to-neutral values by the line alone: (228 + 232) / 2
        ([("228", "L1", None), ("232", "L2", None)], 230.0),
        # line-to-line only: 400 / √3
        ([("400", "L1-L2", None), ("400", "L2-L3", None)], 400 / 3**0.5),
        # kV and a 2.0.1 multiplier: 0.23 kV; 23 x 10^1 V
        ([("0.23", None, {"unit": "kV"})], 230.0),
        ([(23, None, {"unit": "V", "multiplier": 1})], 230.0),
    ],
)
def test_voltage_forms(voltages, volts):
    sampled = [{"value": "1000"}]
    for value, phase, unit_of_measure in voltages:
        sample = {"value": value, "measurand": "Voltage"}
        if phase:
            sample["phase"] = phase
        if unit_of_measure:
            sample["unit_of_measure"] = unit_of_measure
        sampled.append(sample)
    (found,) = one([{"timestamp": "2026-02-10T00:00:00Z", "sampled_value": sampled}])
    assert found.voltage == pytest.approx(volts, rel=1e-12)


def test_a_percent_encoded_charge_point_id_is_decoded():
    assert charge_point_id_of("/ocpp/CP%2D1") == "CP-1"
    assert charge_point_id_of("/ocpp/cp%20one") == "cp one"  # then refused: not a valid id


def test_a_transaction_id_names_its_connector_whoever_handed_it_out():
    from services.ocpp.gateway import connector_of, transaction_id_for

    ids = [transaction_id_for(connector) for connector in (1, 2, 1, 255, 300)]
    assert len(set(ids)) == 5
    assert all(0 < i < 2**31 for i in ids)
    assert [connector_of(i) for i in ids] == [1, 2, 1, 255, 300]
    assert connector_of(0) is None and connector_of(-5) is None
