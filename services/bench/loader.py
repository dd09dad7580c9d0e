"""The benchmark's load generator, run as its own process so that its CPU is counted apart from
the services': it reads a recording (`energy-ingest simulate --output`) into memory, then sends
its messages as they are, over `--streams` concurrent IngestReadings streams per service, and
prints one JSON line: readings accepted, duplicates and rejected, seconds from the first message
to the last acknowledgement, readings/s, and its own CPU seconds while sending.

Usage: python -m services.bench.loader FILE --meter-target HOST:PORT --vehicle-target HOST:PORT
       [--streams 8]"""

from __future__ import annotations

import argparse
import json
import resource
import threading
import time
from pathlib import Path

import grpc
from energy.meter.v1 import meter_service_pb2
from energy.vehicle.v1 import vehicle_service_pb2

from services.simulate.recording import METER, VEHICLE, records

_METHODS = {
    METER: ("/energy.meter.v1.MeterService/IngestReadings", meter_service_pb2),
    VEHICLE: ("/energy.vehicle.v1.VehicleService/IngestReadings", vehicle_service_pb2),
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def send(path: Path, targets: dict[bytes, str], streams: int) -> dict[str, float]:
    messages: dict[bytes, list[bytes]] = {METER: [], VEHICLE: []}
    for kind, data in records(path):
        messages[kind].append(data)
    if not messages[METER] and not messages[VEHICLE]:
        raise ValueError(f"{path}: the recording holds no message")
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    lock = threading.Lock()
    channels = {kind: grpc.insecure_channel(target) for kind, target in targets.items()}
    failures: list[BaseException] = []

    def stream(kind: bytes, share: list[bytes]) -> None:
        method, module = _METHODS[kind]
        call = channels[kind].stream_unary(
            method,
            request_serializer=None,  # the recorded bytes go as they are
            response_deserializer=module.IngestReadingsResponse.FromString,
        )
        try:
            response = call(iter(share), timeout=3600)
        except grpc.RpcError as error:
            with lock:
                failures.append(error)
            return
        with lock:
            totals["accepted"] += response.accepted
            totals["duplicates"] += response.duplicates
            totals["rejected"] += response.rejected

    threads = [
        threading.Thread(target=stream, args=(kind, messages[kind][k::streams]))
        for kind in (METER, VEHICLE)
        for k in range(streams)
        if messages[kind][k::streams]
    ]
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    for channel in channels.values():
        channel.close()
    if failures:
        first = failures[0]
        reason = (
            f"{first.code().name}: {first.details()}" if isinstance(first, grpc.Call) else first
        )
        raise SystemExit(
            f"loader: {len(failures)} of {len(threads)} streams failed, e.g. {reason}; the "
            f"others committed {totals['accepted']} readings"
        )
    readings = totals["accepted"] + totals["duplicates"] + totals["rejected"]
    return {
        **totals,
        "seconds": seconds,
        "per_s": readings / seconds,
        "cpu_seconds": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("recording", type=Path, help="a file from energy-ingest simulate --output")
    parser.add_argument("--meter-target", required=True, help="MeterService, HOST:PORT")
    parser.add_argument("--vehicle-target", required=True, help="VehicleService, HOST:PORT")
    parser.add_argument(
        "--streams", type=int, default=8, help="concurrent IngestReadings streams per service"
    )
    args = parser.parse_args()
    if args.streams < 1:
        parser.error(f"--streams must be at least 1, got {args.streams}")
    try:
        result = send(
            args.recording, {METER: args.meter_target, VEHICLE: args.vehicle_target}, args.streams
        )
    except (OSError, ValueError) as error:
        raise SystemExit(f"loader: {error}") from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
