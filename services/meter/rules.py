"""What a valid MeterReading is, and the fast path that checks a batch of them."""

from __future__ import annotations

from collections.abc import Sequence

from energy.meter.v1.meter_pb2 import MeterReading

from services.common.validation import (
    Bounds,
    KnownIds,
    ReadingRules,
    Rejection,
    TimeWindow,
    explain,
)

RULES = ReadingRules(
    id_fields=("meter_id",),
    bounds=(
        Bounds("kwh_consumed_ac", 0.0, 1000.0, "kWh"),
        Bounds("voltage", 0.0, 2000.0, "V", low_open=True),
    ),
)

_known_ids = KnownIds()

# (meter_id, read_us, kwh_consumed_ac, voltage): the staging table's column order.
MeterRow = tuple[str, int, float, float]


def validate_batch(
    readings: Sequence[MeterReading], first_index: int, window: TimeWindow
) -> tuple[list[MeterRow], list[Rejection]]:
    rows: list[MeterRow] = []
    rejections: list[Rejection] = []
    earliest, latest, known = window.earliest, window.latest, _known_ids.valid
    for offset, reading in enumerate(readings):
        ts = reading.timestamp
        nanos = ts.nanos
        micros = ts.seconds * 1_000_000 + nanos // 1000
        kwh = reading.kwh_consumed_ac
        voltage = reading.voltage
        meter_id = reading.meter_id
        # NaN fails every comparison, so one chain also refuses non-finite numbers.
        if (
            0.0 <= kwh <= 1000.0
            and 0.0 < voltage <= 2000.0
            and earliest <= micros <= latest
            and 0 <= nanos < 1_000_000_000
            and known(meter_id)
        ):
            rows.append((meter_id, micros, kwh, voltage))
        else:
            rejections.append(explain(RULES, reading, first_index + offset, window))
    return rows, rejections
