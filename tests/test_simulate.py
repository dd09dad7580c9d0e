"""The fleet simulator: deterministic, internally consistent, and what it streams is what the
services store and correlate (each session's efficiency is its charger's own)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict

import psycopg
import pytest
from energy.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.cli import parser
from services.simulate.fleet import MINUTE_US, Fleet, FleetConfig
from tests.conftest import start_in_process

pytestmark = pytest.mark.e2e

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


def test_help_shows_every_default():
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "simulate", "--help"],
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    options = result.stdout.split("options:", 1)[1]
    blocks = {
        block.split()[0]: " ".join(block.split())
        for block in re.split(r"\n(?=  -)", options)
        if block.strip().startswith("--")
    }
    defaults = vars(parser().parse_args(["simulate"]))
    assert set(blocks) >= {"--chargers", "--vehicles", "--hours", "--seed", "--mode", "--start"}
    for option, block in blocks.items():
        assert "default" in block, block
        value = defaults[option[2:].replace("-", "_")]
        if value is not None:
            assert f"(default: {value})" in block, block


def test_simulate_command_streams_the_fleet_and_analytics_recovers_each_efficiency(database_url):
    meter = start_in_process("meter", database_url)
    vehicle = start_in_process("vehicle", database_url)
    analytics = start_in_process(
        "analytics", database_url, meter_target=meter.target, vehicle_target=vehicle.target
    )
    try:
        env = {**os.environ, "METER_TARGET": meter.target, "VEHICLE_TARGET": vehicle.target}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "simulate",
                "--chargers",
                "40",
                "--vehicles",
                "30",
                "--hours",
                "3",
                "--start",
                "2026-02-10T00:00:00Z",
                "--streams",
                "3",
                "--batch-size",
                "100",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        meters, vehicles = all_rows(SMALL)
        assert f"accepted {len(meters):>12,}" in result.stdout
        with psycopg.connect(database_url) as connection:
            stored = connection.execute(
                "SELECT (SELECT count(*) FROM meter.meter_readings), "
                "(SELECT count(*) FROM vehicle.vehicle_readings)"
            ).fetchone()
        assert stored == (len(meters), len(vehicles))

        fleet = Fleet(SMALL)  # the same seed: the charger efficiencies the data was made with
        efficiency = dict(zip(fleet.charger_ids, fleet.efficiency, strict=True))
        end = Timestamp(seconds=(SMALL.start_us + SMALL.minutes * MINUTE_US) // 1_000_000)
        with analytics.channel() as channel:
            stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
            for vehicle_id in ("VH-00000", "VH-00007", "VH-00029"):
                performance = stub.GetVehiclePerformance(
                    analytics_service_pb2.GetVehiclePerformanceRequest(
                        vehicle_id=vehicle_id, end_time=end
                    ),
                    timeout=10,
                )
                expected_dc = sum(row[4] for row in vehicles if row[0] == vehicle_id)
                assert performance.total_energy_delivered_dc == pytest.approx(expected_dc)
                for session in performance.sessions:
                    if session.energy_consumed_ac > 0:
                        assert session.efficiency_ratio == pytest.approx(
                            efficiency[session.charger_id], rel=1e-9
                        )
    finally:
        for server in (analytics, vehicle, meter):
            server.running.shutdown(5)
