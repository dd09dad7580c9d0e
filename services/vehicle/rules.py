"""What a valid VehicleReading is, and the fast path that checks a batch of them."""

from __future__ import annotations

from energy.vehicle.v1.vehicle_pb2 import VehicleReading

from services.common.validation import (
    Bounds,
    KnownIds,
    ReadingRules,
    batch_validator,
)

# The one place that holds each bound: the explanations and the fast path both read them here
# (the proto comments say the same; a unit test holds them to it).
SOC = Bounds("soc", 0.0, 100.0, "%")
KWH_DELIVERED_DC = Bounds("kwh_delivered_dc", 0.0, 1000.0, "kWh")
BATTERY_TEMP = Bounds("battery_temp", -60.0, 120.0, "°C")

RULES = ReadingRules(
    id_fields=("vehicle_id", "charger_id"), bounds=(SOC, KWH_DELIVERED_DC, BATTERY_TEMP)
)

_known = KnownIds().valid
_SOC_LOW, _SOC_HIGH = SOC.low, SOC.high
_KWH_LOW, _KWH_HIGH = KWH_DELIVERED_DC.low, KWH_DELIVERED_DC.high
_TEMP_LOW, _TEMP_HIGH = BATTERY_TEMP.low, BATTERY_TEMP.high

VehicleRow = tuple[str, int, str, float, float, float]


def _row(reading: VehicleReading, micros: int) -> VehicleRow | None:
    """(vehicle_id, read_us, charger_id, soc, kwh_delivered_dc, battery_temp), the staging
    table's column order; None when a value is out of bounds (NaN fails every comparison)."""
    soc = reading.soc
    kwh = reading.kwh_delivered_dc
    temp = reading.battery_temp
    vehicle_id = reading.vehicle_id
    charger_id = reading.charger_id
    if (
        _SOC_LOW <= soc <= _SOC_HIGH
        and _KWH_LOW <= kwh <= _KWH_HIGH
        and _TEMP_LOW <= temp <= _TEMP_HIGH
        and _known(vehicle_id)
        and _known(charger_id)
    ):
        return (vehicle_id, micros, charger_id, soc, kwh, temp)
    return None


validate_batch = batch_validator(RULES, _row)
