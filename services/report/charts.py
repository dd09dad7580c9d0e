"""The report's charts: matplotlib figures (Agg backend, no pyplot state) written as SVG, text
drawn as paths, so the page needs no font and no file beside it. Each SVG gets ids of its own
(svg.hashsalt), since they all live in one HTML document."""

from __future__ import annotations

import io
import math
import re
import statistics
from datetime import datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.dates import DateFormatter, date2num
from matplotlib.figure import Figure

from services.report.model import Charger

BAD = "#c0392b"
GOOD = "#2e86c1"
GREY = "#7f8c8d"
# Typed Any: matplotlib types rc_context with a Literal of every rc key.
RC: Any = {
    "svg.fonttype": "path",
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_counter = 0


def _svg(figure: Figure) -> str:
    """The figure as an <svg> element to inline: no XML prolog, DOCTYPE or metadata."""
    global _counter
    _counter += 1
    buffer = io.StringIO()
    salted: Any = {**RC, "svg.hashsalt": f"energy-report-{_counter}"}
    with matplotlib.rc_context(salted):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    return text


def _figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(RC):
        return Figure(figsize=(width, height), dpi=96, layout="constrained")


def histogram(efficiencies: list[float], median: float | None, median_label: str) -> str:
    """The fleet's efficiency distribution, its median marked."""
    with matplotlib.rc_context(RC):
        figure = _figure(7.5, 2.8)
        axes = figure.add_subplot()
        values = [100 * e for e in efficiencies]
        bins = max(5, min(40, round(math.sqrt(len(values)) * 2))) if values else 10
        axes.hist(values, bins=bins, color=GOOD, edgecolor="white", linewidth=0.5)
        if median is not None:
            axes.axvline(100 * median, color=BAD, linestyle="--", linewidth=1.2)
            axes.annotate(
                f"{median_label} {100 * median:.1f}%",
                xy=(100 * median, 1),
                xycoords=("data", "axes fraction"),
                xytext=(4, -4),
                textcoords="offset points",
                va="top",
                color=BAD,
            )
        axes.set_xlabel("efficiency (DC / AC), %")
        axes.set_ylabel("chargers")
        return _svg(figure)


def sparkline(
    times: list[datetime],
    values: list[float | None],
    own: float | None,
    median: float | None,
) -> str:
    """One charger's efficiency per point (gaps where unknown), its window's efficiency
    (solid grey) and the fleet median (dashed, or named when off the charger's scale)."""
    with matplotlib.rc_context(RC):
        figure = _figure(3.6, 1.35)
        axes = figure.add_subplot()
        ys = [math.nan if v is None else 100 * v for v in values]
        xs = [float(x) for x in date2num(times)]
        axes.plot(xs, ys, color=BAD, linewidth=1.2, marker="o", markersize=1.8)
        if own is not None:
            axes.axhline(100 * own, color=GREY, linewidth=0.8)
        # The scale is the charger's own (its points and its window's efficiency), so a fall of
        # two points shows; the fleet median is drawn when it lies in it, else named.
        seen = [y for y in ys if not math.isnan(y)] + ([100 * own] if own is not None else [])
        if seen:
            low, high = min(seen), max(seen)
            margin = max((high - low) * 0.15, 0.5)
            axes.set_ylim(low - margin, high + margin)
            if median is not None and low - margin <= 100 * median <= high + margin:
                axes.axhline(100 * median, color=GOOD, linewidth=0.8, linestyle="--")
            elif median is not None:
                above = 100 * median > high
                axes.text(
                    0.99,
                    0.97 if above else 0.03,
                    f"fleet median {100 * median:.1f}% {'above' if above else 'below'}",
                    transform=axes.transAxes,
                    ha="right",
                    va="top" if above else "bottom",
                    fontsize=6.5,
                    color=GOOD,
                )
        if len(xs) > 1:
            axes.set_xlim(xs[0], xs[-1])
            # The first, middle and last points' times, dated: a reader sees which days these are.
            axes.set_xticks([xs[0], (xs[0] + xs[-1]) / 2, xs[-1]])
            axes.xaxis.set_major_formatter(DateFormatter("%m-%d %H:%M"))
        axes.tick_params(labelsize=7)
        axes.set_ylabel("efficiency, %", fontsize=7)
        if all(math.isnan(y) for y in ys):
            axes.text(0.5, 0.5, "no known point", transform=axes.transAxes, ha="center", color=GREY)
        return _svg(figure)


def drift_scatter(chargers: list[Charger], highlighted: set[str]) -> str:
    """Each charger's efficiency now against the window before; below the diagonal it fell."""
    pairs = [
        (100 * c.previous.efficiency, 100 * c.current.efficiency, c.charger_id in highlighted)
        for c in chargers
        if c.current.efficiency is not None and c.previous.efficiency is not None
    ]
    with matplotlib.rc_context(RC):
        figure = _figure(4.2, 3.4)
        axes = figure.add_subplot()
        if pairs:
            low = min(min(p[0], p[1]) for p in pairs) - 1
            high = max(max(p[0], p[1]) for p in pairs) + 1
            axes.plot([low, high], [low, high], color=GREY, linewidth=0.8, linestyle="--")
            for flagged in (False, True):
                xs = [p[0] for p in pairs if p[2] == flagged]
                ys = [p[1] for p in pairs if p[2] == flagged]
                axes.scatter(
                    xs,
                    ys,
                    s=14 if flagged else 8,
                    color=BAD if flagged else GOOD,
                    alpha=0.9 if flagged else 0.6,
                    label="worst chargers" if flagged else "others",
                )
            axes.legend(loc="upper left", frameon=False)
        else:
            axes.text(0.5, 0.5, "no charger with both efficiencies known", ha="center")
        axes.set_xlabel("efficiency in the window before, %")
        axes.set_ylabel("efficiency now, %")
        return _svg(figure)


def standby_bars(chargers: list[Charger]) -> str:
    """The largest standby energies, one bar per charger."""
    with matplotlib.rc_context(RC):
        figure = _figure(4.6, max(1.6, 0.18 * len(chargers) + 0.8))
        axes = figure.add_subplot()
        names = [c.charger_id for c in chargers][::-1]
        values = [c.current.standby_kwh or 0.0 for c in chargers][::-1]
        axes.barh(names, values, color=GREY)
        axes.set_xlabel("standby energy, kWh")
        axes.tick_params(axis="y", labelsize=6.5)
        return _svg(figure)


def median_of(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
