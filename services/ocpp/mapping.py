"""OCPP meter values → MeterService readings: pure functions, no I/O.

Payloads are as the `ocpp` library hands them to a handler: keys in snake_case (`sampled_value`,
`unit_of_measure`), values as sent (strings in 1.6, numbers in 2.0.1). The MeterValue entries
of one message that share a timestamp are one sample (some chargers send the Transaction.Begin
value and the periodic one, or the voltage, as entries of their own), and one sample becomes at
most one reading:

- `Energy.Active.Import.Register` (the default measurand when none is named) → the register
  in kWh (`kwh_consumed_ac_register`); `Energy.Active.Import.Interval` → the interval energy
  (`kwh_consumed_ac`). The unit is read case-insensitively: Wh (OCPP's default), kWh and MWh
  are converted, and 2.0.1's `unit_of_measure.multiplier` applied; a value in any other unit
  (varh, W, …) is not active energy and is skipped. A sample with both forms keeps the
  register (a reading carries one form).
- `Voltage` → `voltage` in V (kV converted, the multiplier applied): the phase-to-neutral
  values averaged (L1-N, L2-N, L3-N, or L1, L2, L3 as 1.6 chargers often name them), else the
  line-to-line ones averaged and divided by √3, else a value without a phase; unknown (None)
  when absent.
- The same measurand under several contexts (a periodic value beside a Transaction.Begin one in
  the same message) → the `Sample.Periodic` one, else `Sample.Clock`, else the first sent; never
  a 0 from another context in place of a periodic value.
- A value for the whole meter (no phase) wins over per-phase energy; per-phase energy alone is
  summed over the three lines, each line's value taken as L1 or else L1-N (the same energy
  named two ways is counted once; N is not a line). Values measured at the EV (`location` EV)
  are not the charger's AC and are skipped; 1.6 signed values (`format` SignedData, whose value
  is the signed blob) are skipped, the plain value sent beside them used (signature checks are
  out of scope), and 2.0.1's `signed_meter_value` is ignored while its plain value is used.
- A sample without energy gives no reading: voltage alone cannot say how much energy was
  taken, and an absent energy would read as 0.

Charge point ids are case-insensitive in OCPP: the canonical form is upper case, and the meter id
is `<CHARGEPOINTID>:<connector or EVSE id>`, or `<CHARGEPOINTID>` for connector / EVSE 0 (the
whole station)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

REGISTER = "Energy.Active.Import.Register"
INTERVAL = "Energy.Active.Import.Interval"
VOLTAGE = "Voltage"
_CONTEXT_PREFERENCE = ("Sample.Periodic", "Sample.Clock")
_LINES = ("L1", "L2", "L3")
_PHASE_TO_NEUTRAL = (("L1-N", "L1"), ("L2-N", "L2"), ("L3-N", "L3"))
_LINE_TO_LINE = ("L1-L2", "L2-L3", "L3-L1")
# Units of active energy and of voltage, lower-cased, and their ratio to kWh / V as
# (multiplier, divisor): 350 Wh is 350 / 1000 = 0.35 kWh exactly as written, not 350 * 0.001.
_ENERGY_UNITS = {"wh": (1.0, 1000.0), "kwh": (1.0, 1.0), "mwh": (1000.0, 1.0)}
_VOLTAGE_UNITS = {"v": (1.0, 1.0), "kv": (1000.0, 1.0)}


@dataclass(frozen=True)
class Reading:
    """One MeterService reading: micros since the epoch, kWh, volts; None where unknown.
    `timestamp_missing` says the receive time stood in for an absent timestamp."""

    meter_id: str
    timestamp_us: int
    kwh_consumed_ac: float | None
    kwh_consumed_ac_register: float | None
    voltage: float | None
    timestamp_missing: bool = False


def canonical_charge_point_id(charge_point_id: str) -> str:
    return charge_point_id.upper()


def meter_id(charge_point_id: str, connector_id: int | None) -> str:
    """`<CP>:<connector>`; the station itself (connector/EVSE 0 or none) is `<CP>`."""
    canonical = canonical_charge_point_id(charge_point_id)
    return canonical if not connector_id else f"{canonical}:{connector_id}"


def timestamp_micros(text: str) -> int:
    """RFC 3339 / ISO 8601 with an offset (`Z`, `+10:00`) → micros since the epoch (UTC).
    Raises ValueError for a time without an offset (its zone would be a guess)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return round(moment.timestamp() * 1_000_000)


def _scaled(
    value: float, sample: Mapping[str, Any], units: Mapping[str, tuple[float, float]], default: str
) -> float | None:
    """`value` in the base unit of `units` (kWh, V): its unit (case-insensitive; `default` when
    none) and 2.0.1's multiplier applied; None for a unit `units` does not hold. Raises
    ValueError when the multiplier makes the value unrepresentable."""
    unit_of_measure = sample.get("unit_of_measure") or {}
    unit = str(sample.get("unit") or unit_of_measure.get("unit") or default).lower()
    if unit not in units:
        return None
    try:
        value *= 10.0 ** int(unit_of_measure.get("multiplier", 0) or 0)
    except (OverflowError, TypeError, ValueError):
        raise ValueError(f"unit multiplier {unit_of_measure.get('multiplier')!r}") from None
    multiplier, divisor = units[unit]
    scaled = value * multiplier / divisor
    if not math.isfinite(scaled):
        raise ValueError(f"unit multiplier {unit_of_measure.get('multiplier')!r}")
    return scaled


