"""Every grpcurl example in the README runs as written, from the project directory, with the
binary it names (`.venv/bin/grpcurl`, where `make` installs it) against real servers; only the
port is swapped for the one the test server got. grpcurl prints fields by their proto names
(meter_id), though it accepts JSON names (meterId) as input."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import start_in_process

PROJECT = Path(__file__).resolve().parent.parent
README = PROJECT / "README.md"
# "health": MeterService's HEALTH_LISTEN_ADDR, as the README's example sets it.
DEFAULT_PORTS = {"meter": 50051, "vehicle": 50052, "analytics": 50053, "health": 8081}
GRPCURL = ".venv/bin/grpcurl"


def readme_grpcurl_commands() -> list[list[str]]:
    """Every command line of the README's sh blocks that calls grpcurl, split as a shell would."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.DOTALL)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            if "grpcurl" in line and not line.startswith("#"):
                commands.append(shlex.split(line))
    return commands


def test_readme_calls_the_grpcurl_that_make_installs():
    """A bare `grpcurl` is not on a new shell's PATH: make puts it in .venv/bin."""
    commands = readme_grpcurl_commands()
    assert commands
    assert {command[0] for command in commands} == {GRPCURL}
    assert (PROJECT / GRPCURL).exists(), "make installs grpcurl into .venv/bin"


@pytest.fixture
def servers(database_url):
    started = {
        "meter": start_in_process("meter", database_url, health_listen_addr="127.0.0.1:0"),
        "vehicle": start_in_process("vehicle", database_url),
    }
    started["analytics"] = start_in_process(
        "analytics",
        database_url,
        meter_target=started["meter"].target,
        vehicle_target=started["vehicle"].target,
    )
    health = replace(started["meter"], target=f"127.0.0.1:{started['meter'].running.health_port}")
    yield {**started, "health": health}
    for server in started.values():
        server.running.shutdown(5)


def test_readme_has_the_examples_users_need():
    methods = {arg for command in readme_grpcurl_commands() for arg in command if "/" in arg}
    assert {
        "energy.meter.v1.MeterService/IngestReading",
        "energy.vehicle.v1.VehicleService/IngestReading",
        "energy.meter.v1.MeterService/IngestReadings",
        "energy.meter.v1.MeterService/ListChargerStatuses",
        "energy.vehicle.v1.VehicleService/ListVehicleStatuses",
        "energy.meter.v1.MeterService/GetChargerStatus",
        "energy.analytics.v1.AnalyticsService/GetVehiclePerformance",
    } <= methods


