"""What a valid MeterReading is, and the fast path that checks a batch of them."""

from __future__ import annotations

from energy.meter.v1.meter_pb2 import MeterReading

from services.common.validation import Bounds, KnownIds, ReadingRules, batch_validator

# The one place that holds each bound: the explanations and the fast path both read them here
# (the proto comments say the same; a unit test holds them to it).
KWH_CONSUMED_AC = Bounds("kwh_consumed_ac", 0.0, 1000.0, "kWh")
KWH_CONSUMED_AC_REGISTER = Bounds("kwh_consumed_ac_register", 0.0, 1e9, "kWh")
VOLTAGE = Bounds("voltage", 0.0, 2000.0, "V", low_open=True)

RULES = ReadingRules(
    id_fields=("meter_id",),
    bounds=(KWH_CONSUMED_AC, KWH_CONSUMED_AC_REGISTER, VOLTAGE),
    exclusive=(("kwh_consumed_ac", "kwh_consumed_ac_register"),),
)

_known = KnownIds().valid
_KWH_LOW, _KWH_HIGH = KWH_CONSUMED_AC.low, KWH_CONSUMED_AC.high
_REGISTER_LOW, _REGISTER_HIGH = KWH_CONSUMED_AC_REGISTER.low, KWH_CONSUMED_AC_REGISTER.high
_VOLTS_ABOVE, _VOLTS_HIGH = VOLTAGE.low, VOLTAGE.high  # low_open: voltage > low

MeterRow = tuple[str, int, float | None, float | None, float | None, int]


def _row(reading: MeterReading, micros: int, index: int) -> MeterRow | None:
    """(meter_id, read_us, kwh_consumed_ac, kwh_consumed_ac_register, voltage, index), the
    staging table's column order, the energy form not sent and an unreported voltage as None;
    None when a value is out of bounds or both forms are set. NaN fails every comparison, so
    non-finite numbers too.

    An unset optional field reads 0.0: presence is asked only then (HasField is the costly
    part), so an interval reading with energy pays one check, a register reading two."""
    meter_id = reading.meter_id
    voltage: float | None = reading.voltage
    if voltage == 0.0 and not reading.HasField("voltage"):
        voltage = None  # not reported: unknown
    elif not _VOLTS_ABOVE < voltage <= _VOLTS_HIGH:  # type: ignore[operator]
        return None
    if not _known(meter_id):
        return None
    kwh: float | None = reading.kwh_consumed_ac
    register: float | None = reading.kwh_consumed_ac_register
    if register == 0.0 and not reading.HasField("kwh_consumed_ac_register"):
        register = None
    elif kwh == 0.0 and not reading.HasField("kwh_consumed_ac"):
        kwh = None
    if register is None:
        if _KWH_LOW <= kwh <= _KWH_HIGH:  # type: ignore[operator]
            return (meter_id, micros, kwh, None, voltage, index)
    elif kwh is None and _REGISTER_LOW <= register <= _REGISTER_HIGH:
        return (meter_id, micros, None, register, voltage, index)
    return None


validate_batch = batch_validator(RULES, _row)
