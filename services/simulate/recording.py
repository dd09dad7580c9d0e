"""A fleet's readings recorded as encoded IngestReadings messages, so that a load can be sent
without generating or encoding anything while it is timed (`energy-ingest simulate --output`).

The file is a sequence of records, each one byte naming the service (b"M": MeterService,
b"V": VehicleService), the message's length as 4 bytes big-endian, and the encoded
IngestReadingsRequest. Messages follow the fleet's minutes; each holds up to `batch_size`
readings of one service."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from services.simulate.feed import meter_request, vehicle_request
from services.simulate.fleet import Fleet, MeterRow, VehicleRow

METER, VEHICLE = b"M", b"V"
_HEADER = struct.Struct(">cI")


def record(fleet: Fleet, out: BinaryIO, batch_size: int = 500) -> tuple[int, int]:
    """Writes the fleet's readings; returns (meter readings, vehicle readings) written."""
    meters: list[MeterRow] = []
    vehicles: list[VehicleRow] = []
    counts = [0, 0]

    def flush_meters() -> None:
        data = meter_request(meters).SerializeToString()
        out.write(_HEADER.pack(METER, len(data)) + data)
        counts[0] += len(meters)
        meters.clear()

    def flush_vehicles() -> None:
        data = vehicle_request(vehicles).SerializeToString()
        out.write(_HEADER.pack(VEHICLE, len(data)) + data)
        counts[1] += len(vehicles)
        vehicles.clear()

    for minute in fleet.minutes():
        for meter_row in minute.meter_rows:
            meters.append(meter_row)
            if len(meters) == batch_size:
                flush_meters()
        for vehicle_row in minute.vehicle_rows:
            vehicles.append(vehicle_row)
            if len(vehicles) == batch_size:
                flush_vehicles()
    if meters:
        flush_meters()
    if vehicles:
        flush_vehicles()
    return counts[0], counts[1]


def records(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(service byte, encoded message) of each record of a recording, in order."""
    with path.open("rb") as source:
        yield from read_records(source, str(path))


def read_records(source: BinaryIO, name: str = "recording") -> Iterator[tuple[bytes, bytes]]:
    """The records of an open binary file (see `records`); `name` is what errors call it."""
    while header := source.read(_HEADER.size):
        if len(header) < _HEADER.size:
            raise ValueError(f"{name}: a record header is cut short")
        kind, length = _HEADER.unpack(header)
        if kind not in (METER, VEHICLE):
            raise ValueError(f"{name}: unknown record kind {kind!r}")
        data = source.read(length)
        if len(data) < length:
            raise ValueError(f"{name}: a record is cut short")
        yield kind, data
