"""p50/p99 of GetVehiclePerformance for a vehicle reporting once a minute on a charger that
reports once a minute, for one day (1,440 + 1,440 readings) or `--days N` (at most 31: the
longest window), the window being those days; the three services run as separate processes.
Measured twice: read from the readings (the readings were stored late: their hours are marked
stale), then with the hourly rollups made (as the maintenance loop makes them).

Usage: DATABASE_URL=postgresql://... python tools/analytics_latency.py [calls] [--days N]
(DATABASE_URL must point at a migrated database; `energy-ingest migrate` does that.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import grpc
import psycopg
from energy.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.config import Settings
from services.launcher import start_serving
from services.meter.component import rollups as meter_rollups
from services.vehicle.component import rollups as vehicle_rollups

DAY_START = 1_770_681_600  # 2026-02-10T00:00:00Z


# Readings per message (a stream holds at most 100,000).
CHUNK = 20_000


def seed(meter: str, vehicle: str, days: int) -> None:
    chunks = [range(s, min(s + CHUNK, days * 1440)) for s in range(0, days * 1440, CHUNK)]
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
                    for minutes in chunks
                ]
            ),
            timeout=120,
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
                    for minutes in chunks
                ]
            ),
            timeout=120,
        )


def make_rollups(database_url: str) -> None:
    """Both services' marked hours made, as the maintenance loop's next run would."""
    settings = Settings(database_url=database_url)
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SET jit = off")
        for rollups in (meter_rollups(settings), vehicle_rollups(settings)):
            rollups.refresh(connection)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("calls", type=int, nargs="?", default=1000)
    parser.add_argument("--days", type=int, default=1, choices=range(1, 32), metavar="1..31")
    args = parser.parse_args()
    calls, days = args.calls, args.days
    meter = start_serving("meter", {})
    vehicle = start_serving("vehicle", {})
    analytics = start_serving(
        "analytics", {"METER_TARGET": meter.target, "VEHICLE_TARGET": vehicle.target}
    )
    meter_target, vehicle_target, analytics_target = meter.target, vehicle.target, analytics.target
    try:
        seed(meter_target, vehicle_target, days)
        request = analytics_service_pb2.GetVehiclePerformanceRequest(
            vehicle_id="VH-LAT",
            end_time=Timestamp(seconds=DAY_START + days * 86400),
            window=Duration(seconds=days * 86400),
        )
        for read_from in ("the readings", "the rollups"):
            if read_from == "the rollups":
                make_rollups(os.environ["DATABASE_URL"])
            with grpc.insecure_channel(analytics_target) as channel:
                stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
                first = stub.GetVehiclePerformance(request, timeout=60)
                # The reading at minute 0 is stamped at the window's start: its interval ends
                # there, so it belongs to the day before; the other minutes count on both sides.
                counted = days * 1440 - 1
                assert (first.data_points, first.meter_data_points) == (counted, counted), first
                for _ in range(min(50, calls)):  # warm up connections and prepared plans
                    stub.GetVehiclePerformance(request, timeout=60)
                latencies = []
                for _ in range(calls):
                    started = time.perf_counter()
                    stub.GetVehiclePerformance(request, timeout=60)
                    latencies.append((time.perf_counter() - started) * 1000)
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(
                f"GetVehiclePerformance from {read_from}, {days} day(s): {days * 1440:,} + "
                f"{days * 1440:,} readings, {calls} sequential calls: "
                f"p50 {statistics.median(latencies):.2f} ms, p99 {p99:.2f} ms, "
                f"max {latencies[-1]:.2f} ms"
            )
    finally:
        for service in (analytics, vehicle, meter):
            service.terminate(60)


if __name__ == "__main__":
    main()
