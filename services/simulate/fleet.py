"""A deterministic fleet of chargers and vehicles (same seed, same readings).

Model: every charger reports every minute; every vehicle reports every minute while it is
plugged into one of the fleet's chargers. Chargers and vehicles come in groups of GROUP_SIZE
(20): group g is chargers 20g..20g+19 and vehicles 20g..20g+19, one vehicle per charger, and a
group's vehicles only ever use the group's chargers. Every 4 hours of UTC time a group's
vehicles are dealt out to its chargers afresh; in between, each charger's time is cut into
sessions of 20 minutes to 4 hours on a 10-minute grid, and at every cut the vehicles of the
chargers cut at that moment change places. So chargers are shared over the day and vehicles
move between them. A plugged vehicle charges at the charger's power until it reaches its target
state of charge (but not in the minute it arrives, nor in the minute before it leaves: it is
plugging in, unplugging): the charger draws AC = DC / efficiency, with its own efficiency
between 0.85 and 0.95. With as many vehicles as
chargers (a multiple of 20) every vehicle is plugged in all the time, which gives the scale
floor: 10,000 + 10,000 entities x 1,440 minutes = 14.4M readings a day per stream. Each device
reports at its own second of the minute (up to 20 s past it): a reading at minute m carries the
energy of that minute. Because the minutes on either side of a move draw nothing, a meter
interval that straddles two vehicles' sessions holds no energy of either, so the correlation
recovers each charger's efficiency exactly. The first minute of a run is a plug-in minute too
(the run does not know what came before).

Why groups: runs of different sizes into one database must agree on where a vehicle is, or it
shows up on two chargers at once. So where a vehicle is at a minute depends only on the seed,
its group and the absolute minute (deals and cuts are drawn per group and per 4-hour block),
never on the fleet size, the start or the duration; and every group draws its attributes and
noise from a random stream of its own. A group is always simulated whole: chargers and vehicles
beyond the fleet's counts are simulated but do not report (a vehicle outside the fleet still
draws power at its charger; a fleet vehicle at a charger outside the fleet is away). Hence,
for one seed and one start, a reading (entity, minute) is the same whatever the fleet size,
and a smaller fleet's readings are a subset of a larger one's.

Faults (FleetConfig.faults, all off by default: then every reading is what it was without
them) put field faults into some entities' readings, so that a report over the data has
something real to find; Fleet.faults says which entities and when:

- degrading chargers: a charger's efficiency falls linearly over the run, from its own at the
  run's first minute to its own minus `degradation` at its last (a failing power module,
  0.93 -> 0.87). The vehicle gets the DC it would get anyway; the charger draws
  AC = DC / (the efficiency of that minute), so its meter shows more AC than before.
- silent chargers (never degrading ones): from the run's middle minute (minutes // 2) on the
  charger reports no meter reading; its vehicles go on charging and reporting DC under its id.
- misnamed chargers: a vehicle whose gateway reports every charger it uses under its id in
  lower case (chg-00042 for CHG-00042) for the whole run: a charger the vehicle names but that
  never reported under that exact id.

Which entities is a function of the seed and the fleet size alone (never the start or the
duration): each fault's picks are spread over the fleet, one in each of as many equal slices
of it (chargers for the charger faults, reporting vehicles for the misnamed ones), so a
different --chargers or --vehicles may pick others. Faults draw nothing from the groups'
random streams and change only the faulty entities' own readings (a degrading charger's AC, a
silent charger's missing meter readings, a misnamed vehicle's charger id), so every other
reading stays the same whatever the faults or the fleet size; the subset property holds for
those, not for the faulty entities' readings (a degrading charger's AC also depends on the
run's start and duration)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

MINUTE_US = 60_000_000
GRID_MINUTES = 10
BLOCK_MINUTES = 240  # deals are drawn per 4-hour block of absolute (UTC) time
GROUP_SIZE = 20

# (meter_id, read micros, kwh_consumed_ac, voltage): the meter staging order.
MeterRow = tuple[str, int, float, float]
# (vehicle_id, read micros, charger_id, soc, kwh_delivered_dc, battery_temp).
VehicleRow = tuple[str, int, str, float, float, float]


MAX_DEGRADATION = 0.5  # efficiency points; the lowest efficiency is then 0.85 - 0.5 = 0.35


@dataclass(frozen=True)
class Faults:
    """How many entities of each fault (see the module's docstring); none by default.
    `misnamed_chargers` counts vehicles: those that name their chargers in another case."""

    degrading_chargers: int = 0
    degradation: float = 0.06  # efficiency points lost by the run's last minute
    silent_chargers: int = 0
    misnamed_chargers: int = 0

    def problem(self, chargers: int, vehicles: int) -> str | None:
        """Why these faults do not fit a fleet of `chargers` and `vehicles`; None if they do."""
        counts = {
            "degrading_chargers": self.degrading_chargers,
            "silent_chargers": self.silent_chargers,
            "misnamed_chargers": self.misnamed_chargers,
        }
        for name, count in counts.items():
            if count < 0:
                return f"{name} must not be negative, got {count}"
        if self.degrading_chargers + self.silent_chargers > chargers:
            return (
                f"{self.degrading_chargers} degrading and {self.silent_chargers} silent chargers "
                f"in a fleet of {chargers} chargers: a charger is at most one of them"
            )
        if self.misnamed_chargers and self.misnamed_chargers > vehicles:
            return (
                f"{self.misnamed_chargers} vehicles naming their chargers in another case in a "
                f"fleet of {vehicles} vehicles"
            )
        if not 0 < self.degradation <= MAX_DEGRADATION:
            return f"degradation must be in (0, {MAX_DEGRADATION}], got {self.degradation}"
        return None


@dataclass(frozen=True)
class FleetConfig:
    chargers: int = 10_000
    vehicles: int = 10_000
    minutes: int = 1_440
    start_us: int = 1_770_681_600 * 1_000_000  # 2026-02-10T00:00:00Z
    seed: int = 1
    faults: Faults = Faults()


@dataclass(frozen=True)
class FaultPlan:
    """Which entities a fleet's faults hit and when, as indexes (charger_ids / vehicle_ids),
    each in increasing order. `silent_from`: the run minute (0-based) from which the silent
    chargers report nothing."""

    degrading: tuple[int, ...] = ()
    degradation: float = 0.0
    silent: tuple[int, ...] = ()
    silent_from: int = 0
    misnamed: tuple[int, ...] = ()

    @staticmethod
    def draw(config: FleetConfig) -> FaultPlan:
        """The plan for `config`: a function of the seed and the fleet's size (see the module's
        docstring), and of the duration only for `silent_from`."""
        faults = config.faults
        rng = random.Random(f"{config.seed}/faults/chargers")
        picks = spread(rng, config.chargers, faults.degrading_chargers + faults.silent_chargers)
        rng.shuffle(picks)  # which picks degrade and which fall silent
        vehicles = spread(
            random.Random(f"{config.seed}/faults/vehicles"),
            config.vehicles,
            faults.misnamed_chargers,
        )
        return FaultPlan(
            degrading=tuple(sorted(picks[: faults.degrading_chargers])),
            degradation=faults.degradation,
            silent=tuple(sorted(picks[faults.degrading_chargers :])),
            silent_from=config.minutes // 2,
            misnamed=tuple(sorted(vehicles)),
        )


def spread(rng: random.Random, population: int, count: int) -> list[int]:
    """`count` distinct members of range(`population`), one drawn from each of `count` equal
    slices of it (so spread over all of it), in slice order."""
    return [
        rng.randrange(k * population // count, (k + 1) * population // count) for k in range(count)
    ]


@dataclass
class Minute:
    index: int
    meter_rows: list[MeterRow]
    vehicle_rows: list[VehicleRow]


def meter_id(index: int) -> str:
    return f"CHG-{index:05d}"


def vehicle_id(index: int) -> str:
    return f"VH-{index:05d}"


# One spell of a group: (first absolute minute, seat) where seat[j] is the charger (0..19 within
# the group) of the group's vehicle j until the next spell.
Spell = tuple[int, list[int]]


def block_spells(seed: int, group: int, block: int) -> list[Spell]:
    """The spells of `group` in 4-hour `block` (absolute minute // 240), in time order.

    The block opens with a fresh deal of the group's vehicles to its chargers; then each
    charger's time is cut into sessions of 20 minutes to 4 hours on the 10-minute grid, and at
    every cut the vehicles of the chargers cut at that moment change places. A pure function of
    its arguments: that is what keeps runs of different sizes (or starts) from disagreeing."""
    rng = random.Random(f"{seed}/deal/{group}/{block}")
    occupant = list(range(GROUP_SIZE))  # occupant[c]: the vehicle (0..19) at charger c
    rng.shuffle(occupant)
    ticks = BLOCK_MINUTES // GRID_MINUTES
    cuts: dict[int, list[int]] = {}
    for charger in range(GROUP_SIZE):
        tick = rng.randrange(2, 25)
        while tick < ticks:
            cuts.setdefault(tick, []).append(charger)
            tick += rng.randrange(2, 25)

    def seat() -> list[int]:
        where = [0] * GROUP_SIZE
        for charger, vehicle in enumerate(occupant):
            where[vehicle] = charger
        return where

    first = block * BLOCK_MINUTES
    spells = [(first, seat())]
    for tick in sorted(cuts):
        chargers = cuts[tick]
        if len(chargers) > 1:
            vehicles = [occupant[c] for c in chargers]
            shift = rng.randrange(1, len(chargers))
            for i, charger in enumerate(chargers):
                occupant[charger] = vehicles[(i + shift) % len(chargers)]
            spells.append((first + tick * GRID_MINUTES, seat()))
    return spells


def seat_at(seed: int, group: int, minute: int) -> list[int]:
    """Where the group's vehicles are at absolute `minute`: seat[j] is vehicle j's charger."""
    spells = block_spells(seed, group, minute // BLOCK_MINUTES)
    return next(seat for first, seat in reversed(spells) if first <= minute)


class Fleet:
    """The fleet's state; minutes() advances it. Charger and vehicle attributes are indexed by
    charger / vehicle number over whole groups (also the members that do not report)."""

    def __init__(self, config: FleetConfig) -> None:
        if config.vehicles > config.chargers:
            raise ValueError(
                f"{config.vehicles} vehicles for {config.chargers} chargers: a vehicle uses only "
                "its own group's chargers, so vehicles must not outnumber chargers"
            )
        if (problem := config.faults.problem(config.chargers, config.vehicles)) is not None:
            raise ValueError(problem)
        self.faults = FaultPlan.draw(config)
        self._degrading = frozenset(self.faults.degrading)
        self.config = config
        n, m = config.chargers, config.vehicles
        self.groups = -(-n // GROUP_SIZE)
        size = self.groups * GROUP_SIZE  # everything simulated, reporting or not
        self.charger_ids = [meter_id(c) for c in range(size)]
        self.vehicle_ids = [vehicle_id(v) for v in range(size)]
        # One random stream per group, drawn in the same order whatever the fleet size.
        self._rngs = [random.Random(f"{config.seed}/group/{g}") for g in range(self.groups)]
        self._efficiency: list[float] = []
        self.voltage: list[float] = []
        self.power_kw: list[float] = []
        self.charger_offset_us: list[int] = []
        self.capacity_kwh: list[float] = []
        self.vehicle_offset_us: list[int] = []
        self.soc: list[float] = []
        self.target_soc: list[float] = []
        self.temp: list[float] = []
        for rng in self._rngs:
            for _ in range(GROUP_SIZE):
                self._efficiency.append(rng.uniform(0.85, 0.95))
                self.voltage.append(rng.choice((230.0, 400.0, 480.0)))
                self.power_kw.append(rng.choice((7.4, 11.0, 22.0)))
                self.charger_offset_us.append(rng.randrange(0, 20_000_000))
            for _ in range(GROUP_SIZE):
                self.capacity_kwh.append(rng.choice((50.0, 60.0, 75.0, 100.0)))
                self.vehicle_offset_us.append(rng.randrange(0, 20_000_000))
                self.soc.append(rng.uniform(10.0, 60.0))
                self.target_soc.append(rng.uniform(80.0, 100.0))
                self.temp.append(rng.uniform(15.0, 25.0))
        del self.charger_ids[n:], self.vehicle_ids[m:]
        # occupant[c]: the vehicle at charger c; charger_of[v]: the charger of vehicle v.
        self.occupant = [0] * size
        self.charger_of = [0] * size
        # The chargers whose vehicle arrived this minute (it plugs in, nothing is drawn).
        self.arriving: set[int] = set()
        # Per group, the current block's spells and the next block's first: minute -> seat.
        self._upcoming: list[dict[int, list[int]]] = [{} for _ in range(self.groups)]

    @property
    def efficiency(self) -> list[float]:
        """Each fleet charger's DC/AC ratio, in charger_ids order."""
        return self._efficiency[: self.config.chargers]

    def efficiency_at(self, charger: int, index: int) -> float:
        """Charger `charger`'s DC/AC ratio in run minute `index` (0-based): its own, or for a
        degrading charger its own less the degradation's share so far (all of it at the run's
        last minute)."""
        own = self._efficiency[charger]
        if charger not in self._degrading:
            return own
        return own - self._degraded(index)

    def _degraded(self, index: int) -> float:
        """The efficiency points a degrading charger has lost by run minute `index`."""
        return self.faults.degradation * index / max(1, self.config.minutes - 1)

    def _seat(self, group: int, seat: list[int], moved: bool) -> None:
        base = group * GROUP_SIZE
        rng = self._rngs[group]
        for j, slot in enumerate(seat):
            v, c = base + j, base + slot
            if not moved:
                self.arriving.add(c)
            elif self.charger_of[v] != c:  # driving here used some charge
                self.soc[v] = max(5.0, self.soc[v] - rng.uniform(5.0, 40.0))
                self.target_soc[v] = rng.uniform(80.0, 100.0)
                self.arriving.add(c)
            self.occupant[c] = v
            self.charger_of[v] = c

    def _spells(self, group: int, block: int) -> dict[int, list[int]]:
        """Spells by first minute for `group` in `block` and the next block's first: a spell's
        last minute needs to know who leaves at the next."""
        seed = self.config.seed
        spells = dict(block_spells(seed, group, block))
        spells.update(block_spells(seed, group, block + 1)[:1])
        return spells

    def _deal(self, minute: int, first: bool) -> None:
        """At absolute `minute`: seat every group as it is then (first) or move the vehicles of
        the groups whose spell changes now."""
        if first or minute % BLOCK_MINUTES == 0:
            block = minute // BLOCK_MINUTES
            self._upcoming = [self._spells(group, block) for group in range(self.groups)]
        for group in range(self.groups):
            if first:
                self._seat(group, seat_at(self.config.seed, group, minute), moved=False)
            elif (seat := self._upcoming[group].get(minute)) is not None:
                self._seat(group, seat, moved=True)

    def _leaving(self, group: int, minute: int) -> frozenset[int]:
        """The chargers whose vehicle leaves after absolute `minute`."""
        after = self._upcoming[group].get(minute + 1)
        if after is None:
            return frozenset()
        base = group * GROUP_SIZE
        return frozenset(
            self.charger_of[base + j]
            for j, slot in enumerate(after)
            if base + slot != self.charger_of[base + j]
        )

    def reading_count(self) -> tuple[int, int]:
        """(meter readings, vehicle readings) that minutes() yields in all, from the deals alone
        (no simulation): only a group that straddles the last fleet charger has vehicles away."""
        config = self.config
        n, m = config.chargers, config.vehicles
        first = config.start_us // MINUTE_US
        end = first + config.minutes
        vehicles = 0
        for group in range(self.groups):
            base = group * GROUP_SIZE
            reporting = [j for j in range(GROUP_SIZE) if base + j < m]
            if base + GROUP_SIZE <= n or not reporting:
                vehicles += len(reporting) * config.minutes
                continue
            for block in range(first // BLOCK_MINUTES, (end - 1) // BLOCK_MINUTES + 1):
                spells = block_spells(config.seed, group, block)
                ends = [start for start, _ in spells[1:]] + [(block + 1) * BLOCK_MINUTES]
                for (start, seat), stop in zip(spells, ends, strict=True):
                    overlap = min(stop, end) - max(start, first)
                    if overlap > 0:
                        vehicles += overlap * sum(1 for j in reporting if base + seat[j] < n)
        silent = len(self.faults.silent) * (config.minutes - self.faults.silent_from)
        return n * config.minutes - silent, vehicles

    def minutes(self) -> Iterator[Minute]:
        """Each minute's readings, in time order; the fleet's state advances as you iterate."""
        config = self.config
        n, m = config.chargers, config.vehicles
        ids, vids = self.charger_ids, self.vehicle_ids
        faults = self.faults
        # The faults, empty when off (then each costs a falsy test per reading).
        degrading = self._degrading
        silent = set(faults.silent)
        misnamed = set(faults.misnamed)
        lower_ids = [charger_id.lower() for charger_id in ids] if misnamed else ids
        silenced: set[int] = set()
        first_minute = config.start_us // MINUTE_US
        for index in range(config.minutes):
            minute = first_minute + index
            if index == faults.silent_from:
                silenced = silent
            lost = self._degraded(index) if degrading else 0.0
            if index == 0 or minute % GRID_MINUTES == 0:
                self._deal(minute, first=index == 0)
            boundary = (minute + 1) % GRID_MINUTES == 0  # the only minutes before a move
            base = config.start_us + index * MINUTE_US
            meters: list[MeterRow] = []
            vehicles: list[VehicleRow] = []
            for group in range(self.groups):
                rng_uniform = self._rngs[group].uniform
                # A vehicle that leaves unplugs in its last minute and draws nothing, so that the
                # meter reading just before the next arrival (inside the correlation tolerance)
                # holds no energy of the vehicle that left.
                leaving = self._leaving(group, minute) if boundary else frozenset()
                for c in range(group * GROUP_SIZE, (group + 1) * GROUP_SIZE):
                    v = self.occupant[c]
                    ac = dc = 0.0
                    soc = self.soc[v]
                    if soc < self.target_soc[v] and c not in leaving and c not in self.arriving:
                        ac = self.power_kw[c] / 60.0
                        dc = ac * self._efficiency[c]
                        if degrading and c in degrading:  # the same DC for more AC
                            ac = dc / (self._efficiency[c] - lost)
                        soc = min(100.0, soc + 100.0 * dc / self.capacity_kwh[v])
                        self.soc[v] = soc
                        self.temp[v] += (38.0 - self.temp[v]) * 0.02  # warms while charging
                    else:
                        self.temp[v] += (20.0 - self.temp[v]) * 0.02  # cools when idle
                    # Drawn for every charger, reporting or not: the same stream at any size.
                    voltage = self.voltage[c] * (1.0 + rng_uniform(-0.02, 0.02))
                    if c < n:
                        if v < m:
                            vehicles.append(
                                (
                                    vids[v],
                                    base + self.vehicle_offset_us[v],
                                    lower_ids[c] if misnamed and v in misnamed else ids[c],
                                    soc,
                                    dc,
                                    self.temp[v],
                                )
                            )
                        if not (silenced and c in silenced):
                            meters.append((ids[c], base + self.charger_offset_us[c], ac, voltage))
            self.arriving.clear()
            yield Minute(index, meters, vehicles)
