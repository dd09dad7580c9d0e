"""What a valid MeterReading is, and the fast path that checks a batch of them."""

from __future__ import annotations

from energy.meter.v1.meter_pb2 import MeterReading

from services.common.validation import (
    Bounds,
    KnownIds,
    ReadingRules,
    batch_validator,
)

# The one place that holds each bound: the explanations and the fast path both read them here
# (the proto comments say the same; a unit test holds them to it).
KWH_CONSUMED_AC = Bounds("kwh_consumed_ac", 0.0, 1000.0, "kWh")
VOLTAGE = Bounds("voltage", 0.0, 2000.0, "V", low_open=True)

RULES = ReadingRules(id_fields=("meter_id",), bounds=(KWH_CONSUMED_AC, VOLTAGE))

_known = KnownIds().valid
_KWH_LOW, _KWH_HIGH = KWH_CONSUMED_AC.low, KWH_CONSUMED_AC.high
_VOLTS_ABOVE, _VOLTS_HIGH = VOLTAGE.low, VOLTAGE.high  # low_open: voltage > low


def _row(reading: MeterReading, micros: int) -> tuple[str, int, float, float] | None:
    """(meter_id, read_us, kwh_consumed_ac, voltage), the staging table's column order; None
    when a value is out of bounds. NaN fails every comparison, so non-finite numbers too."""
    kwh = reading.kwh_consumed_ac
    voltage = reading.voltage
    meter_id = reading.meter_id
    if _KWH_LOW <= kwh <= _KWH_HIGH and _VOLTS_ABOVE < voltage <= _VOLTS_HIGH and _known(meter_id):
        return (meter_id, micros, kwh, voltage)
    return None


validate_batch = batch_validator(RULES, _row)
