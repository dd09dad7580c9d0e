"""The service and method names derived from the generated descriptors: checked here against
the contracts written out by hand, so a change to protos/ that moves them is seen. No database."""

from __future__ import annotations

import json

from services import client
from services.common import contracts

METER = "energy.meter.v1.MeterService"
VEHICLE = "energy.vehicle.v1.VehicleService"
ANALYTICS = "energy.analytics.v1.AnalyticsService"

EXPECTED_UNARY = {
    METER: {
        "IngestReading",
        "ListChargerStatuses",
        "GetChargerStatus",
        "SummarizeConsumption",
        "AttributeConsumption",
        "ListReportingSummaries",
    },
    VEHICLE: {
        "IngestReading",
        "ListVehicleStatuses",
        "GetVehicleStatus",
        "ListChargingSessions",
        "ListChargerSessions",
        "ListReportingSummaries",
    },
    ANALYTICS: {"GetVehiclePerformance", "ListChargerEfficiencies", "GetDataCompleteness"},
}


def test_full_names_are_the_wire_names():
    assert contracts.FULL_NAMES == {"meter": METER, "vehicle": VEHICLE, "analytics": ANALYTICS}
    assert client.SERVICES == (METER, VEHICLE, ANALYTICS)


def test_unary_methods_are_exactly_the_non_streaming_rpcs():
    derived = contracts.unary_methods()
    assert {service: set(methods) for service, methods in derived.items()} == EXPECTED_UNARY
    for methods in derived.values():
        assert len(methods) == len(set(methods))


def test_the_client_stream_is_not_retried_by_grpc():
    """IngestReadings is a client stream: ResilientStreamSender resends it, not the channel."""
    for short, service in (("meter", METER), ("vehicle", VEHICLE)):
        method = contracts.DESCRIPTORS[short].methods_by_name["IngestReadings"]
        assert method.client_streaming
        assert "IngestReadings" not in contracts.unary_methods()[service]


def test_service_config_retries_every_unary_method_and_no_stream():
    config = json.loads(client.SERVICE_CONFIG)
    retried, deadline_only = config["methodConfig"]
    assert "retryPolicy" in retried and "retryPolicy" not in deadline_only
    named = {(entry["service"], entry["method"]) for entry in retried["name"]}
    expected = {
        (service, method) for service, methods in EXPECTED_UNARY.items() for method in methods
    }
    assert named == expected
    assert deadline_only["name"] == [{"service": s} for s in (METER, VEHICLE, ANALYTICS)]
