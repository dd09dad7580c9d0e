"""The report as one self-contained HTML file: inline CSS, inline SVG charts, no script, no
font, no image or stylesheet to fetch. Every text from the answers is escaped; a figure that
is unknown reads "—"."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, timedelta
from html import escape
from typing import Any

from services.report import charts
from services.report.fetch import Completeness, Series
from services.report.model import (
    UNKNOWN,
    WORST_CHARTED,
    Charger,
    Fleet,
    drift,
    iso,
    kwh,
    optional,
    percent,
    points,
    standby,
    untrusted,
)

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 2em auto; max-width: 1100px; padding: 0 1em; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { padding: 0.2em 0.7em; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f4f6f7; }
td.id, th.id, td.text, th.text { text-align: left; }
.note { color: #555; font-size: 0.92em; }
.warn { background: #fdf2e9; border-left: 4px solid #e67e22; padding: 0.5em 0.8em; }
.outlier { color: #c0392b; font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 0.7em; box-sizing: border-box;
        width: calc((100% - 24px) / 3); min-width: 280px; }
.card svg { width: 100%; }
.card h3 { margin: 0 0 0.2em 0; font-size: 1em; }
.card dl { display: grid; grid-template-columns: auto auto; gap: 0 0.8em; margin: 0.3em 0;
           font-size: 0.9em; }
.card dt { color: #555; } .card dd { margin: 0; text-align: right; }
svg { max-width: 100%; height: auto; }
"""


