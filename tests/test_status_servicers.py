"""Servicer tier: the status RPCs driven through grpc_testing, over a real PostgreSQL."""

from __future__ import annotations

import grpc
import grpc_testing
import psycopg
import pytest
from energy.meter.v1 import meter_service_pb2
from energy.vehicle.v1 import vehicle_service_pb2

from services.common.config import Settings
from services.meter import component as meter_component
from services.vehicle import component as vehicle_component

METER = meter_service_pb2.DESCRIPTOR.services_by_name["MeterService"]
VEHICLE = vehicle_service_pb2.DESCRIPTOR.services_by_name["VehicleService"]


@pytest.fixture
def meter(database_url):
    built = meter_component.build(Settings(database_url=database_url))
    yield grpc_testing.server_from_dictionary(
        {METER: built.servicer}, grpc_testing.strict_real_time()
    )
    built.engine.dispose()


@pytest.fixture
def vehicle(database_url):
    built = vehicle_component.build(Settings(database_url=database_url))
    yield grpc_testing.server_from_dictionary(
        {VEHICLE: built.servicer}, grpc_testing.strict_real_time()
    )
    built.engine.dispose()


def call(server, service, method: str, request):
    rpc = server.invoke_unary_unary(service.methods_by_name[method], (), request, None)
    response, _metadata, code, details = rpc.termination()
    return response, code, details


def seed_chargers(url: str, count: int) -> None:
    with psycopg.connect(url) as connection:
        connection.execute(
            "INSERT INTO meter.charger_status (meter_id, kwh_consumed_ac, voltage, read_time) "
            "SELECT 'CHG-' || lpad(i::text, 5, '0'), i * 0.5, 230, "
            "'2026-02-10T12:00:00Z'::timestamptz + i * interval '1 second' "
            "FROM generate_series(1, %s) AS i",
            (count,),
        )


def test_get_charger_status(meter, database_url):
    seed_chargers(database_url, 3)
    response, code, _ = call(
        meter,
        METER,
        "GetChargerStatus",
        meter_service_pb2.GetChargerStatusRequest(meter_id="CHG-00002"),
    )
    assert code == grpc.StatusCode.OK
    assert response.meter_id == "CHG-00002"
    assert response.kwh_consumed_ac == 1.0
    assert response.voltage == 230
    assert response.timestamp.ToJsonString() == "2026-02-10T12:00:02Z"
    assert response.update_time.seconds > 0


def test_get_unknown_charger_is_not_found(meter):
    _, code, details = call(
        meter,
        METER,
        "GetChargerStatus",
        meter_service_pb2.GetChargerStatusRequest(meter_id="CHG-404"),
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "CHG-404" in details


def test_get_malformed_id_is_invalid(meter):
    _, code, details = call(
        meter, METER, "GetChargerStatus", meter_service_pb2.GetChargerStatusRequest(meter_id="a b")
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "meter_id" in details


def test_list_charger_statuses_pages_in_order(meter, database_url):
    seed_chargers(database_url, 25)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        response, code, _ = call(
            meter,
            METER,
            "ListChargerStatuses",
            meter_service_pb2.ListChargerStatusesRequest(page_size=10, page_token=token),
        )
        assert code == grpc.StatusCode.OK
        seen += [status.meter_id for status in response.charger_statuses]
        pages += 1
        token = response.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == [f"CHG-{i:05d}" for i in range(1, 26)]


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [({"page_size": -1}, "page_size"), ({"page_token": "not-a-token"}, "page_token")],
)
def test_list_rejects_bad_paging(meter, request_fields, field):
    _, code, details = call(
        meter,
        METER,
        "ListChargerStatuses",
        meter_service_pb2.ListChargerStatusesRequest(**request_fields),
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details


def test_vehicle_status_get_and_list(vehicle, database_url):
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "INSERT INTO vehicle.vehicle_status "
            "(vehicle_id, charger_id, soc, kwh_delivered_dc, battery_temp, read_time) VALUES "
            "('VH-001', 'CHG-001', 75, 14.2, 32, '2026-02-10T12:00:00Z'), "
            "('VH-002', 'CHG-002', 20, 1.5, -4.5, '2026-02-10T12:01:00.123456Z')"
        )
    response, code, _ = call(
        vehicle,
        VEHICLE,
        "GetVehicleStatus",
        vehicle_service_pb2.GetVehicleStatusRequest(vehicle_id="VH-002"),
    )
    assert code == grpc.StatusCode.OK
    assert (response.charger_id, response.soc, response.kwh_delivered_dc) == ("CHG-002", 20, 1.5)
    assert response.battery_temp == -4.5
    assert response.timestamp.ToJsonString() == "2026-02-10T12:01:00.123456Z"

    listed, code, _ = call(
        vehicle, VEHICLE, "ListVehicleStatuses", vehicle_service_pb2.ListVehicleStatusesRequest()
    )
    assert code == grpc.StatusCode.OK
    assert [s.vehicle_id for s in listed.vehicle_statuses] == ["VH-001", "VH-002"]
    assert listed.next_page_token == ""

    _, code, _ = call(
        vehicle,
        VEHICLE,
        "GetVehicleStatus",
        vehicle_service_pb2.GetVehicleStatusRequest(vehicle_id="VH-404"),
    )
    assert code == grpc.StatusCode.NOT_FOUND
