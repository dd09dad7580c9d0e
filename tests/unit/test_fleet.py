"""The fleet simulator's own logic, without services: deterministic, internally consistent
(one vehicle per charger a minute, whatever the fleet size), a safe default, and the window it
suggests after an interruption."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

from services.cli import parser
from services.simulate.feed import _Acknowledgements
from services.simulate.fleet import MINUTE_US, Fleet, FleetConfig, meter_id

SMALL = FleetConfig(chargers=40, vehicles=30, minutes=180, start_us=1_770_681_600 * 1_000_000)


def all_rows(config: FleetConfig):
    meters, vehicles = [], []
    for minute in Fleet(config).minutes():
        meters += minute.meter_rows
        vehicles += minute.vehicle_rows
    return meters, vehicles


def test_same_seed_same_readings_other_seed_other_readings():
    assert all_rows(SMALL) == all_rows(SMALL)
    other = FleetConfig(**{**SMALL.__dict__, "seed": 2})
    assert all_rows(other) != all_rows(SMALL)


def test_fleet_is_physically_consistent():
    meters, vehicles = all_rows(SMALL)
    assert len(meters) == SMALL.chargers * SMALL.minutes
    assert len({(row[0], row[1]) for row in meters}) == len(meters)
    assert len({(row[0], row[1]) for row in vehicles}) == len(vehicles)
    # A vehicle is on one charger at a time and a charger serves one vehicle at a time.
    per_minute: dict[tuple[int, str], str] = {}
    for vehicle_id, micros, charger_id, soc, dc, temp in vehicles:
        minute = (micros - SMALL.start_us) // MINUTE_US
        assert per_minute.setdefault((minute, charger_id), vehicle_id) == vehicle_id
        assert 0 <= soc <= 100 and 0 <= dc <= 1000 and -60 <= temp <= 120
    sessions = {(row[0], row[2]) for row in vehicles}
    assert len({v for v, _ in sessions}) == SMALL.vehicles, "every vehicle charges"
    assert any(len({c for v2, c in sessions if v2 == v}) > 1 for v, _ in sessions), "they move"
    for _, _, kwh, voltage in meters:
        assert kwh >= 0 and 200 < voltage < 500


def test_fleets_of_different_sizes_never_put_a_vehicle_on_two_chargers_at_once():
    """Runs of different sizes into one database: the union of their readings must still have
    every vehicle on one charger a minute and every charger under one vehicle a minute, also
    when the windows only overlap."""
    start = SMALL.start_us
    configs = [
        FleetConfig(chargers=30, vehicles=25, minutes=360, start_us=start),
        FleetConfig(chargers=45, vehicles=45, minutes=360, start_us=start),
        FleetConfig(chargers=23, vehicles=7, minutes=360, start_us=start),
        FleetConfig(chargers=61, vehicles=50, minutes=300, start_us=start + 37 * MINUTE_US),
    ]
    chargers_of: dict[tuple[str, int], set[str]] = defaultdict(set)
    vehicles_on: dict[tuple[str, int], set[str]] = defaultdict(set)
    same_start: dict[tuple[str, int], set[tuple]] = defaultdict(set)
    for config in configs:
        meters, vehicles = all_rows(config)
        for row in vehicles:
            minute = row[1] // MINUTE_US
            chargers_of[(row[0], minute)].add(row[2])
            vehicles_on[(row[2], minute)].add(row[0])
            if config.start_us == start:
                same_start[(row[0], row[1])].add(row)
        if config.start_us == start:
            for row in meters:
                same_start[(row[0], row[1])].add(row)
    assert max(len(chargers) for chargers in chargers_of.values()) == 1
    assert max(len(vehicles) for vehicles in vehicles_on.values()) == 1
    # With one start, one reading per entity and time whatever the size: a rerun with another
    # size only adds readings, the ones both runs have are duplicates.
    assert max(len(rows) for rows in same_start.values()) == 1


def test_default_run_is_small():
    """A bare `energy-ingest simulate` must be safe to try: a small fleet over a day."""
    args = parser().parse_args(["simulate"])
    readings = round(args.hours * 60) * (args.chargers + args.vehicles)
    assert readings <= 1_000_000, readings
    assert args.hours >= 1


def test_after_an_interruption_the_window_ends_where_both_sides_were_acknowledged():
    """Streams stop at different minutes on Ctrl-C. The grpcurl window must end where the
    vehicle's readings and the meter readings of every charger of its group were all
    acknowledged, or the vehicle's DC would be compared with AC that never arrived."""
    start = 1_770_681_600 * 1_000_000  # 2026-02-10T00:00:00Z
    acks = _Acknowledgements(start, streams=4, chargers=40)
    response = SimpleNamespace(accepted=1, duplicates=0, rejected=0, rejections=[])
    vehicle = "VH-00025"  # group 1: chargers CHG-00020..CHG-00039
    acks.vehicles([(vehicle, start + 30 * MINUTE_US, "CHG-00021", 50.0, 0.25, 25.0)], response)
    group_streams = {acks.stream_of(meter_id(c)) for c in range(20, 40)}
    # Every stream carrying a charger of the group acknowledged up to minute 20, but one
    # only up to minute 12.
    slow = min(group_streams)
    for index in group_streams:
        charger = next(meter_id(c) for c in range(20, 40) if acks.stream_of(meter_id(c)) == index)
        minute = 12 if index == slow else 20
        acks.meters([(charger, start + minute * MINUTE_US, 0.3, 230.0)], response)
    assert acks.charging is not None and acks.charging[0] == vehicle
    assert acks.end_us == start + 13 * MINUTE_US  # the end of minute 12
    # A stream of the group that acknowledged nothing: no window at all.
    empty = _Acknowledgements(start, streams=64, chargers=40)
    empty.vehicles([(vehicle, start, "CHG-00021", 50.0, 0.25, 25.0)], response)
    assert empty.end_us is None
