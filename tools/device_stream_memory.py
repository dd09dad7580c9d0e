"""Worst case of one device credential on one MeterService process (README "Reliability"):
MAX_STREAMS_PER_DEVICE (2) streams of the same device at once, first 100,000 readings each (the
readings bound), then messages of 15 MiB padded with an unknown field (refused at the 16 MiB
byte bound), plain and gzip-compressed; prints the server's peak RSS after each.

Usage: DATABASE_URL=postgresql://... python tools/device_stream_memory.py
(DATABASE_URL must point at a migrated database; `energy-ingest migrate` does that.)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2
from google.protobuf.timestamp_pb2 import Timestamp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from services.launcher import start_service, wait_for_health

DEVICE = "CHG-MEM"
TOKEN = "tok-mem"
START = 1_770_681_600  # 2026-02-10T00:00:00Z
MIB = 1024 * 1024


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def reading(minute: int) -> meter_pb2.MeterReading:
    return meter_pb2.MeterReading(
        meter_id=DEVICE,
        kwh_consumed_ac=1.0,
        voltage=230.0,
        timestamp=Timestamp(seconds=START - minute * 60),
    )


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def readings_stream(first: int) -> Iterator[bytes]:
    for k in range(10):
        batch = [reading(first + k * 10_000 + i) for i in range(10_000)]
        yield meter_service_pb2.IngestReadingsRequest(readings=batch).SerializeToString()


def padded_stream(first: int) -> Iterator[bytes]:
    pad = 15 * MIB
    for k in range(2):
        request = meter_service_pb2.IngestReadingsRequest(readings=[reading(first + k)])
        yield request.SerializeToString() + varint(9999 << 3 | 2) + varint(pad) + b"\0" * pad


def concurrently(
    call: grpc.StreamUnaryMultiCallable,
    metadata: list[tuple[str, str]],
    stream: Callable[[int], Iterator[bytes]],
    compression: grpc.Compression,
    first: int,
) -> list[object]:
    """Two streams of the device at once; what each was answered (accepted, or the code)."""
    results: list[object] = []

    def run(offset: int) -> None:
        try:
            answer = call(stream(offset), metadata=metadata, compression=compression, timeout=120)
            results.append(answer.accepted)
        except grpc.RpcError as error:
            results.append(error.code().name)

    threads = [threading.Thread(target=run, args=(first + k * 200_000,)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main() -> int:
    url = os.environ["DATABASE_URL"]
    tokens = Path(tempfile.mkdtemp()) / "tokens.json"
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    tokens.write_text(json.dumps({digest: {"principal": DEVICE, "role": "device"}}))
    server = start_service("meter", {"DATABASE_URL": url, "AUTH_TOKENS_FILE": str(tokens)})
    metadata = [("authorization", f"Bearer {TOKEN}")]
    try:
        wait_for_health(server.target, "energy.meter.v1.MeterService", 1)
        with grpc.insecure_channel(server.target) as channel:
            call = channel.stream_unary(
                "/energy.meter.v1.MeterService/IngestReadings",
                request_serializer=None,
                response_deserializer=meter_service_pb2.IngestReadingsResponse.FromString,
            )
            call(readings_stream(10_000_000), metadata=metadata, timeout=60)  # warm up
            print(f"baseline peak RSS {peak_rss_mib(server.process.pid):.0f} MiB")
            scenarios: list[tuple[str, Callable[[int], Iterator[bytes]]]] = [
                ("2 x 100,000 readings", readings_stream),
                ("2 x 15 MiB padded messages", padded_stream),
            ]
            first = 0
            for name, stream in scenarios:
                for compression in (grpc.Compression.NoCompression, grpc.Compression.Gzip):
                    before = peak_rss_mib(server.process.pid)
                    began = time.monotonic()
                    results = concurrently(call, metadata, stream, compression, first)
                    first += 400_000
                    after = peak_rss_mib(server.process.pid)
                    print(
                        f"{name}, {compression.name}: {results} in "
                        f"{time.monotonic() - began:.1f} s, peak RSS {after:.0f} MiB "
                        f"(+{after - before:.0f})"
                    )
    finally:
        server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
