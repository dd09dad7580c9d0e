"""A quick ingest-rate check until `make bench` exists: one MeterService in-process on port 0
against DATABASE_URL (migrated), fed by (a) one stream of 500-reading batches and (b) many
concurrent unary callers. Prints readings/s for each.

Usage:
    DATABASE_URL=postgresql://... python tools/quick_ingest_rate.py [stream_total] [unary_total]
"""

from __future__ import annotations

import sys
import threading
import time

import grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.config import Settings
from services.common.server import start_server
from services.meter.component import build

BASE = 1_770_000_000  # 2026-02-02, seconds


def batches(total: int, chargers: int, size: int, offset: int):
    for start in range(0, total, size):
        yield meter_service_pb2.IngestReadingsRequest(
            readings=[
                meter_pb2.MeterReading(
                    meter_id=f"CHG-{i % chargers:05d}",
                    kwh_consumed_ac=0.12,
                    voltage=230.0,
                    timestamp=Timestamp(seconds=BASE + offset + 60 * (i // chargers)),
                )
                for i in range(start, min(start + size, total))
            ]
        )


def main() -> None:
    stream_total = int(sys.argv[1]) if len(sys.argv) > 1 else 500_000
    unary_total = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    settings = Settings.from_env()
    running = start_server(settings, build(settings), "127.0.0.1:0")
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = meter_service_pb2_grpc.MeterServiceStub(channel)
    try:
        requests = list(batches(stream_total, 10_000, 500, 0))
        started = time.perf_counter()
        response = stub.IngestReadings(iter(requests), timeout=600)
        elapsed = time.perf_counter() - started
        print(
            f"one stream, 500-reading batches: {response.accepted} accepted in {elapsed:.2f}s "
            f"= {response.accepted / elapsed:,.0f} readings/s"
        )

        callers = 200
        per_caller = unary_total // callers
        if per_caller == 0:
            return
        errors: list[BaseException] = []

        def caller(n: int) -> None:
            try:
                for k in range(per_caller):
                    reading = meter_pb2.MeterReading(
                        meter_id=f"UNARY-{n:03d}",
                        kwh_consumed_ac=0.1,
                        voltage=230.0,
                        timestamp=Timestamp(seconds=BASE + 60 * k),
                    )
                    stub.IngestReading(
                        meter_service_pb2.IngestReadingRequest(reading=reading), timeout=60
                    )
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        done = callers * per_caller
        print(
            f"{callers} concurrent unary callers: {done} readings in {elapsed:.2f}s "
            f"= {done / elapsed:,.0f} readings/s, errors: {len(errors)}"
        )
    finally:
        channel.close()
        running.shutdown(5)


if __name__ == "__main__":
    main()
