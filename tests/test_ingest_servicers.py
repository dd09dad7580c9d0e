"""Servicer tier: ingestion RPCs driven through grpc_testing (client streaming through
invoke_stream_unary), over the real group-commit writers and a real PostgreSQL."""

from __future__ import annotations

import grpc
import grpc_testing
import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health

from services.common.config import Settings
from services.common.server import HealthReporter
from services.meter import component as meter_component
from services.vehicle import component as vehicle_component

METER = meter_service_pb2.DESCRIPTOR.services_by_name["MeterService"]
VEHICLE = vehicle_service_pb2.DESCRIPTOR.services_by_name["VehicleService"]
T0 = 1_770_681_600  # 2026-02-10T00:00:00Z


def served(module, descriptor, database_url):
    built = module.build(Settings(database_url=database_url))
    built.start(HealthReporter(health.HealthServicer(), descriptor.full_name))
    server = grpc_testing.server_from_dictionary(
        {descriptor: built.servicer}, grpc_testing.strict_real_time()
    )
    return built, server


@pytest.fixture
def meter(database_url):
    built, server = served(meter_component, METER, database_url)
    yield server
    built.stop()


@pytest.fixture
def vehicle(database_url):
    built, server = served(vehicle_component, VEHICLE, database_url)
    yield server
    built.stop()


def meter_reading(meter_id: str, minute: int, kwh: float = 0.25) -> meter_pb2.MeterReading:
    return meter_pb2.MeterReading(
        meter_id=meter_id,
        kwh_consumed_ac=kwh,
        voltage=230.0,
        timestamp=Timestamp(seconds=T0 + 60 * minute),
    )


def ingest_one(server, request):
    rpc = server.invoke_unary_unary(METER.methods_by_name["IngestReading"], (), request, None)
    return rpc.termination()


def stream(server, service, requests):
    rpc = server.invoke_stream_unary(service.methods_by_name["IngestReadings"], (), None)
    for request in requests:
        rpc.send_request(request)
    rpc.requests_closed()
    return rpc.termination()


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_ingest_reading_stores_once_and_flags_the_duplicate(meter, database_url):
    request = meter_service_pb2.IngestReadingRequest(reading=meter_reading("CHG-001", 0))
    first, _, code, _ = ingest_one(meter, request)
    assert code == grpc.StatusCode.OK and first.duplicate is False
    second, _, code, _ = ingest_one(meter, request)
    assert code == grpc.StatusCode.OK and second.duplicate is True
    assert count(database_url, "meter.meter_readings") == 1
    assert count(database_url, "meter.charger_status") == 1


def test_ingest_reading_rejects_invalid_input_and_stores_nothing(meter, database_url):
    bad = meter_reading("CHG 001", 0, kwh=-1)
    _, _, code, details = ingest_one(meter, meter_service_pb2.IngestReadingRequest(reading=bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "reading.meter_id" in details and "reading.kwh_consumed_ac" in details
    assert count(database_url, "meter.meter_readings") == 0


def test_ingest_readings_counts_a_stream(meter, database_url):
    batches = [
        meter_service_pb2.IngestReadingsRequest(
            readings=[meter_reading("CHG-001", 0), meter_reading("CHG-002", 0)]
        ),
        meter_service_pb2.IngestReadingsRequest(
            readings=[
                meter_reading("CHG-001", 0),  # resent: a duplicate
                meter_reading("CHG-003", 0, kwh=float("nan")),  # index 3: rejected
                meter_reading("CHG-001", 1),
            ]
        ),
    ]
    response, _, code, _ = stream(meter, METER, batches)
    assert code == grpc.StatusCode.OK
    assert (response.accepted, response.duplicates, response.rejected) == (3, 1, 1)
    assert [(r.index, r.field) for r in response.rejections] == [(3, "kwh_consumed_ac")]
    assert count(database_url, "meter.meter_readings") == 3
    with psycopg.connect(database_url) as connection:
        newest = connection.execute(
            "SELECT extract(epoch FROM read_time)::bigint FROM meter.charger_status "
            "WHERE meter_id = 'CHG-001'"
        ).fetchone()
    assert newest == (T0 + 60,)


def test_vehicle_stream_and_status(vehicle, database_url):
    readings = [
        vehicle_pb2.VehicleReading(
            vehicle_id="VH-001",
            charger_id="CHG-001",
            soc=40 + minute,
            kwh_delivered_dc=0.2,
            battery_temp=30.5,
            timestamp=Timestamp(seconds=T0 + 60 * minute),
        )
        for minute in (2, 0, 1)
    ]
    readings.append(
        vehicle_pb2.VehicleReading(
            vehicle_id="VH-002", charger_id="CHG-002", soc=101, timestamp=Timestamp(seconds=T0)
        )
    )
    response, _, code, _ = stream(
        vehicle, VEHICLE, [vehicle_service_pb2.IngestReadingsRequest(readings=readings)]
    )
    assert code == grpc.StatusCode.OK
    assert (response.accepted, response.duplicates, response.rejected) == (3, 0, 1)
    assert [(r.index, r.field) for r in response.rejections] == [(3, "soc")]
    rpc = vehicle.invoke_unary_unary(
        VEHICLE.methods_by_name["GetVehicleStatus"],
        (),
        vehicle_service_pb2.GetVehicleStatusRequest(vehicle_id="VH-001"),
        None,
    )
    status, _, code, _ = rpc.termination()
    assert code == grpc.StatusCode.OK
    assert (status.soc, status.timestamp.seconds) == (42, T0 + 120)