def _cell(value: object, css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<td{attribute}>{escape(str(value))}</td>"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], text: Sequence[int]) -> str:
    """A table; the columns in `text` read from the left (ids, names), the rest are figures."""
    head = "".join(
        f'<th class="text">{escape(h)}</th>' if i in text else f"<th>{escape(h)}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(_cell(value, "text" if i in text else "") for i, value in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _hours(step: timedelta) -> str:
    hours = step // timedelta(hours=1)
    return "hour" if hours == 1 else f"{hours} hours"


def _count(value: int) -> str:
    return f"{value:,}"


def _reasons(charger: Charger) -> str:
    return ", ".join(charger.reasons)


def _header(fleet: Fleet, target: str, generated: str) -> str:
    known = fleet.known()
    return (
        "<h1>Charger efficiency report</h1>"
        f'<p class="note">Window {escape(iso(fleet.start))} to {escape(iso(fleet.end))} '
        f"(and the window of equal length before it, for drift). From AnalyticsService at "
        f"{escape(target)}, {escape(generated)}.</p>"
        + _table(
            (
                "chargers",
                "efficiency known",
                "outliers",
                "fleet median",
                "fleet MAD",
                "AC attributed kWh",
                "DC kWh",
                "standby kWh",
            ),
            [
                (
                    _count(len(fleet.chargers)),
                    _count(len(known)),
                    _count(len(fleet.outliers())),
                    percent(fleet.median),
                    points(fleet.mad).lstrip("+"),
                    _sum_known(c.current.ac_kwh for c in fleet.chargers),
                    kwh(sum(c.current.dc_kwh for c in fleet.chargers)),
                    _sum_known(c.current.standby_kwh for c in fleet.chargers),
                )
            ],
            (),
        )
        + '<p class="note">Efficiency is DC delivered to the batteries over the AC attributed '
        "to their sessions. The fleet median and MAD are those of the outlier rule (chargers "
        "with at least OUTLIER_MIN_SESSIONS sessions). Sums count known figures only; "
        f"{UNKNOWN} is a figure AnalyticsService could not know (never 0).</p>"
    )


def _sum_known(values: Iterable[float | None]) -> str:
    known = [v for v in values if v is not None]
    return kwh(sum(known)) if known else UNKNOWN


def _outliers(fleet: Fleet) -> str:
    flagged = fleet.outliers()
    if not flagged:
        return "<h2>Outliers</h2><p>No charger stands out by the outlier rule.</p>"
    rows = [
        (
            c.charger_id,
            _reasons(c),
            percent(c.current.efficiency),
            percent(c.previous.efficiency),
            points(c.change),
            c.current.sessions,
        )
        for c in sorted(flagged, key=lambda c: (c.current.efficiency or 0.0, c.charger_id))
    ]
    return (
        f"<h2>Outliers ({len(flagged)})</h2>"
        '<p class="note">below fleet: efficiency under the fleet median by more than '
        "OUTLIER_MAD_THRESHOLD scaled MADs and OUTLIER_MIN_POINTS; dropped: fell by at least "
        "OUTLIER_DROP_POINTS from the window before.</p>"
        + _table(("charger", "reasons", "eff now", "before", "change", "sessions"), rows, (0, 1))
    )


def _distribution(fleet: Fleet) -> str:
    efficiencies = [
        c.current.efficiency
        for c in fleet.chargers
        if c.current.trusted and c.current.efficiency is not None
    ]
    doubtful = untrusted(fleet.chargers, count=len(fleet.chargers))
    median, label = fleet.median, "fleet median"
    if median is None:
        median, label = charts.median_of(efficiencies), "median of these"
    unknown = len(fleet.chargers) - len(fleet.known())
    listed = doubtful[:WORST_CHARTED]
    rows = [
        (
            c.charger_id,
            percent(c.current.efficiency),
            percent(c.current.coverage),
            ", ".join(c.current.flags),
        )
        for c in listed
    ]
    apart = (
        "<h3>Efficiencies not to be trusted</h3>"
        '<p class="note">Their meter covered only part of their sessions, or the figure is one '
        "no charger can have: a completeness problem (see Data completeness), not a charger "
        f"to rank. {_count(len(doubtful))} in all"
        + (f", the {len(listed)} of lowest coverage listed" if len(listed) < len(doubtful) else "")
        + ".</p>"
        + _table(("charger", "efficiency", "AC coverage", "flags"), rows, (0, 3))
        if doubtful
        else ""
    )
    return (
        "<h2>Efficiency distribution</h2>"
        f'<figure class="chart" id="histogram">{charts.histogram(efficiencies, median, label)}'
        f"</figure>"
        f'<p class="note">{_count(len(efficiencies))} chargers with a trusted efficiency; '
        f"{_count(len(doubtful))} whose efficiency is flagged (listed below, not drawn); "
        f"{_count(unknown)} without (no session, or no meter data under its id: see Data "
        "completeness).</p>" + apart
    )


def _worst(worst: list[Charger], series: Series, fleet: Fleet) -> str:
    if not worst:
        return "<h2>Worst chargers</h2><p>No charger has a known efficiency.</p>"
    starts = [left + (right - left) / 2 for left, right in series.ranges]
    note = f"one point per {_hours(series.step)}"
    if series.step > timedelta(hours=1):
        note += (
            f" (the window is longer than {len(series.ranges)} hours: points are capped at "
            f"{len(series.ranges)}, each {_hours(series.step)})"
        )
    cards = []
    for rank, c in enumerate(worst, 1):
        reasons = f'<p class="outlier">{escape(_reasons(c))}</p>' if c.reasons else "<p>&nbsp;</p>"
        figures = [
            ("efficiency now", percent(c.current.efficiency)),
            ("before", percent(c.previous.efficiency)),
            ("change", points(c.change)),
            ("AC attributed kWh", kwh(c.current.ac_kwh)),
            ("DC kWh", kwh(c.current.dc_kwh)),
            ("loss kWh", kwh(c.current.loss_kwh)),
            ("standby kWh", kwh(c.current.standby_kwh)),
            ("sessions / vehicles", f"{c.current.sessions} / {c.current.vehicles}"),
            ("AC coverage", percent(c.current.coverage)),
        ]
        flags = (
            f'<p class="note">{escape(", ".join(c.current.flags))}</p>' if c.current.flags else ""
        )
        chart = charts.sparkline(
            starts, series.values.get(c.charger_id, []), c.current.efficiency, fleet.median
        )
        cards.append(
            f'<div class="card worst" data-charger="{escape(c.charger_id)}">'
            f"<h3>{rank}. {escape(c.charger_id)}</h3>{reasons}"
            f'<figure class="chart sparkline">{chart}</figure><dl>'
            + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in figures)
            + f"</dl>{flags}</div>"
        )
    return (
        f"<h2>Worst chargers ({len(worst)})</h2>"
        '<p class="note">Outliers first, then the lowest efficiencies, each worst first. '
        f"Efficiency over the window, {escape(note)}; grey line: the charger's efficiency over "
        "the window; blue dashes: the fleet median (named in a corner when off the charger's "
        "own scale); a gap is a point whose efficiency is unknown.</p>"
        f'<div class="cards">{"".join(cards)}</div>'
    )


def _drift(fleet: Fleet, highlighted: set[str]) -> str:
    falls = drift(fleet.chargers)
    rows = [
        (
            c.charger_id,
            percent(c.previous.efficiency),
            percent(c.current.efficiency),
            points(c.change),
            _reasons(c),
        )
        for c in falls
    ]
    table = (
        _table(("charger", "before", "now", "change", "outlier"), rows, (0, 4))
        if rows
        else "<p>No charger's efficiency fell by 0.1 points or more.</p>"
    )
    return (
        "<h2>Drift: now against the window before</h2>"
        f'<figure class="chart" id="drift">{charts.drift_scatter(fleet.chargers, highlighted)}'
        "</figure>"
        '<p class="note">Below the diagonal, a charger\'s efficiency fell. The largest falls '
        f"(efficiencyChange, in percentage points; at most {WORST_CHARTED}).</p>" + table
    )


def _standby(fleet: Fleet) -> str:
    top = standby(fleet.chargers)
    if not top:
        known = sum(1 for c in fleet.chargers if c.current.standby_kwh is not None)
        if not known:
            return "<h2>Standby energy</h2><p>No charger's standby energy is known.</p>"
        return (
            "<h2>Standby energy</h2><p>No charger drew standby energy: every kWh its meter "
            f"took went to a session ({known:,} chargers whose standby is known).</p>"
        )
    rows = [
        (
            c.charger_id,
            kwh(c.current.standby_kwh),
            kwh(c.current.ac_kwh),
            percent(_share(c.current.standby_kwh, c.current.ac_kwh)),
        )
        for c in top
    ]
    return (
        "<h2>Standby energy</h2>"
        '<p class="note">AC of a charger\'s meter that no session took (idle draw, or vehicles '
        f"that do not report). Fleet total: "
        f"{_sum_known(c.current.standby_kwh for c in fleet.chargers)} kWh.</p>"
        f'<figure class="chart" id="standby">{charts.standby_bars(top)}</figure>'
        + _table(("charger", "standby kWh", "AC attributed kWh", "share of metered"), rows, (0,))
    )


def _share(standby_kwh: float | None, attributed: float | None) -> float | None:
    if standby_kwh is None:
        return None
    total = standby_kwh + (attributed or 0.0)
    return standby_kwh / total if total > 0 else None


def _time(stamp: Any) -> str:
    return iso(stamp.ToDatetime(tzinfo=UTC))


def _interval(device: Any) -> str:
    if not device.HasField("usual_interval"):
        return UNKNOWN
    seconds = device.usual_interval.ToTimedelta().total_seconds()
    return f"{seconds:g} s" if seconds < 120 else f"{seconds / 60:g} min"


def _devices(title: str, devices: list[Any]) -> str:
    if not devices:
        return f"<h3>{escape(title)}</h3><p>None.</p>"
    rows = []
    for device in devices:
        expected = optional(device, "expected_reading_count")
        gaps = list(device.gaps)
        first_gaps = "; ".join(
            f"{_time(g.start_time)} to {_time(g.end_time)}" for g in gaps[:2]
        ) + (f" (+{len(gaps) - 2})" if len(gaps) > 2 else "")
        rows.append(
            (
                device.id,
                UNKNOWN if expected is None else _count(expected),
                _count(device.received_reading_count),
                percent(optional(device, "completeness")),
                _interval(device),
                _count(len(gaps)),
                first_gaps,
                _count(device.conflict_count),
            )
        )
    return f"<h3>{escape(title)}</h3>" + _table(
        (
            "id",
            "expected",
            "received",
            "complete",
            "usual interval",
            "gaps",
            "first gaps",
            "conflicts",
        ),
        rows,
        (0, 6),
    )


def _completeness(completeness: Completeness) -> str:
    page = completeness.page
    if page is None:
        return (
            '<h2>Data completeness</h2><p class="warn" id="completeness-unavailable">'
            f"Unavailable: {escape(completeness.unavailable)}</p>"
        )
    totals = [
        (
            name,
            _count(t.device_count),
            _count(t.silent_device_count),
            _count(t.expected_reading_count),
            _count(t.received_reading_count),
            _count(t.gap_count),
            _count(t.conflict_count),
        )
        for name, t in (("chargers", page.charger_totals), ("vehicles", page.vehicle_totals))
    ]
    unreported = [
        (u.charger_id, ", ".join(u.near_matches) or UNKNOWN, ", ".join(u.vehicle_ids))
        for u in page.unreported_chargers
    ]
    overlaps = [
        (
            o.vehicle_id,
            o.charger_id,
            o.other_charger_id,
            _time(o.start_time),
            _time(o.end_time),
        )
        for o in page.charger_overlaps
    ]
    return (
        '<h2 id="completeness">Data completeness</h2>'
        + _table(
            ("", "devices", "silent", "readings expected", "received", "gaps", "conflicts"),
            totals,
            (0,),
        )
        + '<p class="note">Expected readings count only the devices whose usual interval is '
        "known; received counts every device's.</p>"
        + _devices("Least complete chargers", completeness.chargers)
        + _devices("Least complete vehicles", completeness.vehicles)
        + "<h3>Chargers named by vehicles that never reported</h3>"
        + (
            _table(("charger id", "near matches (case)", "vehicles"), unreported, (0, 1, 2))
            if unreported
            else "<p>None.</p>"
        )
        + "<h3>Vehicles on two chargers at once</h3>"
        + (
            _table(("vehicle", "charger", "other charger", "from", "to"), overlaps, (0, 1, 2))
            if overlaps
            else "<p>None.</p>"
        )
    )


def render(
    fleet: Fleet,
    worst: list[Charger],
    series: Series,
    completeness: Completeness,
    *,
    target: str,
    generated: str,
) -> str:
    sections = [
        _header(fleet, target, generated),
        _outliers(fleet),
        _distribution(fleet),
        _worst(worst, series, fleet),
        _drift(fleet, {c.charger_id for c in worst}),
        _standby(fleet),
        _completeness(completeness),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Charger efficiency report {escape(iso(fleet.end))}</title>"
        f"<style>{STYLE}</style></head><body>" + "".join(sections) + "</body></html>\n"
    )
