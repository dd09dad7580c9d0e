"""A recorded fleet (`energy-ingest simulate --output`) holds every reading of the fleet, in its
order, each message of one service and at most batch_size readings; a damaged file is refused."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from energy.meter.v1 import meter_service_pb2
from energy.vehicle.v1 import vehicle_service_pb2

from services.bench import loader
from services.simulate import recording
from services.simulate.fleet import Fleet
from tests.unit.test_fleet import SMALL, all_rows


def micros(timestamp) -> int:
    return timestamp.seconds * 1_000_000 + timestamp.nanos // 1000


def test_a_recording_holds_every_reading_in_the_fleets_order(tmp_path: Path):
    path = tmp_path / "small.readings"
    with path.open("wb") as out:
        counts = recording.record(Fleet(SMALL), out, batch_size=500)
    meters, vehicles = all_rows(SMALL)
    assert counts == (len(meters), len(vehicles)) == Fleet(SMALL).reading_count()

    recorded_meters, recorded_vehicles, sizes = [], [], []
    for kind, data in recording.records(path):
        if kind == recording.METER:
            meter_readings = meter_service_pb2.IngestReadingsRequest.FromString(data).readings
            recorded_meters += [
                (r.meter_id, micros(r.timestamp), r.kwh_consumed_ac, r.voltage)
                for r in meter_readings
            ]
            sizes.append(len(meter_readings))
        else:
            vehicle_readings = vehicle_service_pb2.IngestReadingsRequest.FromString(data).readings
            recorded_vehicles += [
                (
                    r.vehicle_id,
                    micros(r.timestamp),
                    r.charger_id,
                    r.soc,
                    r.kwh_delivered_dc,
                    r.battery_temp,
                )
                for r in vehicle_readings
            ]
            sizes.append(len(vehicle_readings))
    assert recorded_meters == meters
    assert recorded_vehicles == vehicles
    assert max(sizes) == 500 and min(sizes) >= 1


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:-3], "a record is cut short"),
        (lambda data: data + b"M\x00", "a record header is cut short"),
        (lambda data: b"X" + data[1:], "unknown record kind b'X'"),
    ],
    ids=["cut record", "cut header", "unknown kind"],
)
def test_a_damaged_recording_is_refused(tmp_path: Path, damage, message):
    out = io.BytesIO()
    recording.record(Fleet(SMALL), out, batch_size=100)
    path = tmp_path / "damaged.readings"
    path.write_bytes(damage(out.getvalue()))
    with pytest.raises(ValueError, match=message):
        list(recording.records(path))


def test_the_loader_refuses_an_empty_recording(tmp_path: Path):
    empty = tmp_path / "empty.readings"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="the recording holds no message"):
        loader.send(empty, {recording.METER: "127.0.0.1:1", recording.VEHICLE: "127.0.0.1:1"}, 1)
