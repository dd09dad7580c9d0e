"""Clients built before registers, conflicts and optional measurands keep working: a process that
imports the generated stubs as they were then (taken from the repository's history) talks to
today's servers. Its readings are stored as before, and the new answers (a conflict outcome, a
status with a register) parse in the old messages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from tests.conftest import InProcessServer

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parent.parent
# The last commit whose stubs knew only interval energy and measurands without presence.
BEFORE_REGISTERS = "cdd12751cc6cd6b2424e156ce9b81531ca0ef36c"

OLD_CLIENT = textwrap.dedent(
    """
    import json, sys
    import energy
    from energy.meter.v1 import meter_pb2, meter_service_pb2 as msvc, meter_service_pb2_grpc
    from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2 as vsvc
    from energy.vehicle.v1 import vehicle_service_pb2_grpc
    from google.protobuf.timestamp_pb2 import Timestamp
    import grpc

    assert energy.__file__.startswith(sys.argv[3]), energy.__file__
    assert "kwh_consumed_ac_register" not in meter_pb2.MeterReading.DESCRIPTOR.fields_by_name
    at = lambda minute: Timestamp(seconds=1_770_724_800 + 60 * minute)  # 2026-02-10T12:00Z
    meters = meter_service_pb2_grpc.MeterServiceStub(grpc.insecure_channel(sys.argv[1]))
    vehicles = vehicle_service_pb2_grpc.VehicleServiceStub(grpc.insecure_channel(sys.argv[2]))
    reading = lambda kwh, minute: meter_pb2.MeterReading(
        meter_id="CHG-OLD", kwh_consumed_ac=kwh, voltage=230.0, timestamp=at(minute))
    out = {}
    first = meters.IngestReading(msvc.IngestReadingRequest(reading=reading(0.5, 0)))
    again = meters.IngestReading(msvc.IngestReadingRequest(reading=reading(0.5, 0)))
    other = meters.IngestReading(msvc.IngestReadingRequest(reading=reading(0.75, 0)))
    out["unary"] = [[r.duplicate, r.outcome] for r in (first, again, other)]
    stream = meters.IngestReadings(iter([msvc.IngestReadingsRequest(
        readings=[reading(0.25, 1), reading(0.0, 2), reading(0.75, 0)])]))
    out["stream"] = [stream.accepted, stream.duplicates, stream.rejected]
    status = meters.GetChargerStatus(msvc.GetChargerStatusRequest(meter_id="CHG-REG-NEW"))
    out["register_status"] = [status.kwh_consumed_ac, status.voltage]
    summary = meters.SummarizeConsumption(msvc.SummarizeConsumptionRequest(intervals=[
        meter_pb2.ConsumptionInterval(charger_id="CHG-OLD", start_time=at(0), end_time=at(3))]))
    out["summary"] = [summary.summaries[0].kwh_consumed_ac, summary.summaries[0].reading_count]
    answer = vehicles.IngestReading(vsvc.IngestReadingRequest(reading=vehicle_pb2.VehicleReading(
        vehicle_id="VH-OLD", charger_id="CHG-OLD", soc=55.0, kwh_delivered_dc=0.5,
        battery_temp=21.5, timestamp=at(0))))
    out["vehicle"] = answer.outcome
    vstatus = vehicles.GetVehicleStatus(vsvc.GetVehicleStatusRequest(vehicle_id="VH-OLD"))
    out["vehicle_status"] = [vstatus.soc, vstatus.kwh_delivered_dc, vstatus.battery_temp]
    print(json.dumps(out))
    """
)


@pytest.fixture
def old_stubs(tmp_path: Path) -> Path:
    """The generated package `energy` as it was at BEFORE_REGISTERS, in a directory of its own."""
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", BEFORE_REGISTERS, "gen/energy"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for path in listed:
        if path.endswith(".py"):
            content = subprocess.run(
                ["git", "show", f"{BEFORE_REGISTERS}:{path}"],
                cwd=PROJECT,
                capture_output=True,
                check=True,
            ).stdout
            target = tmp_path / path.removeprefix("gen/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return tmp_path


def test_an_old_client_is_served_as_before(
    old_stubs: Path, meter_server: InProcessServer, vehicle_server: InProcessServer
) -> None:
    # A register reading stored by a new client, for the old client to read as a status.
    from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
    from google.protobuf.timestamp_pb2 import Timestamp

    with meter_server.channel() as channel:
        meter_service_pb2_grpc.MeterServiceStub(channel).IngestReading(
            meter_service_pb2.IngestReadingRequest(
                reading=meter_pb2.MeterReading(
                    meter_id="CHG-REG-NEW",
                    kwh_consumed_ac_register=1520.25,
                    voltage=231.0,
                    timestamp=Timestamp(seconds=1_770_724_800),
                )
            ),
            timeout=30,
        )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            OLD_CLIENT,
            meter_server.target,
            vehicle_server.target,
            str(old_stubs),
        ],
        env={"PYTHONPATH": str(old_stubs), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    # Stored, then a retry (DUPLICATE = 2), then another value: the old message carries the
    # new outcome as the number 3 (CONFLICT) and `duplicate` false, so the sender is not told
    # its value was kept.
    assert out["unary"] == [[False, 1], [True, 2], [False, 3]]
    # 0.25 at 12:01, interval 0 at 12:02 (an old client's 0 is not sent: neither form), and the
    # 12:00 key again with 0.75: a conflict, counted in no field the old message knows.
    assert out["stream"] == [2, 0, 0]
    # The register status reads as interval energy 0 in the old message; the voltage is there.
    assert out["register_status"] == [0.0, 231.0]
    # 0.5 + 0.25 + 0 over 12:00..12:03, three readings
    assert out["summary"] == [0.75, 3]
    assert out["vehicle"] == 1
    assert out["vehicle_status"] == [55.0, 0.5, 21.5]
    with psycopg.connect(meter_server.database_url) as connection:
        rows = connection.execute(
            "SELECT kwh_consumed_ac, kwh_consumed_ac_register FROM meter.meter_readings "
            "WHERE meter_id = 'CHG-OLD' ORDER BY read_time"
        ).fetchall()
    assert rows == [(0.5, None), (0.25, None), (0.0, None)]
