"""Servicer tier for the correlation RPCs, driven through grpc_testing: SummarizeConsumption and
ListChargingSessions over a real PostgreSQL, GetVehiclePerformance over real downstream servers."""

from __future__ import annotations

import grpc
import grpc_testing
import pytest
from energy.analytics.v1 import analytics_service_pb2
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.analytics.component import AnalyticsComponent
from services.common.config import Settings
from services.meter import component as meter_component
from services.vehicle import component as vehicle_component

METER = meter_service_pb2.DESCRIPTOR.services_by_name["MeterService"]
VEHICLE = vehicle_service_pb2.DESCRIPTOR.services_by_name["VehicleService"]
ANALYTICS = analytics_service_pb2.DESCRIPTOR.services_by_name["AnalyticsService"]
T0 = 1_770_681_600  # 2026-02-10T00:00:00Z


def at(minute: float) -> Timestamp:
    return Timestamp(seconds=T0 + round(minute * 60))


def seed(meter_target: str, vehicle_target: str) -> None:
    """CHG-1 draws 1.0 kWh a minute for 60 minutes; VH-A charges on it in minutes 0-9 (0.5 kWh
    DC each, 30 °C), VH-B in minutes 30-39 (0.75 kWh, 20 °C)."""
    with grpc.insecure_channel(meter_target) as channel:
        meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
            iter(
                [
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[
                            meter_pb2.MeterReading(
                                meter_id="CHG-1", kwh_consumed_ac=1.0, voltage=230, timestamp=at(m)
                            )
                            for m in range(60)
                        ]
                    )
                ]
            ),
            timeout=30,
        )
    readings = [
        vehicle_pb2.VehicleReading(
            vehicle_id=vehicle,
            charger_id="CHG-1",
            soc=50,
            kwh_delivered_dc=dc,
            battery_temp=temp,
            timestamp=at(m),
        )
        for vehicle, minutes, dc, temp in (
            ("VH-A", range(10), 0.5, 30.0),
            ("VH-B", range(30, 40), 0.75, 20.0),
        )
        for m in minutes
    ]
    with grpc.insecure_channel(vehicle_target) as channel:
        vehicle_service_pb2_grpc.VehicleServiceStub(channel).IngestReadings(
            iter([vehicle_service_pb2.IngestReadingsRequest(readings=readings)]), timeout=30
        )


def unary(server, service, method: str, request, timeout: float | None = None):
    rpc = server.invoke_unary_unary(service.methods_by_name[method], (), request, timeout)
    return rpc.termination()


@pytest.fixture
def seeded(meter_server, vehicle_server):
    seed(meter_server.target, vehicle_server.target)
    return meter_server, vehicle_server


@pytest.fixture
def meter_servicer(seeded, database_url):
    built = meter_component.build(Settings(database_url=database_url))
    yield grpc_testing.server_from_dictionary(
        {METER: built.servicer}, grpc_testing.strict_real_time()
    )
    built.engine.dispose()


@pytest.fixture
def vehicle_servicer(seeded, database_url):
    built = vehicle_component.build(Settings(database_url=database_url))
    yield grpc_testing.server_from_dictionary(
        {VEHICLE: built.servicer}, grpc_testing.strict_real_time()
    )
    built.engine.dispose()


@pytest.fixture
def analytics_servicer(seeded):
    meter_server, vehicle_server = seeded
    built = AnalyticsComponent(
        Settings(meter_target=meter_server.target, vehicle_target=vehicle_server.target)
    )
    yield grpc_testing.server_from_dictionary(
        {ANALYTICS: built.servicer}, grpc_testing.strict_real_time()
    )
    built.stop()


def test_summarize_consumption_sums_each_interval_in_order(meter_servicer):
    request = meter_service_pb2.SummarizeConsumptionRequest(
        intervals=[
            meter_pb2.ConsumptionInterval(charger_id="CHG-1", start_time=at(10), end_time=at(20)),
            meter_pb2.ConsumptionInterval(charger_id="CHG-9", start_time=at(0), end_time=at(60)),
            meter_pb2.ConsumptionInterval(charger_id="CHG-1", start_time=at(0), end_time=at(0.5)),
        ]
    )
    response, _, code, _ = unary(meter_servicer, METER, "SummarizeConsumption", request)
    assert code == grpc.StatusCode.OK
    # [10, 20) holds minutes 10..19: 10 readings of 1.0; CHG-9 never reported; [0, 0.5) minute 0.
    assert [(s.charger_id, s.kwh_consumed_ac, s.reading_count) for s in response.summaries] == [
        ("CHG-1", 10.0, 10),
        ("CHG-9", 0.0, 0),
        ("CHG-1", 1.0, 1),
    ]
    assert response.summaries[0].start_time == at(10)


def test_summarize_consumption_rejects_an_end_before_its_start(meter_servicer):
    request = meter_service_pb2.SummarizeConsumptionRequest(
        intervals=[
            meter_pb2.ConsumptionInterval(charger_id="CHG-1", start_time=at(5), end_time=at(4))
        ]
    )
    _, _, code, details = unary(meter_servicer, METER, "SummarizeConsumption", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "intervals[0].end_time" in details


def test_list_charging_sessions(vehicle_servicer):
    request = vehicle_service_pb2.ListChargingSessionsRequest(
        vehicle_id="VH-A", start_time=at(-60), end_time=at(120), session_gap=Duration(seconds=300)
    )
    response, _, code, _ = unary(vehicle_servicer, VEHICLE, "ListChargingSessions", request)
    assert code == grpc.StatusCode.OK
    [session] = response.sessions
    assert (session.charger_id, session.start_time, session.end_time) == ("CHG-1", at(0), at(9))
    assert (session.reading_count, session.kwh_delivered_dc) == (10, 5.0)
    assert (session.battery_temp_sum, session.battery_temp_count) == (300.0, 10)

    request.vehicle_id = "VH-404"
    _, _, code, _ = unary(vehicle_servicer, VEHICLE, "ListChargingSessions", request)
    assert code == grpc.StatusCode.NOT_FOUND


def test_get_vehicle_performance_splits_a_shared_charger(analytics_servicer):
    request = analytics_service_pb2.GetVehiclePerformanceRequest(
        vehicle_id="VH-B", end_time=at(24 * 60)
    )
    performance, _, code, _ = unary(
        analytics_servicer, ANALYTICS, "GetVehiclePerformance", request, timeout=10
    )
    assert code == grpc.StatusCode.OK
    # VH-B: minutes 30..39; AC window [29:30, 39:30) holds meter minutes 30..39 = 10 x 1.0 kWh;
    # DC = 10 x 0.75 = 7.5; efficiency 0.75; loss 2.5.
    assert performance.total_energy_consumed_ac == 10.0
    assert performance.total_energy_delivered_dc == 7.5
    assert performance.efficiency_ratio == 0.75
    assert performance.energy_loss_kwh == 2.5
    assert performance.avg_battery_temperature == 20.0
    assert (performance.data_points, performance.meter_data_points) == (10, 10)
    assert [s.charger_id for s in performance.sessions] == ["CHG-1"]


def test_get_vehicle_performance_rejects_a_window_over_31_days(analytics_servicer):
    request = analytics_service_pb2.GetVehiclePerformanceRequest(
        vehicle_id="VH-A", window=Duration(seconds=31 * 86400 + 1)
    )
    _, _, code, details = unary(analytics_servicer, ANALYTICS, "GetVehiclePerformance", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "window" in details
