"""What a valid VehicleReading is, and the fast path that checks a batch of them."""

from __future__ import annotations

from collections.abc import Sequence

from energy.vehicle.v1.vehicle_pb2 import VehicleReading

from services.common.validation import (
    Bounds,
    KnownIds,
    ReadingRules,
    Rejection,
    TimeWindow,
    explain,
)

RULES = ReadingRules(
    id_fields=("vehicle_id", "charger_id"),
    bounds=(
        Bounds("soc", 0.0, 100.0, "%"),
        Bounds("kwh_delivered_dc", 0.0, 1000.0, "kWh"),
        Bounds("battery_temp", -60.0, 120.0, "°C"),
    ),
)

_known_ids = KnownIds()

# (vehicle_id, read_us, charger_id, soc, kwh_delivered_dc, battery_temp): staging column order.
VehicleRow = tuple[str, int, str, float, float, float]


def validate_batch(
    readings: Sequence[VehicleReading], first_index: int, window: TimeWindow
) -> tuple[list[VehicleRow], list[Rejection]]:
    rows: list[VehicleRow] = []
    rejections: list[Rejection] = []
    earliest, latest, known = window.earliest, window.latest, _known_ids.valid
    for offset, reading in enumerate(readings):
        ts = reading.timestamp
        nanos = ts.nanos
        micros = ts.seconds * 1_000_000 + nanos // 1000
        soc = reading.soc
        kwh = reading.kwh_delivered_dc
        temp = reading.battery_temp
        vehicle_id = reading.vehicle_id
        charger_id = reading.charger_id
        # NaN fails every comparison, so one chain also refuses non-finite numbers.
        if (
            0.0 <= soc <= 100.0
            and 0.0 <= kwh <= 1000.0
            and -60.0 <= temp <= 120.0
            and earliest <= micros <= latest
            and 0 <= nanos < 1_000_000_000
            and known(vehicle_id)
            and known(charger_id)
        ):
            rows.append((vehicle_id, micros, charger_id, soc, kwh, temp))
        else:
            rejections.append(explain(RULES, reading, first_index + offset, window))
    return rows, rejections
