"""The report's pure pieces: the options' parsing (window, end time), the figures as plain
values (a proto3 `optional` field that is unset becomes None, shown as unknown, never 0), the
choices the report makes (the worst chargers, the hourly buckets, drift, standby) and the
terminal table."""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

UNKNOWN = "—"
# AnalyticsService answers for windows of at most 31 days.
MAX_WINDOW = timedelta(days=31)
# Chargers charted one by one, and shown in the terminal.
WORST_CHARTED = 20
WORST_PRINTED = 10
# The efficiency-over-time charts: a point an hour, and at most this many points (a week of
# hours); a longer window gets points of several whole hours each.
BUCKET = timedelta(hours=1)
# The drift table lists falls of at least 0.1 percentage points.
MIN_FALL = 0.001
MAX_POINTS = 168

_WINDOW_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
REASONS = {1: "below fleet", 2: "dropped"}
FLAGS = {
    1: "meter data missing",
    2: "meter data partial",
    3: "concurrent sessions",
    4: "implausible meter data",
    5: "vehicle on two chargers",
    6: "efficiency out of range",
}
# Flags under which an efficiency is not a charger's own (a meter that stopped reporting reads
# as 150 % efficient): such chargers are listed apart, never ranked or drawn with the fleet.
UNTRUSTED = frozenset({FLAGS[2], FLAGS[6]})


# --- options --------------------------------------------------------------------------------


def parse_window(text: str) -> timedelta:
    """`24h`, `90m`, `3d`, `1h30m`, `3600s`: a positive length of at most 31 days."""
    compact = text.strip().lower()
    parts = _WINDOW_PART.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a window such as 24h, 90m, 3d or 1h30m (units s, m, h, d)"
        )
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    window = timedelta(seconds=round(seconds))
    if window <= timedelta(0):
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    if window > MAX_WINDOW:
        raise argparse.ArgumentTypeError(
            f"must be at most 31 days (AnalyticsService's limit), got {text!r}"
        )
    return window


EARLIEST_END = datetime(1, 1, 1, tzinfo=UTC) + 2 * MAX_WINDOW


def parse_end_time(text: str) -> datetime:
    """An RFC 3339 time with a zone (`2026-02-11T00:00:00Z`, `…+02:00`), in UTC."""
    try:
        end = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        end = None
    if end is None or end.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an RFC 3339 time with a zone, such as 2026-02-11T00:00:00Z"
        )
    end = end.astimezone(UTC)
    if end < EARLIEST_END:
        # Two windows of up to 31 days must fit after 0001-01-01, the Timestamp type's start.
        raise argparse.ArgumentTypeError(f"must be {iso(EARLIEST_END)} or later, got {text!r}")
    return end


def default_end_time() -> datetime:
    """Now, down to the minute."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


def buckets(start: datetime, end: datetime) -> tuple[timedelta, list[tuple[datetime, datetime]]]:
    """The efficiency-over-time points of [start, end): an hour each, ending at `end` (the
    first may be shorter), or whole hours each when more than MAX_POINTS hours would be
    needed. Returns the points' length and their [start, end) ranges, oldest first."""
    hours = math.ceil((end - start) / BUCKET)
    step = BUCKET * max(1, math.ceil(hours / MAX_POINTS))
    ranges = []
    right = end
    while right > start:
        left = max(start, right - step)
        ranges.append((left, right))
        right = left
    return step, ranges[::-1]


# --- figures ----------------------------------------------------------------------------------


def optional(message: Any, name: str) -> Any:
    """A proto3 `optional` field's value, or None when it is unset (never its default 0)."""
    return getattr(message, name) if message.HasField(name) else None


@dataclass(frozen=True)
class Figures:
    """A charger's figures over one window (ChargerFigures); None is unknown."""

    efficiency: float | None = None
    ac_kwh: float | None = None
    dc_kwh: float = 0.0
    loss_kwh: float | None = None
    standby_kwh: float | None = None
    sessions: int = 0
    vehicles: int = 0
    coverage: float = 0.0
    flags: tuple[str, ...] = ()

    @property
    def trusted(self) -> bool:
        """The efficiency is known and its AC covers the sessions (what AnalyticsService's
        outlier rule compares): not flagged meter data partial or efficiency out of range."""
        return self.efficiency is not None and not UNTRUSTED.intersection(self.flags)

    @staticmethod
    def of(message: Any) -> Figures:
        return Figures(
            efficiency=optional(message, "efficiency_ratio"),
            ac_kwh=optional(message, "energy_consumed_ac"),
            dc_kwh=message.energy_delivered_dc,
            loss_kwh=optional(message, "energy_loss_kwh"),
            standby_kwh=optional(message, "standby_energy_kwh"),
            sessions=message.session_count,
            vehicles=message.vehicle_count,
            coverage=message.ac_coverage,
            flags=tuple(FLAGS.get(flag, f"flag {flag}") for flag in message.quality_flags),
        )


