"""p50/p99 of GetVehiclePerformance for a vehicle with 1,440 readings (one a minute for a day)
on a charger with 1,440 readings, the three services running as separate processes.

Usage: DATABASE_URL=postgresql://... python tools/analytics_latency.py [calls]
(DATABASE_URL must point at a migrated database; `energy-ingest migrate` does that.)
"""

from __future__ import annotations

import statistics
import sys
import time

import grpc
from energy.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.launcher import start_serving

DAY_START = 1_770_681_600  # 2026-02-10T00:00:00Z


def seed(meter: str, vehicle: str) -> None:
    minutes = range(1440)
    with grpc.insecure_channel(meter) as channel:
        meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
            iter(
                [
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[
                            meter_pb2.MeterReading(
                                meter_id="CHG-LAT",
                                kwh_consumed_ac=0.2,
                                voltage=230,
                                timestamp=Timestamp(seconds=DAY_START + 60 * m),
                            )
                            for m in minutes
                        ]
                    )
                ]
            ),
            timeout=60,
        )
    with grpc.insecure_channel(vehicle) as channel:
        vehicle_service_pb2_grpc.VehicleServiceStub(channel).IngestReadings(
            iter(
                [
                    vehicle_service_pb2.IngestReadingsRequest(
                        readings=[
                            vehicle_pb2.VehicleReading(
                                vehicle_id="VH-LAT",
                                charger_id="CHG-LAT",
                                soc=50,
                                kwh_delivered_dc=0.18,
                                battery_temp=31,
                                timestamp=Timestamp(seconds=DAY_START + 60 * m),
                            )
                            for m in minutes
                        ]
                    )
                ]
            ),
            timeout=60,
        )


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    meter = start_serving("meter", {})
    vehicle = start_serving("vehicle", {})
    analytics = start_serving(
        "analytics", {"METER_TARGET": meter.target, "VEHICLE_TARGET": vehicle.target}
    )
    meter_target, vehicle_target, analytics_target = meter.target, vehicle.target, analytics.target
    try:
        seed(meter_target, vehicle_target)
        request = analytics_service_pb2.GetVehiclePerformanceRequest(
            vehicle_id="VH-LAT", end_time=Timestamp(seconds=DAY_START + 86400)
        )
        with grpc.insecure_channel(analytics_target) as channel:
            stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
            first = stub.GetVehiclePerformance(request, timeout=10)
            # The reading at minute 0 is stamped at the window's start: its interval ends there,
            # so it belongs to the day before; minutes 1..1439 count on both sides.
            assert (first.data_points, first.meter_data_points) == (1439, 1439), first
            for _ in range(50):  # warm up connections and prepared plans
                stub.GetVehiclePerformance(request, timeout=10)
            latencies = []
            for _ in range(calls):
                started = time.perf_counter()
                stub.GetVehiclePerformance(request, timeout=10)
                latencies.append((time.perf_counter() - started) * 1000)
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(
            f"GetVehiclePerformance, 1,440 + 1,440 readings, {calls} sequential calls: "
            f"p50 {statistics.median(latencies):.2f} ms, p99 {p99:.2f} ms, "
            f"max {latencies[-1]:.2f} ms"
        )
    finally:
        for service in (analytics, vehicle, meter):
            service.terminate(60)


if __name__ == "__main__":
    main()
