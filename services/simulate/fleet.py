"""A deterministic fleet of chargers and vehicles (same seed, same readings).

Model: every charger reports every minute of the day; every vehicle reports every minute while
it is plugged in. Each charger's day is cut into sessions of 20 minutes to 4 hours on a
10-minute grid; at every cut the vehicles of the chargers cut at that moment change places (and
some vehicles drive off and others arrive), so chargers are shared over the day and vehicles
move between them. A plugged vehicle charges at the charger's power until it reaches its target
state of charge: the charger draws AC = DC / efficiency, with its own efficiency between 0.85
and 0.95. With as many vehicles as chargers every vehicle is plugged in all day, which gives
the scale floor: 10,000 + 10,000 entities x 1,440 minutes = 14.4M readings a day per stream.
Clocks differ by up to 20 s per device, inside the 30 s correlation tolerance."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

MINUTE_US = 60_000_000
GRID_MINUTES = 10
AWAY = -1

# (meter_id, read micros, kwh_consumed_ac, voltage): the meter staging order.
MeterRow = tuple[str, int, float, float]
# (vehicle_id, read micros, charger_id, soc, kwh_delivered_dc, battery_temp).
VehicleRow = tuple[str, int, str, float, float, float]


@dataclass(frozen=True)
class FleetConfig:
    chargers: int = 10_000
    vehicles: int = 10_000
    minutes: int = 1_440
    start_us: int = 1_770_681_600 * 1_000_000  # 2026-02-10T00:00:00Z
    seed: int = 1


@dataclass
class Minute:
    index: int
    meter_rows: list[MeterRow]
    vehicle_rows: list[VehicleRow]


def meter_id(index: int) -> str:
    return f"CHG-{index:05d}"


def vehicle_id(index: int) -> str:
    return f"VH-{index:05d}"


class Fleet:
    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        rng = random.Random(config.seed)
        self._rng = rng
        n, m = config.chargers, config.vehicles
        self.charger_ids = [meter_id(c) for c in range(n)]
        self.vehicle_ids = [vehicle_id(v) for v in range(m)]
        self.efficiency = [rng.uniform(0.85, 0.95) for _ in range(n)]
        self.voltage = [rng.choice((230.0, 400.0, 480.0)) for _ in range(n)]
        self.power_kw = [rng.choice((7.4, 11.0, 22.0)) for _ in range(n)]
        self.charger_offset_us = [rng.randrange(0, 20_000_000) for _ in range(n)]
        self.capacity_kwh = [rng.choice((50.0, 60.0, 75.0, 100.0)) for _ in range(m)]
        self.vehicle_offset_us = [rng.randrange(0, 20_000_000) for _ in range(m)]
        self.soc = [rng.uniform(10.0, 60.0) for _ in range(m)]
        self.target_soc = [rng.uniform(80.0, 100.0) for _ in range(m)]
        self.temp = [rng.uniform(15.0, 25.0) for _ in range(m)]
        # Slots 0..n-1 are chargers; further slots hold the vehicles that are away.
        slots = max(n, m)
        occupant = list(range(m)) + [AWAY] * (slots - m)
        rng.shuffle(occupant)
        self.occupant = occupant
        # Minutes (on the grid) at which each slot's current session ends.
        self._cuts: dict[int, list[int]] = {}
        for slot in range(slots):
            self._schedule_cut(slot, 0)

    def _schedule_cut(self, slot: int, now: int) -> None:
        length = self._rng.randrange(2, 25) * GRID_MINUTES  # 20 minutes to 4 hours
        self._cuts.setdefault(now + length, []).append(slot)

    def _rotate(self, minute: int) -> None:
        """The occupants of the slots cut at this minute change places."""
        slots = self._cuts.pop(minute, [])
        if len(slots) > 1:
            occupants = [self.occupant[s] for s in slots]
            shift = self._rng.randrange(1, len(slots))
            for i, slot in enumerate(slots):
                vehicle = occupants[(i + shift) % len(slots)]
                self.occupant[slot] = vehicle
                if vehicle != AWAY:  # driving here used some charge
                    self.soc[vehicle] = max(5.0, self.soc[vehicle] - self._rng.uniform(5.0, 40.0))
                    self.target_soc[vehicle] = self._rng.uniform(80.0, 100.0)
        for slot in slots:
            self._schedule_cut(slot, minute)

    def minutes(self) -> Iterator[Minute]:
        """Each minute's readings, in time order; the fleet's state advances as you iterate."""
        config = self.config
        rng_uniform = self._rng.uniform
        ids, vids = self.charger_ids, self.vehicle_ids
        for minute in range(config.minutes):
            self._rotate(minute)
            base = config.start_us + minute * MINUTE_US
            meters: list[MeterRow] = []
            vehicles: list[VehicleRow] = []
            for c in range(config.chargers):
                v = self.occupant[c]
                ac = 0.0
                if v != AWAY:
                    soc = self.soc[v]
                    dc = 0.0
                    if soc < self.target_soc[v]:
                        ac = self.power_kw[c] / 60.0
                        dc = ac * self.efficiency[c]
                        soc = min(100.0, soc + 100.0 * dc / self.capacity_kwh[v])
                        self.soc[v] = soc
                        self.temp[v] += (38.0 - self.temp[v]) * 0.02  # warms while charging
                    else:
                        self.temp[v] += (20.0 - self.temp[v]) * 0.02  # cools when idle
                    vehicles.append(
                        (vids[v], base + self.vehicle_offset_us[v], ids[c], soc, dc, self.temp[v])
                    )
                voltage = self.voltage[c] * (1.0 + rng_uniform(-0.02, 0.02))
                meters.append((ids[c], base + self.charger_offset_us[c], ac, voltage))
            yield Minute(minute, meters, vehicles)