@dataclass(frozen=True)
class Charger:
    """One charger's ChargerEfficiency."""

    charger_id: str
    current: Figures = field(default_factory=Figures)
    previous: Figures = field(default_factory=Figures)
    change: float | None = None
    reasons: tuple[str, ...] = ()

    @staticmethod
    def of(message: Any) -> Charger:
        return Charger(
            charger_id=message.charger_id,
            current=Figures.of(message.current),
            previous=Figures.of(message.previous),
            change=optional(message, "efficiency_change"),
            reasons=tuple(
                REASONS.get(reason, f"reason {reason}") for reason in message.outlier_reasons
            ),
        )


@dataclass
class Fleet:
    """Every charger of the window, in AnalyticsService's order (worst efficiency first,
    unknown last), and the fleet's median and MAD as the outlier rule computed them."""

    start: datetime
    end: datetime
    chargers: list[Charger]
    median: float | None = None
    mad: float | None = None

    def known(self) -> list[Charger]:
        return [c for c in self.chargers if c.current.efficiency is not None]

    def outliers(self) -> list[Charger]:
        return [c for c in self.chargers if c.reasons]


def worst(chargers: list[Charger], count: int = WORST_CHARTED) -> list[Charger]:
    """The chargers to look at first: those the outlier rule flagged, then the lowest
    efficiencies, each part worst first; only chargers whose efficiency is trusted."""
    known = [c for c in chargers if c.current.trusted]
    ranked = sorted(known, key=lambda c: (not c.reasons, c.current.efficiency, c.charger_id))
    return ranked[:count]


def drift(chargers: list[Charger], count: int = WORST_CHARTED) -> list[Charger]:
    """The largest falls in efficiency from the window before, largest first: those of at least
    MIN_FALL (a smaller one reads as 0.0 points), both windows' efficiencies trusted."""
    changed = [
        c
        for c in chargers
        if c.change is not None
        and c.change <= -MIN_FALL
        and c.current.trusted
        and c.previous.trusted
    ]
    return sorted(changed, key=lambda c: (c.change, c.charger_id))[:count]


def untrusted(chargers: list[Charger], count: int = WORST_CHARTED) -> list[Charger]:
    """Chargers whose efficiency is known but not trusted, the lowest AC coverage first."""
    flagged = [c for c in chargers if c.current.efficiency is not None and not c.current.trusted]
    return sorted(flagged, key=lambda c: (c.current.coverage, c.charger_id))[:count]


def standby(chargers: list[Charger], count: int = WORST_CHARTED) -> list[Charger]:
    """The largest standby energies (known and above 0), largest first."""
    known = [c for c in chargers if (c.current.standby_kwh or 0.0) > 0.0]
    return sorted(known, key=lambda c: (-(c.current.standby_kwh or 0.0), c.charger_id))[:count]


# --- text -------------------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return UNKNOWN if value is None else f"{100 * value:.1f}%"


def points(value: float | None) -> str:
    """An efficiency change in percentage points, signed (a change that rounds to 0 is +0.0)."""
    if value is None:
        return UNKNOWN
    rounded = round(100 * value, 1)
    return f"{rounded if rounded else 0.0:+.1f} pt"


def kwh(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:,.2f}"


def table(chargers: list[Charger]) -> str:
    """The terminal's ranked table: rank, id, efficiency now and before, change, loss and
    standby in kWh, outlier reasons; unknown figures are "—"."""
    header = ("#", "charger", "eff now", "before", "change", "loss kWh", "standby kWh", "outlier")
    rows = [
        (
            str(rank),
            c.charger_id,
            percent(c.current.efficiency),
            percent(c.previous.efficiency),
            points(c.change),
            kwh(c.current.loss_kwh),
            kwh(c.current.standby_kwh),
            ", ".join(c.reasons) or "",
        )
        for rank, c in enumerate(chargers, 1)
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    left = {1, 7}  # ids and reasons read from the left, figures line up on the right

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join(line(row) for row in (header, *rows))


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC, the year in four digits (strftime writes year 1 as "1")."""
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-" + moment.strftime("%m-%dT%H:%M:%SZ")
