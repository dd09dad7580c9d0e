"""What a valid VehicleReading is, and the fast path that checks a batch of them."""

from __future__ import annotations

from energy.vehicle.v1.vehicle_pb2 import VehicleReading

from services.common.validation import Bounds, KnownIds, ReadingRules, batch_validator

# The one place that holds each bound: the explanations and the fast path both read them here
# (the proto comments say the same; a unit test holds them to it).
SOC = Bounds("soc", 0.0, 100.0, "%")
KWH_DELIVERED_DC = Bounds("kwh_delivered_dc", 0.0, 1000.0, "kWh")
KWH_DELIVERED_DC_REGISTER = Bounds("kwh_delivered_dc_register", 0.0, 1e9, "kWh")
BATTERY_TEMP = Bounds("battery_temp", -60.0, 120.0, "°C")

RULES = ReadingRules(
    id_fields=("vehicle_id", "charger_id"),
    bounds=(SOC, KWH_DELIVERED_DC, KWH_DELIVERED_DC_REGISTER, BATTERY_TEMP),
    exclusive=(("kwh_delivered_dc", "kwh_delivered_dc_register"),),
)

_known = KnownIds().valid
_SOC_LOW, _SOC_HIGH = SOC.low, SOC.high
_KWH_LOW, _KWH_HIGH = KWH_DELIVERED_DC.low, KWH_DELIVERED_DC.high
_REGISTER_LOW, _REGISTER_HIGH = KWH_DELIVERED_DC_REGISTER.low, KWH_DELIVERED_DC_REGISTER.high
_TEMP_LOW, _TEMP_HIGH = BATTERY_TEMP.low, BATTERY_TEMP.high

VehicleRow = tuple[str, int, str, float | None, float | None, float | None, float | None, int]


def _row(reading: VehicleReading, micros: int, index: int) -> VehicleRow | None:
    """(vehicle_id, read_us, charger_id, soc, kwh_delivered_dc, kwh_delivered_dc_register,
    battery_temp, index), the staging table's column order, an unset optional field as None;
    None when a value is out of bounds or both energy forms are set (NaN fails every
    comparison). An unset optional field reads 0.0: presence is asked only then."""
    vehicle_id = reading.vehicle_id
    charger_id = reading.charger_id
    if not (_known(vehicle_id) and _known(charger_id)):
        return None
    soc: float | None = reading.soc
    if soc == 0.0 and not reading.HasField("soc"):
        soc = None
    elif not _SOC_LOW <= soc <= _SOC_HIGH:  # type: ignore[operator]
        return None
    temp: float | None = reading.battery_temp
    if temp == 0.0 and not reading.HasField("battery_temp"):
        temp = None
    elif not _TEMP_LOW <= temp <= _TEMP_HIGH:  # type: ignore[operator]
        return None
    kwh: float | None = reading.kwh_delivered_dc
    register: float | None = reading.kwh_delivered_dc_register
    if register == 0.0 and not reading.HasField("kwh_delivered_dc_register"):
        if _KWH_LOW <= kwh <= _KWH_HIGH:  # type: ignore[operator]
            return (vehicle_id, micros, charger_id, soc, kwh, None, temp, index)
    elif (
        kwh == 0.0
        and not reading.HasField("kwh_delivered_dc")
        and _REGISTER_LOW <= register <= _REGISTER_HIGH  # type: ignore[operator]
    ):
        return (vehicle_id, micros, charger_id, soc, None, register, temp, index)
    return None


validate_batch = batch_validator(RULES, _row)
