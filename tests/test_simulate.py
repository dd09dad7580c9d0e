"""The fleet simulator: deterministic, internally consistent, and what it streams is what the
services store and correlate (each session's efficiency is its charger's own)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import pytest
from energy.analytics.v1 import analytics_pb2, analytics_service_pb2, analytics_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.cli import parser
from services.simulate import recording
from services.simulate.fleet import (
    MINUTE_US,
    FaultPlan,
    Faults,
    Fleet,
    FleetConfig,
    meter_id,
)
from tests.conftest import start_in_process
from tests.unit.test_fleet import SMALL, all_rows

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.e2e


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


# --- the command against real servers -----------------------------------------------------


@pytest.fixture
def running(database_url):
    """MeterService, VehicleService and AnalyticsService in process on port 0, and the
    environment that points `energy-ingest simulate` at them."""
    meter = start_in_process("meter", database_url)
    vehicle = start_in_process("vehicle", database_url)
    analytics = start_in_process(
        "analytics", database_url, meter_target=meter.target, vehicle_target=vehicle.target
    )
    env = {
        **os.environ,
        "METER_TARGET": meter.target,
        "VEHICLE_TARGET": vehicle.target,
        "ANALYTICS_LISTEN_ADDR": analytics.target,
    }
    yield env, analytics
    for server in (analytics, vehicle, meter):
        server.running.shutdown(5)


def simulate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "simulate", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class Simulation:
    """`energy-ingest simulate` as a process; its stderr is collected as it comes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "simulate", *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._chunks: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        while chunk := self.process.stderr.read(1):
            self._chunks.append(chunk)

    @property
    def stderr(self) -> str:
        return "".join(self._chunks)

    def finish(self, timeout: float = 120) -> str:
        """Waits for the exit; returns stdout (stderr is then complete too)."""
        assert self.process.stdout is not None
        try:
            stdout = self.process.stdout.read()
            self.process.wait(timeout)
            self._pump.join(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        return stdout


def progress_figures(stderr: str) -> list[int]:
    """The reading counts the progress bar showed, in order."""
    return [
        int(figure.replace(",", ""))
        for figure in re.findall(r"\]\s+[\d.]+%\s+([\d,]+) (?:of [\d,]+ )?readings", stderr)
    ]


def stored(database_url: str) -> tuple[int, int]:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT (SELECT count(*) FROM meter.meter_readings), "
            "(SELECT count(*) FROM vehicle.vehicle_readings)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def summary(stdout: str) -> dict[str, dict[str, int]]:
    """Per service: accepted, duplicates, rejected, resends, from the summary lines."""
    found = {}
    for name, accepted, duplicates, rejected, resends in re.findall(
        r"^(meter|vehicle)\s+accepted\s+([\d,]+)\s+duplicates\s+([\d,]+)\s+rejected\s+"
        r"([\d,]+)\s+resent streams (\d+)",
        stdout,
        flags=re.MULTILINE,
    ):
        figures = (accepted, duplicates, rejected, resends)
        found[name] = dict(
            zip(
                ("accepted", "duplicates", "rejected", "resends"),
                (int(f.replace(",", "")) for f in figures),
                strict=True,
            )
        )
    assert set(found) == {"meter", "vehicle"}, stdout
    return found


def grpcurl_request(stdout: str) -> tuple[list[str], dict]:
    """The printed grpcurl line as arguments, and its request body."""
    lines = [line.strip() for line in stdout.splitlines() if "GetVehiclePerformance" in line]
    assert len(lines) == 1, stdout
    command = shlex.split(lines[0])
    beside = REPO / ".venv" / "bin" / "grpcurl"
    assert command[0] == (".venv/bin/grpcurl" if beside.exists() else "grpcurl"), lines[0]
    return command, json.loads(command[command.index("-d") + 1])


def ask_analytics(command: list[str]) -> dict:
    """Runs the printed line as a user would paste it, from the checkout."""
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_simulate_command_streams_the_fleet_and_analytics_recovers_each_efficiency(
    running, database_url
):
    env, analytics = running
    result = simulate(
        env,
        *("--chargers", "40", "--vehicles", "30", "--hours", "3"),
        *("--start", "2026-02-10T00:00:00Z", "--streams", "3", "--batch-size", "100"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    meters, vehicles = all_rows(SMALL)
    assert f"accepted {len(meters):>12,}" in result.stdout
    assert stored(database_url) == (len(meters), len(vehicles))

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


def test_simulate_ends_with_a_grpcurl_line_for_a_vehicle_that_charged(running):
    env, _ = running
    result = simulate(
        env,
        *("--chargers", "40", "--vehicles", "30", "--hours", "3"),
        *("--start", "2026-02-10T00:00:00Z", "--streams", "3"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    command, body = grpcurl_request(result.stdout)
    assert body["endTime"] == "2026-02-10T03:00:00Z"
    assert body["window"] == "10800s"
    assert command[command.index("-d") + 2] == env["ANALYTICS_LISTEN_ADDR"]
    performance = ask_analytics(command)
    assert performance["vehicle_id"] == body["vehicleId"]
    assert performance["start_time"] == "2026-02-10T00:00:00Z"
    assert performance["total_energy_delivered_dc"] > 0, "the vehicle named has charged"


def test_faults_reach_the_services_on_the_entities_the_summary_names(running, database_url):
    """--degrading-chargers, --silent-chargers and --misnamed-chargers through the real
    command: the summary names the faulty entities, the services store what the fleet model
    makes, and AnalyticsService shows each fault: efficiency below the charger's own on a
    degrading one, no meter data on a silent one after it fell silent or under a misnamed id."""
    env, analytics = running
    points = 0.06
    result = simulate(
        env,
        *("--chargers", "40", "--vehicles", "40", "--hours", "3"),
        *("--start", "2026-02-10T00:00:00Z", "--streams", "3"),
        *("--degrading-chargers", "3", "--degradation", str(points)),
        *("--silent-chargers", "2", "--misnamed-chargers", "3"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = replace(
        SMALL,
        vehicles=40,
        faults=Faults(degrading_chargers=3, silent_chargers=2, misnamed_chargers=3),
    )
    fleet = Fleet(config)
    plan = fleet.faults
    degrading = [fleet.charger_ids[c] for c in plan.degrading]
    silent = [fleet.charger_ids[c] for c in plan.silent]
    misnamed = [fleet.vehicle_ids[v] for v in plan.misnamed]
    lines = {
        line.split(" (", 1)[0]: line
        for line in result.stdout.splitlines()
        if re.match(r"(degrading|silent|misnamed) chargers \(", line)
    }
    assert re.findall(r"CHG-\d{5}", lines["degrading chargers"]) == degrading
    assert re.findall(r"CHG-\d{5}", lines["silent chargers"]) == silent
    assert "no meter readings from 2026-02-10T01:30Z" in lines["silent chargers"]
    assert re.findall(r"VH-\d{5}", lines["misnamed chargers"]) == misnamed

    meters, vehicles = all_rows(config)
    assert stored(database_url) == (len(meters), len(vehicles))
    silent_us = config.start_us + plan.silent_from * MINUTE_US
    silent_time = datetime.fromtimestamp(silent_us / 1e6, UTC)
    with psycopg.connect(database_url) as connection:
        for charger_id in silent:
            count, last = connection.execute(
                "SELECT count(*), max(read_time) FROM meter.meter_readings WHERE meter_id = %s",
                (charger_id,),
            ).fetchone() or (0, None)
            assert count == plan.silent_from and last < silent_time, charger_id
        lower = connection.execute(
            "SELECT DISTINCT vehicle_id FROM vehicle.vehicle_readings "
            "WHERE charger_id <> upper(charger_id) ORDER BY 1"
        ).fetchall()
        assert [row[0] for row in lower] == misnamed
        assert connection.execute(
            "SELECT count(*) FROM meter.meter_readings WHERE meter_id <> upper(meter_id)"
        ).fetchone() == (0,)

    efficiency = dict(zip(fleet.charger_ids, fleet.efficiency, strict=True))
    missing = analytics_pb2.QUALITY_FLAG_METER_DATA_MISSING
    end = Timestamp(seconds=(config.start_us + config.minutes * MINUTE_US) // 1_000_000)
    seen = {"degrading": 0, "healthy": 0, "silent": 0, "misnamed": 0}
    with analytics.channel() as channel:
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        for vehicle_id in fleet.vehicle_ids:
            performance = stub.GetVehiclePerformance(
                analytics_service_pb2.GetVehiclePerformanceRequest(
                    vehicle_id=vehicle_id, end_time=end
                ),
                timeout=10,
            )
            for session in performance.sessions:
                charger_id = session.charger_id
                if vehicle_id in misnamed:
                    assert charger_id.startswith("chg-") and missing in session.quality_flags
                    seen["misnamed"] += 1
                elif charger_id in silent and session.start_time.ToMicroseconds() >= silent_us:
                    assert not session.HasField("energy_consumed_ac")
                    assert missing in session.quality_flags
                    seen["silent"] += 1
                elif charger_id in degrading and session.energy_consumed_ac > 0:
                    own = efficiency[charger_id]
                    assert own - points < session.efficiency_ratio < own, (charger_id, session)
                    seen["degrading"] += 1
                elif charger_id not in silent and session.energy_consumed_ac > 0:
                    assert session.efficiency_ratio == pytest.approx(
                        efficiency[charger_id], rel=1e-9
                    )
                    seen["healthy"] += 1
    assert all(seen.values()), seen


def test_a_window_longer_than_31_days_is_cut_and_said_so(running):
    env, _ = running
    result = simulate(
        env,
        *("--chargers", "1", "--vehicles", "1", "--hours", "800"),
        *("--start", "2025-01-01T00:00:00Z", "--streams", "1"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    command, body = grpcurl_request(result.stdout)
    assert body["endTime"] == iso(1_735_689_600 * 1_000_000 + 800 * 60 * MINUTE_US)
    assert body["window"] == f"{31 * 24 * 3600}s"
    assert "31 days" in result.stdout
    performance = ask_analytics(command)
    assert int(performance["data_points"]) > 0


def test_a_second_run_of_another_size_adds_to_the_first_without_contradicting_it(
    running, database_url
):
    """Two sizes, one seed, one window, one database: the smaller fleet's readings come back as
    duplicates and no vehicle is on two chargers at once."""
    env, _ = running
    common = ("--hours", "3", "--start", "2026-02-10T00:00:00Z", "--streams", "3")
    small = simulate(env, "--chargers", "40", "--vehicles", "30", *common)
    assert small.returncode == 0, small.stdout + small.stderr
    large = simulate(env, "--chargers", "50", "--vehicles", "45", *common)
    assert large.returncode == 0, large.stdout + large.stderr
    small_meters, small_vehicles = all_rows(SMALL)
    large_meters, large_vehicles = all_rows(
        FleetConfig(**{**SMALL.__dict__, "chargers": 50, "vehicles": 45})
    )
    with psycopg.connect(database_url) as connection:
        elsewhere = connection.execute(
            "SELECT vehicle_id, date_trunc('minute', read_time), array_agg(charger_id) "
            "FROM vehicle.vehicle_readings GROUP BY 1, 2 HAVING count(DISTINCT charger_id) > 1"
        ).fetchall()
    assert elsewhere == []
    second = summary(large.stdout)
    assert second["meter"]["duplicates"] == len(small_meters)
    assert second["vehicle"]["duplicates"] == len(small_vehicles)
    assert stored(database_url) == (len(large_meters), len(large_vehicles))


def test_progress_counts_readings_acknowledged_not_queued(running, database_url):
    """With the services' writers held behind a table lock nothing can be acknowledged, so the
    progress bar must show 0 however much was queued; once released it reaches the total."""
    env, _ = running
    with psycopg.connect(database_url) as blocker:
        blocker.execute(
            "LOCK TABLE meter.meter_readings, vehicle.vehicle_readings IN EXCLUSIVE MODE"
        )
        run = Simulation(
            env,
            *("--chargers", "40", "--vehicles", "40", "--hours", "2"),
            *("--start", "2026-02-10T00:00:00Z"),
        )
        try:
            deadline = time.monotonic() + 60
            while len(figures := progress_figures(run.stderr)) < 3:
                assert not any(figures), f"progress showed {figures} with nothing acknowledged"
                assert time.monotonic() < deadline, run.stderr
                assert run.process.poll() is None, run.stderr
                time.sleep(0.1)
            assert not any(figures), f"progress showed {figures} with nothing acknowledged"
        finally:
            blocker.rollback()  # releases the lock
        stdout = run.finish()
    assert run.process.returncode == 0, stdout + run.stderr
    total = 2 * 40 * 120
    assert progress_figures(run.stderr)[-1] == total
    assert f"{total:,} of {total:,} readings acknowledged" in stdout
    assert sum(stored(database_url)) == total


def test_ctrl_c_stops_and_summarises_what_was_acknowledged(running, database_url):
    env, _ = running
    run = Simulation(
        env,
        *("--chargers", "1000", "--vehicles", "1000", "--hours", "24"),
        *("--start", "2026-02-10T00:00:00Z"),
    )
    deadline = time.monotonic() + 120
    while not any(progress_figures(run.stderr)):  # mid-run: something was acknowledged
        if time.monotonic() > deadline or run.process.poll() is not None:
            run.process.kill()
            pytest.fail(run.stderr)
        time.sleep(0.1)
    run.process.send_signal(signal.SIGINT)
    stdout = run.finish()
    output = stdout + run.stderr
    assert run.process.returncode == 130, output
    assert "Traceback" not in output
    match = re.search(r"^interrupted: ([\d,]+) of ([\d,]+) readings acknowledged", stdout, re.M)
    assert match, output
    acknowledged, total = (int(group.replace(",", "")) for group in match.groups())
    assert 0 < acknowledged < total == 2 * 1000 * 1440
    figures = summary(stdout)
    assert acknowledged == sum(
        service["accepted"] + service["duplicates"] + service["rejected"]
        for service in figures.values()
    )
    meters, vehicles = stored(database_url)
    if figures["meter"]["resends"] == figures["vehicle"]["resends"] == 0:
        # Every stream was answered before the summary: what it counts is what is stored.
        assert (meters, vehicles) == (figures["meter"]["accepted"], figures["vehicle"]["accepted"])
    else:  # a failed attempt may have stored readings that no answer counted
        assert meters >= figures["meter"]["accepted"]
        assert vehicles >= figures["vehicle"]["accepted"]
    command, body = grpcurl_request(stdout)
    assert body["endTime"] > "2026-02-10T00:00:00Z"
    performance = ask_analytics(command)
    assert performance["vehicle_id"] == body["vehicleId"]
    assert int(performance["data_points"]) > 0


def test_a_start_without_a_zone_is_refused_in_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "simulate", "--start", "yesterday"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "energy-ingest simulate: error: argument --start: 'yesterday' is not a time with a "
        "zone, such as 2026-11-20T00:00:00Z"
    )
    # Without a zone the time would be read in the machine's own zone: refused too.
    with pytest.raises(SystemExit):
        parser().parse_args(["simulate", "--start", "2026-11-20T00:00:00"])


def test_readings_the_services_refuse_are_a_failure_with_the_reason(running):
    """A start in the future: every reading is refused (too far ahead of the clock). That is
    not a successful run, and the user is told why."""
    env, _ = running
    result = simulate(
        env,
        *("--chargers", "20", "--vehicles", "20", "--hours", "1"),
        *("--start", "2030-01-01T00:00:00Z", "--streams", "2"),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert summary(result.stdout)["meter"]["rejected"] == 20 * 60
    assert (
        "rejected, e.g. reading 0: timestamp must be at most 300 s ahead of the server's clock "
        "(CLOCK_SKEW_SECONDS), got 2030-01-01T" in result.stdout
    )


def test_output_records_the_fleet_to_a_file_instead_of_sending_it(tmp_path):
    """No service runs: --output writes the fleet's encoded messages and says what it wrote."""
    path = tmp_path / "fleet.readings"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "simulate",
            "--chargers=40",
            "--vehicles=30",
            "--hours=3",
            "--start=2026-02-10T00:00:00Z",
            f"--output={path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    meters, vehicles = Fleet(SMALL).reading_count()
    assert result.stdout.splitlines()[-1] == (
        f"wrote {meters:,} meter and {vehicles:,} vehicle readings of 40 chargers and 30 "
        f"vehicles over 180 minutes from 2026-02-10T00:00Z to {path}"
    )
    kinds = [kind for kind, _ in recording.records(path)]
    assert kinds.count(recording.METER) == -(-meters // 500)
    assert kinds.count(recording.VEHICLE) == -(-vehicles // 500)


def test_list_charger_efficiencies_flags_exactly_the_degrading_chargers(running):
    """Three days of 40 chargers, 2 of them losing 6 points of efficiency over the run: over
    the last day against the day before, those 2 (and no other) fell by about 2 points, more
    than OUTLIER_DROP_POINTS, and come first; the healthy chargers did not move."""
    env, analytics = running
    result = simulate(
        env,
        "--chargers=40",
        "--vehicles=40",
        "--hours=72",
        "--start=2026-02-10T00:00:00Z",
        "--degrading-chargers=2",
    )
    assert result.returncode == 0, result.stderr
    config = FleetConfig(
        chargers=40,
        vehicles=40,
        minutes=72 * 60,
        start_us=1_770_681_600 * 1_000_000,
        faults=Faults(degrading_chargers=2),
    )
    degrading = {meter_id(index) for index in FaultPlan.draw(config).degrading}
    assert len(degrading) == 2
    request = analytics_service_pb2.ListChargerEfficienciesRequest(
        end_time=Timestamp(seconds=1_770_681_600 + 72 * 3600),
        window=Duration(seconds=24 * 3600),
    )
    with grpc.insecure_channel(analytics.target) as channel:
        response = analytics_service_pb2_grpc.AnalyticsServiceStub(channel).ListChargerEfficiencies(
            request, timeout=120
        )
    rows = list(response.charger_efficiencies)
    assert len(rows) == response.total_size == 40
    flagged = {row.charger_id for row in rows if row.outlier_reasons}
    assert flagged == degrading
    dropped = analytics_pb2.OutlierReason.OUTLIER_REASON_DROPPED
    for row in rows:
        if row.charger_id in degrading:
            assert list(row.outlier_reasons) == [dropped]
            assert -0.025 < row.efficiency_change < -0.015
        else:
            assert abs(row.efficiency_change) < 0.005, row
    # Worst first.
    efficiencies = [row.current.efficiency_ratio for row in rows]
    assert efficiencies == sorted(efficiencies)
