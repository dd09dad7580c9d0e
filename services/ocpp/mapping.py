"""OCPP meter values → MeterService readings: pure functions, no I/O.

Payloads are as the `ocpp` library hands them to a handler: keys in snake_case (`sampled_value`,
`unit_of_measure`), values as sent (strings in 1.6, numbers in 2.0.1). One MeterValue (a
timestamp and its sampled values) becomes at most one reading:

- `Energy.Active.Import.Register` (the default measurand when none is named) → the register
  in kWh (`kwh_consumed_ac_register`); `Energy.Active.Import.Interval` → the interval energy
  (`kwh_consumed_ac`). Wh (OCPP's default unit) and kWh are converted, and 2.0.1's
  `unit_of_measure.multiplier` applied. A sample with both forms keeps the register (a reading
  carries one form).
- `Voltage` → `voltage`: the phase-to-neutral values (L1-N, L2-N, L3-N) averaged, or a value
  without a phase; unknown (None) when absent.
- The same measurand under several contexts (a periodic value beside a Transaction.Begin one in
  the same message) → the `Sample.Periodic` one, else `Sample.Clock`, else the first sent; never
  a 0 from another context in place of a periodic value.
- A value for the whole meter (no phase) wins over per-phase energy; per-phase energy alone is
  summed over L1, L2 and L3 (L1-N and N are not added again). Values measured at the EV
  (`location` EV) are not the charger's AC and are skipped; 1.6 signed values (`format`
  SignedData) are skipped (signature checks are out of scope), and 2.0.1's
  `signed_meter_value` is ignored while its plain value is used.
- A MeterValue without energy gives no reading: voltage alone cannot say how much energy was
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
_PHASE_TO_NEUTRAL = ("L1-N", "L2-N", "L3-N")
_LINES = ("L1", "L2", "L3")


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


def _kwh(value: float, sample: Mapping[str, Any]) -> float:
    """Raises ValueError when the multiplier makes the value unrepresentable."""
    unit_of_measure = sample.get("unit_of_measure") or {}
    unit = sample.get("unit") or unit_of_measure.get("unit") or "Wh"
    try:
        value *= 10.0 ** int(unit_of_measure.get("multiplier", 0) or 0)
    except (OverflowError, TypeError, ValueError):
        raise ValueError(f"unit multiplier {unit_of_measure.get('multiplier')!r}") from None
    kwh = value / 1000.0 if unit == "Wh" else value
    if not math.isfinite(kwh):
        raise ValueError(f"unit multiplier {unit_of_measure.get('multiplier')!r}")
    return kwh


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
    """kWh of one energy measurand: the whole meter's value, else the phases summed."""
    chosen = _preferred(samples)
    whole = [s for s in chosen if not s.get("phase")]
    for sample in whole or []:
        value = _value(sample)
        if value is not None:
            return _kwh(value, sample)
    # Only the line conductors add up to the total (L1-N is the same energy again, N not one).
    phases = [(s, _value(s)) for s in chosen if s.get("phase") in _LINES]
    values = [_kwh(v, s) for s, v in phases if v is not None]
    return sum(values) if values else None


def _voltage(samples: Sequence[Mapping[str, Any]]) -> float | None:
    chosen = _preferred(samples)
    neutral = [_value(s) for s in chosen if s.get("phase") in _PHASE_TO_NEUTRAL]
    known = [v for v in neutral if v is not None]
    if known:
        return sum(known) / len(known)
    plain = [_value(s) for s in chosen if not s.get("phase")]
    return next((v for v in plain if v is not None), None)


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
    for meter_value in meter_values:
        by_measurand: dict[str, list[Mapping[str, Any]]] = {}
        for sample in meter_value.get("sampled_value") or []:
            if sample.get("location") == "EV":
                continue
            by_measurand.setdefault(sample.get("measurand") or REGISTER, []).append(sample)
        register = _energy(by_measurand[REGISTER]) if REGISTER in by_measurand else None
        interval = _energy(by_measurand[INTERVAL]) if INTERVAL in by_measurand else None
        if register is None and interval is None:
            continue
        text = meter_value.get("timestamp")
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
