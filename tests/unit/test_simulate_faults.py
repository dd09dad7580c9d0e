"""Field faults in the simulated fleet (`energy-ingest simulate --degrading-chargers`,
`--silent-chargers`, `--misnamed-chargers`): each changes only its own entities' readings, in
the way it says; the faulty entities are drawn from the seed and the fleet's size, spread over
the fleet; and without faults every reading is what it was before faults existed."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from services.cli import parser
from services.common.errors import ConfigError
from services.simulate.command import _check_faults, fault_lines
from services.simulate.fleet import MINUTE_US, FaultPlan, Faults, Fleet, FleetConfig
from tests.unit.test_fleet import SMALL, all_rows

# All 40 vehicles report, so every charging minute of every charger has its vehicle's DC.
FULL = replace(SMALL, vehicles=40)
OTHER = FleetConfig(
    chargers=23, vehicles=17, minutes=300, start_us=SMALL.start_us + 37 * MINUTE_US, seed=5
)
# hashlib.sha256(repr(all_rows(config)).encode()).hexdigest() for SMALL and OTHER, computed
# at commit 1f379a7, before faults existed: the readings of a fleet without faults.
BEFORE_FAULTS = {
    SMALL: "35f4c9151b69970a750f1ced7d86801045a1e9aaa68f61da1f317602c963d3dd",
    OTHER: "73d6f226f5b3914e1c5f4cf1056a0678ac10783706ddd20a50087387d8fd8025",
}


def minute_of(config: FleetConfig, micros: int) -> int:
    return (micros - config.start_us) // MINUTE_US


@pytest.mark.parametrize("config", list(BEFORE_FAULTS), ids=["small", "other"])
def test_without_faults_every_reading_is_what_it_was_before_faults_existed(config):
    digest = hashlib.sha256(repr(all_rows(config)).encode()).hexdigest()
    assert digest == BEFORE_FAULTS[config]
    assert config.faults == Faults()
    assert Fleet(config).faults == FaultPlan(degradation=0.06, silent_from=config.minutes // 2)


def test_the_faulty_entities_are_spread_over_the_fleet_and_depend_on_seed_and_size_only():
    faults = Faults(degrading_chargers=3, silent_chargers=2, misnamed_chargers=3)
    plan = Fleet(replace(SMALL, faults=faults)).faults
    assert len(plan.degrading) == 3 and len(plan.silent) == 2 and len(plan.misnamed) == 3
    assert not set(plan.degrading) & set(plan.silent)
    # One charger in each fifth of the 40 (8 each), one vehicle in each third of the 30.
    assert sorted(c // 8 for c in plan.degrading + plan.silent) == [0, 1, 2, 3, 4]
    assert [v // 10 for v in plan.misnamed] == [0, 1, 2]
    assert plan.degrading != (0, 1, 2) and plan.misnamed != (0, 1, 2)
    # Another start or duration: the same entities (only the silent minute follows the run).
    moved = Fleet(replace(SMALL, faults=faults, start_us=SMALL.start_us + 999 * MINUTE_US))
    longer = Fleet(replace(SMALL, faults=faults, minutes=1_000))
    assert moved.faults == plan
    assert longer.faults == replace(plan, silent_from=500)
    assert Fleet(replace(SMALL, faults=faults)).faults == plan  # same seed, same choice
    assert Fleet(replace(SMALL, faults=faults, seed=2)).faults != plan


def test_a_degrading_charger_draws_more_ac_for_the_same_dc_its_efficiency_falling_linearly():
    points = 0.06
    config = replace(FULL, faults=Faults(degrading_chargers=3, degradation=points))
    fleet = Fleet(config)
    meters, vehicles = all_rows(config)
    clean_meters, clean_vehicles = all_rows(FULL)
    assert vehicles == clean_vehicles, "the vehicles get the DC they got without the fault"
    degrading = {fleet.charger_ids[c]: fleet.efficiency[c] for c in fleet.faults.degrading}
    assert len(degrading) == 3
    for row, clean in zip(meters, clean_meters, strict=True):
        if row[0] not in degrading:
            assert row == clean
        else:  # the same time and voltage, more AC when it draws any
            assert row[:2] == clean[:2] and row[3] == clean[3]
            assert (row[2] > clean[2]) == (clean[2] > 0)
    last = config.minutes - 1
    ends_charging = 0
    for charger_id, own in degrading.items():
        ac = {minute_of(config, r[1]): r[2] for r in meters if r[0] == charger_id}
        dc = {minute_of(config, r[1]): r[4] for r in vehicles if r[2] == charger_id}
        charging = sorted(minute for minute, kwh in ac.items() if kwh > 0)
        assert len(charging) > 10, charger_id
        ratio = {minute: dc[minute] / ac[minute] for minute in charging}
        for minute in charging:  # on the line from own at minute 0 to own - points at the last
            assert ratio[minute] == pytest.approx(own - points * minute / last, rel=1e-12)
        first, final = charging[0], charging[-1]
        assert first == 1, "minute 0 is a plug-in minute; the run charges from minute 1"
        assert ratio[first] == pytest.approx(own, abs=points / last + 1e-12)
        slope = (ratio[final] - ratio[first]) / (final - first)
        assert slope == pytest.approx(-points / last, rel=1e-9)
        assert ratio[first] - slope * first == pytest.approx(own, rel=1e-12)
        assert ratio[first] + slope * (last - first) == pytest.approx(own - points, rel=1e-12)
        if final == last:
            ends_charging += 1
            assert ratio[last] == pytest.approx(own - points, rel=1e-12)
        assert fleet.efficiency_at(fleet.charger_ids.index(charger_id), last) == pytest.approx(
            own - points, rel=1e-15
        )
    assert ends_charging >= 1, "one degrading charger charges in the run's last minute"


def test_a_silent_charger_reports_until_halfway_and_its_vehicles_go_on_reporting():
    config = replace(FULL, faults=Faults(silent_chargers=2))
    fleet = Fleet(config)
    meters, vehicles = all_rows(config)
    clean_meters, clean_vehicles = all_rows(FULL)
    halfway = config.minutes // 2
    assert fleet.faults.silent_from == halfway == 90
    silent = {fleet.charger_ids[c] for c in fleet.faults.silent}
    assert len(silent) == 2
    assert vehicles == clean_vehicles
    assert [row for row in clean_meters if row[0] not in silent] == [
        row for row in meters if row[0] not in silent
    ]
    charged_after = 0
    for charger_id in silent:
        reported = [minute_of(config, r[1]) for r in meters if r[0] == charger_id]
        assert reported == list(range(halfway)), "every minute before halfway, none after"
        named = {minute_of(config, r[1]): r[4] for r in vehicles if r[2] == charger_id}
        assert all(minute in named for minute in range(halfway, config.minutes)), charger_id
        charged_after += sum(dc > 0 for minute, dc in named.items() if minute >= halfway)
    assert charged_after > 0, "vehicles still charge at a silent charger"
    assert len(meters) == len(clean_meters) - 2 * (config.minutes - halfway)
    assert fleet.reading_count() == (len(meters), len(vehicles))


def test_a_misnamed_vehicle_names_its_chargers_in_lower_case_and_no_one_else_does():
    config = replace(SMALL, faults=Faults(misnamed_chargers=3))
    fleet = Fleet(config)
    meters, vehicles = all_rows(config)
    clean_meters, clean_vehicles = all_rows(SMALL)
    misnamed = {fleet.vehicle_ids[v] for v in fleet.faults.misnamed}
    assert len(misnamed) == 3
    assert meters == clean_meters
    for row, clean in zip(vehicles, clean_vehicles, strict=True):
        if row[0] in misnamed:  # e.g. chg-00042 for CHG-00042, and nothing else changed
            assert row[2] == clean[2].lower() == "chg-" + clean[2].removeprefix("CHG-")
            assert row[:2] + row[3:] == clean[:2] + clean[3:]
        else:
            assert row == clean
    assert {row[0] for row in vehicles if row[2].startswith("chg-")} == misnamed
    assert not any(row[0].startswith("chg-") for row in meters)


def test_all_faults_at_once_leave_every_other_entitys_readings_alone():
    config = replace(
        SMALL, faults=Faults(degrading_chargers=2, silent_chargers=3, misnamed_chargers=4)
    )
    fleet = Fleet(config)
    plan = fleet.faults
    faulty = {fleet.charger_ids[c] for c in plan.degrading + plan.silent}
    faulty |= {fleet.vehicle_ids[v] for v in plan.misnamed}
    meters, vehicles = all_rows(config)
    clean_meters, clean_vehicles = all_rows(SMALL)
    assert [r for r in meters if r[0] not in faulty] == [
        r for r in clean_meters if r[0] not in faulty
    ]
    assert [r for r in vehicles if r[0] not in faulty] == [
        r for r in clean_vehicles if r[0] not in faulty
    ]
    assert fleet.reading_count() == (len(meters), len(vehicles))


def test_the_summary_names_the_faulty_entities():
    config = replace(
        SMALL, faults=Faults(degrading_chargers=2, silent_chargers=1, misnamed_chargers=2)
    )
    fleet = Fleet(config)
    plan = fleet.faults
    c0, c1 = (fleet.charger_ids[c] for c in plan.degrading)
    e0, e1 = (fleet.efficiency[c] for c in plan.degrading)
    (silent,) = (fleet.charger_ids[c] for c in plan.silent)
    v0, v1 = (fleet.vehicle_ids[v] for v in plan.misnamed)
    assert fault_lines(fleet) == [
        "degrading chargers (efficiency falling linearly by 0.06 from 2026-02-10T00:00Z to "
        f"2026-02-10T02:59Z): {c0} {e0:.4f} to {e0 - 0.06:.4f}, {c1} {e1:.4f} to {e1 - 0.06:.4f}",
        "silent chargers (no meter readings from 2026-02-10T01:30Z, minute 90 of 180; their "
        f"vehicles still report): {silent}",
        f"misnamed chargers (vehicles reporting their chargers' ids in lower case): {v0}, {v1}",
    ]
    assert fault_lines(Fleet(SMALL)) == []


def simulate_args(*options: str):
    return parser().parse_args(["simulate", "--chargers", "40", "--vehicles", "30", *options])


def test_options_that_do_not_fit_the_fleet_are_refused_naming_the_option():
    assert _check_faults(simulate_args()) == Faults()
    assert _check_faults(
        simulate_args("--degrading-chargers=5", "--degradation=0.1", "--silent-chargers=35")
    ) == Faults(degrading_chargers=5, degradation=0.1, silent_chargers=35)
    refused = {
        ("--degrading-chargers", "41"): "--degrading-chargers must be at most --chargers (40), "
        "got 41",
        ("--silent-chargers", "41"): "--silent-chargers must be at most --chargers (40), got 41",
        ("--degrading-chargers", "20", "--silent-chargers", "21"): "--degrading-chargers (20) "
        "and --silent-chargers (21) must add up to at most --chargers (40): a charger that "
        "falls silent is not also a degrading one",
        ("--misnamed-chargers", "31"): "--misnamed-chargers counts vehicles: it must be at most "
        "--vehicles (30), got 31",
        ("--ocpp", "--silent-chargers", "1"): "--degrading-chargers, --silent-chargers and "
        "--misnamed-chargers do not apply to --ocpp: its charge points send registers of their "
        "own, not the fleet's",
    }
    for options, message in refused.items():
        with pytest.raises(ConfigError) as caught:
            _check_faults(simulate_args(*options))
        assert str(caught.value) == message
    for options in (
        ("--degradation", "0"),
        ("--degradation", "0.51"),
        ("--degradation", "nan"),
        ("--silent-chargers", "-1"),
    ):
        with pytest.raises(SystemExit):
            simulate_args(*options)
    assert simulate_args("--degradation", "0.5").degradation == 0.5


def test_the_fleet_itself_refuses_faults_that_do_not_fit():
    for faults in (
        Faults(degrading_chargers=41),
        Faults(degrading_chargers=20, silent_chargers=21),
        Faults(misnamed_chargers=31),
        Faults(silent_chargers=-1),
        Faults(degrading_chargers=1, degradation=0.0),
        Faults(degradation=0.6),
    ):
        with pytest.raises(ValueError):
            Fleet(replace(SMALL, faults=faults))
    every = Faults(degrading_chargers=20, silent_chargers=20, misnamed_chargers=30)
    plan = Fleet(replace(SMALL, faults=every)).faults
    assert sorted(plan.degrading + plan.silent) == list(range(40))
    assert plan.misnamed == tuple(range(30))