def _kwh(value: float, sample: Mapping[str, Any]) -> float | None:
    return _scaled(value, sample, _ENERGY_UNITS, "Wh")


def _volts(value: float, sample: Mapping[str, Any]) -> float | None:
    return _scaled(value, sample, _VOLTAGE_UNITS, "V")


def _value(sample: Mapping[str, Any]) -> float | None:
    if sample.get("format") == "SignedData":
        return None
    try:
        value = float(sample["value"])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _preferred(samples: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The samples of one measurand under the preferred context (see the module docstring)."""
    contexts = [sample.get("context") or "Sample.Periodic" for sample in samples]
    for wanted in _CONTEXT_PREFERENCE:
        if wanted in contexts:
            return [s for s, c in zip(samples, contexts, strict=True) if c == wanted]
    return [s for s, c in zip(samples, contexts, strict=True) if c == contexts[0]]


def _energy(samples: Sequence[Mapping[str, Any]]) -> float | None:
    """kWh of one energy measurand: the whole meter's value, else the lines summed."""
    chosen = [s for s in _preferred(samples) if _kwh(0.0, s) is not None]  # energy units only
    for sample in (s for s in chosen if not s.get("phase")):
        value = _value(sample)
        if value is not None:
            return _kwh(value, sample)
    lines = []
    for names in _PHASE_TO_NEUTRAL:  # each line once, as "L1" or else "L1-N"
        for name in reversed(names):
            known = [
                (s, v) for s in chosen if s.get("phase") == name if (v := _value(s)) is not None
            ]
            if known:
                lines.append(_kwh(known[0][1], known[0][0]))
                break
    values = [v for v in lines if v is not None]
    return sum(values) if values else None


def _voltage(samples: Sequence[Mapping[str, Any]]) -> float | None:
    chosen = _preferred(samples)

    def volts(phases: Iterable[str]) -> list[float]:
        wanted = set(phases)
        found = [(s, _value(s)) for s in chosen if s.get("phase") in wanted]
        return [v for s, value in found if value is not None if (v := _volts(value, s)) is not None]

    neutral = volts(name for names in _PHASE_TO_NEUTRAL for name in names)
    if neutral:
        return sum(neutral) / len(neutral)
    between_lines = volts(_LINE_TO_LINE)
    if between_lines:
        return sum(between_lines) / len(between_lines) / math.sqrt(3)
    plain = [
        v
        for s in chosen
        if not s.get("phase")
        if (value := _value(s)) is not None
        if (v := _volts(value, s)) is not None
    ]
    return plain[0] if plain else None


def _samples(
    meter_values: Iterable[Mapping[str, Any]],
) -> list[tuple[Any, list[Mapping[str, Any]]]]:
    """The sampled values of the entries grouped by timestamp (the same instant written alike or
    not), in the order the timestamps first came; an entry without one is a group of its own."""
    groups: dict[Any, tuple[Any, list[Mapping[str, Any]]]] = {}
    for position, meter_value in enumerate(meter_values):
        text = meter_value.get("timestamp")
        key = timestamp_micros(text) if text else ("missing", position)
        groups.setdefault(key, (text, []))[1].extend(meter_value.get("sampled_value") or [])
    return list(groups.values())


def readings(
    charge_point_id: str,
    connector_id: int | None,
    meter_values: Iterable[Mapping[str, Any]],
    received_us: int,
) -> list[Reading]:
    """The readings of a MeterValues (1.6: connector_id) or a TransactionEvent / MeterValues
    (2.0.1: the EVSE id), in the order sent. `received_us` stands in for an absent timestamp.
    Raises ValueError for a timestamp without an offset or an unrepresentable multiplier."""
    meter = meter_id(charge_point_id, connector_id)
    found: list[Reading] = []
    for text, sampled in _samples(meter_values):
        by_measurand: dict[str, list[Mapping[str, Any]]] = {}
        for sample in sampled:
            if sample.get("location") == "EV":
                continue
            by_measurand.setdefault(sample.get("measurand") or REGISTER, []).append(sample)
        register = _energy(by_measurand[REGISTER]) if REGISTER in by_measurand else None
        interval = _energy(by_measurand[INTERVAL]) if INTERVAL in by_measurand else None
        if register is None and interval is None:
            continue
        found.append(
            Reading(
                meter_id=meter,
                timestamp_us=received_us if not text else timestamp_micros(text),
                kwh_consumed_ac=None if register is not None else interval,
                kwh_consumed_ac_register=register,
                voltage=_voltage(by_measurand[VOLTAGE]) if VOLTAGE in by_measurand else None,
                timestamp_missing=not text,
            )
        )
    return found
