"""The three gRPC contracts as the generated descriptors describe them, so that protos/ stays
the one place where service and method names are written: a new RPC shows up here (and in the
client's retry policy) after `make gen`, with no list to update by hand."""

from __future__ import annotations

from energy.analytics.v1 import analytics_service_pb2
from energy.meter.v1 import meter_service_pb2
from energy.vehicle.v1 import vehicle_service_pb2
from google.protobuf.descriptor import ServiceDescriptor

# Keyed by the short names of the CLI and the settings (`serve meter`, METER_LISTEN_ADDR).
DESCRIPTORS: dict[str, ServiceDescriptor] = {
    # Each service module declares one service; its name is taken, not written here.
    short: next(iter(module.DESCRIPTOR.services_by_name.values()))
    for short, module in (
        ("meter", meter_service_pb2),
        ("vehicle", vehicle_service_pb2),
        ("analytics", analytics_service_pb2),
    )
}

# Short name -> full proto name, e.g. "meter" -> "energy.meter.v1.MeterService": the name on the
# wire, in method paths and in health checks.
FULL_NAMES: dict[str, str] = {short: service.full_name for short, service in DESCRIPTORS.items()}


def unary_methods() -> dict[str, tuple[str, ...]]:
    """{full service name: its methods that stream in neither direction}, each in the order the
    .proto declares them, e.g. {"energy.analytics.v1.AnalyticsService":
    ("GetVehiclePerformance",), ...}."""
    return {
        service.full_name: tuple(
            method.name
            for method in service.methods
            if not (method.client_streaming or method.server_streaming)
        )
        for service in DESCRIPTORS.values()
    }