def test_every_readme_grpcurl_example_runs(servers):
    ports = {f"localhost:{port}": name for name, port in DEFAULT_PORTS.items()}
    outputs: dict[str, list[dict]] = {}
    for command in readme_grpcurl_commands():
        target = next(arg for arg in command if arg in ports)
        service = ports[target]
        assert service in servers, f"no test server for {service}: {command}"
        args = [servers[service].target if arg == target else arg for arg in command]
        result = subprocess.run(
            args, cwd=PROJECT, capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, f"{shlex.join(command)}\n{result.stderr}"
        method = command[-1]
        if "/" in method:
            outputs.setdefault(method, []).append(json.loads(result.stdout))

    # The same reading twice (12:00Z, then 14:00+02:00): stored, then a duplicate, both said.
    # Then 16.0 kWh for the same charger and time: a conflict, and 15.5 stays.
    assert outputs["energy.meter.v1.MeterService/IngestReading"] == [
        {"outcome": "INGEST_OUTCOME_ACCEPTED"},
        {"duplicate": True, "outcome": "INGEST_OUTCOME_DUPLICATE"},
        {
            "outcome": "INGEST_OUTCOME_CONFLICT",
            "conflict": {
                "field": "kwh_consumed_ac",
                "description": "stored with other values, not stored (first write wins): "
                "kwh_consumed_ac stored 15.5, sent 16",
            },
        },
    ]
    assert outputs["energy.vehicle.v1.VehicleService/IngestReading"] == [
        {"outcome": "INGEST_OUTCOME_ACCEPTED"}
    ]
    stream, registers = outputs["energy.meter.v1.MeterService/IngestReadings"]
    assert (stream["accepted"], stream["rejected"]) == ("2", "1")
    assert stream["rejections"][0]["index"] == "2"
    assert registers == {"accepted": "3"}
    # Registers 1520.25, 1520.5, 1521.0: 0.25 + 0.5 = 0.75 kWh, the first reading's unknown.
    (summary,) = outputs["energy.meter.v1.MeterService/SummarizeConsumption"][0]["summaries"]
    assert summary["kwh_consumed_ac"] == 0.75
    assert (summary["reading_count"], summary["unknown_energy_count"]) == ("3", "1")
    status = outputs["energy.meter.v1.MeterService/GetChargerStatus"][0]
    assert status["meter_id"] == "CHG-001" and status["timestamp"] == "2026-02-10T12:02:00Z"
    listed = outputs["energy.meter.v1.MeterService/ListChargerStatuses"][0]
    assert [s["meter_id"] for s in listed["charger_statuses"]] == ["CHG-001", "CHG-REG"]
    # The newest reading as sent: CHG-REG's is a register, its interval energy absent.
    register_status = listed["charger_statuses"][1]
    assert register_status["kwh_consumed_ac_register"] == 1521.0
    assert "kwh_consumed_ac" not in register_status
    vehicles = outputs["energy.vehicle.v1.VehicleService/ListVehicleStatuses"][0]
    assert vehicles["vehicle_statuses"][0]["soc"] == 75
    # The main port, then the health port (HEALTH_LISTEN_ADDR).
    assert outputs["grpc.health.v1.Health/Check"] == [{"status": "SERVING"}] * 2
    # VH-001 charged at 12:00 on CHG-001: its reading covers 11:59-12:00 (one usual minute), which
    # the meter's 12:00 reading (15.5 kWh AC) covers too; 12:01 and 12:02 cover later minutes.
    day, six_hours = outputs["energy.analytics.v1.AnalyticsService/GetVehiclePerformance"]
    assert day["total_energy_consumed_ac"] == 15.5
    assert day["total_energy_delivered_dc"] == 14.2
    assert day["efficiency_ratio"] == pytest.approx(14.2 / 15.5)
    assert (day["data_points"], day["meter_data_points"]) == ("1", "1")
    assert day["start_time"] == "2026-02-10T00:00:00Z"
    assert day["ac_coverage"] == 1.0 and "quality_flags" not in day
    [session] = day["sessions"]
    assert (session["start_time"], session["end_time"]) == (
        "2026-02-10T11:59:00Z",
        "2026-02-10T12:00:00Z",
    )
    # Chargers over the same day: CHG-001 is VH-001's session (15.5 AC, 14.2 DC) and 0.25 +
    # 0.26 kWh besides (standby); CHG-REG charged no vehicle: its registers' 0.25 + 0.5 kWh are
    # all standby, its efficiency unknown, so it comes last. CHG-002's only reading was refused.
    [chargers] = outputs["energy.analytics.v1.AnalyticsService/ListChargerEfficiencies"]
    assert [c["charger_id"] for c in chargers["charger_efficiencies"]] == ["CHG-001", "CHG-REG"]
    assert chargers["total_size"] == "2" and "next_page_token" not in chargers
    used, idle = (c["current"] for c in chargers["charger_efficiencies"])
    assert (used["energy_consumed_ac"], used["energy_delivered_dc"]) == (15.5, 14.2)
    assert used["efficiency_ratio"] == pytest.approx(14.2 / 15.5)
    assert used["standby_energy_kwh"] == pytest.approx(0.51)
    assert (used["session_count"], used["vehicle_count"]) == ("1", "1")
    assert idle["standby_energy_kwh"] == 0.75 and "efficiency_ratio" not in idle
    assert "session_count" not in idle  # 0: grpcurl leaves it out
    assert six_hours["start_time"] == "2026-02-10T06:30:00Z"
    assert six_hours["total_energy_consumed_ac"] == 15.5
