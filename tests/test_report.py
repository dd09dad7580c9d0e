"""`energy-ingest report`: its pure pieces (window and time parsing, the terminal table with
unknown figures, the choice of the worst chargers, the page's self-containment), then the real
command against the three services on real PostgreSQL with a small fleet made by hand, its
page rendered by a headless Chromium with no network."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from energy.analytics.v1 import analytics_pb2
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from PIL import Image

from services.report import model, page
from services.report.fetch import Completeness, Series
from services.report.model import Charger, Figures, Fleet
from tests.conftest import InProcessServer, start_in_process

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"

# --- the pure pieces (no database, no server) -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("90m", timedelta(minutes=90)),
        ("3d", timedelta(days=3)),
        ("1h30m", timedelta(minutes=90)),
        ("3600s", timedelta(hours=1)),
        ("1.5h", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
        ("31d", timedelta(days=31)),
    ],
)
def test_window_parses(text, expected):
    assert model.parse_window(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "24x", "-1h", "0h", "0s", "32d", "1h 30m", "1w"])
def test_window_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError):
        model.parse_window(text)


def test_end_time_needs_a_zone_and_is_kept_in_utc():
    assert model.parse_end_time("2026-02-10T14:00:00+02:00") == datetime(
        2026, 2, 10, 12, tzinfo=UTC
    )
    assert model.parse_end_time("2026-02-10T12:00:00Z") == datetime(2026, 2, 10, 12, tzinfo=UTC)
    for text in ("2026-02-10T12:00:00", "yesterday", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            model.parse_end_time(text)


def test_buckets_are_hours_ending_at_the_end_and_capped():
    end = datetime(2026, 2, 10, 12, tzinfo=UTC)
    step, ranges = model.buckets(end - timedelta(minutes=150), end)
    assert step == timedelta(hours=1)
    assert ranges == [
        (end - timedelta(minutes=150), end - timedelta(hours=2)),  # the first is shorter
        (end - timedelta(hours=2), end - timedelta(hours=1)),
        (end - timedelta(hours=1), end),
    ]
    step, ranges = model.buckets(end - timedelta(days=7), end)
    assert (step, len(ranges)) == (timedelta(hours=1), 168)
    step, ranges = model.buckets(end - timedelta(days=31), end)
    assert step == timedelta(hours=5) and len(ranges) <= model.MAX_POINTS
    assert ranges[0][0] == end - timedelta(days=31) and ranges[-1][1] == end


def test_unset_figures_are_unknown_never_zero():
    empty = Charger.of(analytics_pb2.ChargerEfficiency(charger_id="CHG-X"))
    assert empty.current.efficiency is None and empty.current.loss_kwh is None
    assert empty.current.standby_kwh is None and empty.change is None
    zero = analytics_pb2.ChargerFigures(
        energy_consumed_ac=0.0, standby_energy_kwh=0.0, energy_loss_kwh=0.0
    )
    figures = Figures.of(zero)
    assert (figures.ac_kwh, figures.standby_kwh, figures.loss_kwh) == (0.0, 0.0, 0.0)


def charger(charger_id, now, before=None, *reasons, loss=None, standby=None):
    change = None if now is None or before is None else now - before
    return Charger(
        charger_id,
        Figures(efficiency=now, loss_kwh=loss, standby_kwh=standby, sessions=3),
        Figures(efficiency=before),
        change,
        tuple(reasons),
    )


def test_the_table_ranks_and_shows_unknown_as_a_dash():
    rows = [
        charger("CHG-BAD", 0.8, 0.9, "below fleet", "dropped", loss=12.5, standby=0.25),
        charger("CHG-NEW", 0.91),  # nothing before: before and change unknown
    ]
    lines = model.table(rows).splitlines()
    assert lines[0].split() == [
        "#", "charger", "eff", "now", "before", "change", "loss", "kWh", "standby", "kWh", "outlier"
    ]  # fmt: skip
    assert lines[1].split() == [
        "1", "CHG-BAD", "80.0%", "90.0%", "-10.0", "pt", "12.50", "0.25", "below", "fleet,",
        "dropped",
    ]  # fmt: skip
    assert lines[2].split() == ["2", "CHG-NEW", "91.0%", "—", "—", "—", "—"]
    assert "0.00" not in lines[2]
    assert (model.points(-0.00001), model.points(-0.0304)) == ("+0.0 pt", "-3.0 pt")


def test_worst_puts_outliers_first_and_leaves_unknown_out():
    fleet = [
        charger("CHG-LOW", 0.84),
        charger("CHG-DROP", 0.90, 0.95, "dropped"),
        charger("CHG-BELOW", 0.80, None, "below fleet"),
        charger("CHG-OK", 0.92),
        charger("CHG-NONE", None),
    ]
    assert [c.charger_id for c in model.worst(fleet)] == [
        "CHG-BELOW",
        "CHG-DROP",
        "CHG-LOW",
        "CHG-OK",
    ]
    assert [c.charger_id for c in model.worst(fleet, 2)] == ["CHG-BELOW", "CHG-DROP"]
    assert [c.charger_id for c in model.drift(fleet)] == ["CHG-DROP"]


# Anything that would make a browser fetch: a script, a stylesheet or font link, an image, a
# frame, an @import, and any href/src/url() that is not a fragment of the page itself.
FETCHING = re.compile(r"<(script|link|img|iframe|object|embed|video|audio|source)\b|@import", re.I)
REFERENCE = re.compile(
    r"""(?:\bhref|\bsrc|\bsrcset|\baction)\s*=\s*["']?([^"'\s>]*)|url\(\s*["']?([^"')]*)""", re.I
)


def assert_self_contained(html: str) -> None:
    assert not FETCHING.search(html), FETCHING.search(html)
    for match in REFERENCE.finditer(html):
        reference = match.group(1) if match.group(1) is not None else match.group(2)
        assert reference.startswith("#"), f"the page refers to {reference!r}"


def test_the_page_is_self_contained_and_says_what_is_unavailable():
    end = datetime(2026, 2, 10, 6, tzinfo=UTC)
    fleet = Fleet(
        end - timedelta(hours=3),
        end,
        [
            charger("CHG-<b>", 0.8, 0.9, "below fleet"),
            charger("CHG-2", 0.92, standby=1.5),
            charger("CHG-3", None),
        ],
        median=0.91,
    )
    chosen = model.worst(fleet.chargers)
    step, ranges = model.buckets(fleet.start, fleet.end)
    series = Series(step, ranges, {c.charger_id: [0.9, None, 0.8] for c in chosen})
    html = page.render(
        fleet,
        chosen,
        series,
        Completeness(unavailable="not served (UNIMPLEMENTED)"),
        target="localhost:50053",
        generated="now",
    )
    assert_self_contained(html)
    assert "CHG-&lt;b&gt;" in html and "CHG-<b>" not in html
    assert 'id="completeness-unavailable"' in html and "not served (UNIMPLEMENTED)" in html
    assert html.count('class="chart sparkline"') == 2
    assert html.count("<svg") == 2 + 3  # the sparklines, the histogram, drift and standby


def test_an_efficiency_whose_meter_covers_part_of_the_sessions_is_listed_apart():
    """CHG-HALF's meter stopped halfway: 160 % efficient at 50 % coverage. It is not ranked
    among the worst, not drawn in the histogram, not in drift; it is listed apart, flags and
    all."""
    end = datetime(2026, 2, 10, 6, tzinfo=UTC)
    half = Charger(
        "CHG-HALF",
        Figures(
            efficiency=1.6,
            coverage=0.5,
            sessions=3,
            flags=("meter data partial", "efficiency out of range"),
        ),
        Figures(efficiency=0.9),
        0.7,
    )
    fleet = Fleet(
        end - timedelta(hours=3),
        end,
        [charger("CHG-1", 0.9, 0.95), charger("CHG-2", 0.92), half],
        median=0.91,
    )
    assert [c.charger_id for c in model.worst(fleet.chargers)] == ["CHG-1", "CHG-2"]
    assert [c.charger_id for c in model.drift(fleet.chargers)] == ["CHG-1"]
    assert [c.charger_id for c in model.untrusted(fleet.chargers)] == ["CHG-HALF"]
    chosen = model.worst(fleet.chargers)
    step, ranges = model.buckets(fleet.start, fleet.end)
    series = Series(step, ranges, {c.charger_id: [0.9] * len(ranges) for c in chosen})
    html = page.render(
        fleet, chosen, series, Completeness(unavailable="-"), target="t", generated="now"
    )
    assert "2 chargers with a trusted efficiency; 1 whose efficiency is flagged" in html
    assert "Efficiencies not to be trusted" in html
    assert "<td>160.0%</td><td>50.0%</td>" in html
    assert 'data-charger="CHG-HALF"' not in html  # no card among the worst


def test_a_fleet_without_standby_gets_a_sentence_not_an_empty_chart():
    end = datetime(2026, 2, 10, 6, tzinfo=UTC)
    fleet = Fleet(
        end - timedelta(hours=3),
        end,
        [charger("CHG-1", 0.9, standby=0.0), charger("CHG-2", 0.92, standby=0.0)],
        median=0.91,
    )
    assert model.standby(fleet.chargers) == []
    chosen = model.worst(fleet.chargers)
    step, ranges = model.buckets(fleet.start, fleet.end)
    series = Series(step, ranges, {c.charger_id: [0.9] * len(ranges) for c in chosen})
    html = page.render(
        fleet, chosen, series, Completeness(unavailable="-"), target="t", generated="now"
    )
    assert 'id="standby"' not in html
    assert "No charger drew standby energy" in html and "(2 chargers whose standby" in html


# --- the command against the services ---------------------------------------------------------

MINUTE = timedelta(minutes=1)
START = datetime(2026, 2, 10, tzinfo=UTC)
END = START + timedelta(hours=6)
WINDOW = "3h"
DC = 0.5  # kWh a minute while charging
STANDBY = 0.015625  # kWh a minute while idle
# Each charger's efficiency in the window before (00:00-03:00) and in the window (03:00-06:00):
# CHG-005 fell from 0.90 to 0.80, the only one far below the others; CHG-008 is new (no reading
# before 03:00: its efficiency before, and its change, are unknown).
EFFICIENCY: dict[str, tuple[float | None, float]] = {
    "CHG-001": (0.92, 0.92),
    "CHG-002": (0.925, 0.925),
    "CHG-003": (0.93, 0.93),
    "CHG-004": (0.915, 0.915),
    "CHG-005": (0.90, 0.80),
    "CHG-006": (0.921, 0.921),
    "CHG-008": (None, 0.926),
}
IDLE = "CHG-007"  # a meter only: standby, no session, efficiency unknown
MISNAMED = "VH-009"  # charges on chg-002, an id no meter reports under


def stamp(moment: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


def fleet_readings() -> tuple[list[meter_pb2.MeterReading], list[vehicle_pb2.VehicleReading]]:
    """Six hours, a reading a minute. Each charger's vehicle charges the first half hour of
    every hour (readings at :01-:30), three sessions a window; its meter reads DC / efficiency
    then and STANDBY otherwise."""
    meters, vehicles = [], []
    minutes = int((END - START) / MINUTE)
    for number, (charger_id, (before, now)) in enumerate(EFFICIENCY.items(), 1):
        for minute in range(1, minutes + 1):
            moment = START + minute * MINUTE
            charging = 1 <= minute % 60 <= 30
            efficiency = before if moment <= START + timedelta(hours=3) else now
            if efficiency is None:
                continue
            meters.append(
                meter_pb2.MeterReading(
                    meter_id=charger_id,
                    kwh_consumed_ac=DC / efficiency if charging else STANDBY,
                    voltage=230.0,
                    timestamp=stamp(moment),
                )
            )
            if charging:
                vehicles.append(
                    vehicle_pb2.VehicleReading(
                        vehicle_id=f"VH-{number:03d}",
                        charger_id=charger_id,
                        soc=50.0,
                        kwh_delivered_dc=DC,
                        timestamp=stamp(moment),
                    )
                )
    for minute in range(1, minutes + 1):
        moment = START + minute * MINUTE
        meters.append(
            meter_pb2.MeterReading(
                meter_id=IDLE, kwh_consumed_ac=STANDBY, voltage=230.0, timestamp=stamp(moment)
            )
        )
        if 1 <= minute % 60 <= 30:
            vehicles.append(
                vehicle_pb2.VehicleReading(
                    vehicle_id=MISNAMED,
                    charger_id="chg-002",
                    soc=50.0,
                    kwh_delivered_dc=DC,
                    timestamp=stamp(moment),
                )
            )
    return meters, vehicles


@pytest.fixture
def services(database_url) -> Iterator[InProcessServer]:
    """The three services in process on port 0, fed the fleet; yields AnalyticsService."""
    meter = start_in_process("meter", database_url)
    vehicle = start_in_process("vehicle", database_url)
    analytics = start_in_process(
        "analytics", database_url, meter_target=meter.target, vehicle_target=vehicle.target
    )
    try:
        meters, vehicles = fleet_readings()
        with meter.channel() as channel:
            response = meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
                iter([meter_service_pb2.IngestReadingsRequest(readings=meters)]), timeout=60
            )
            assert response.accepted == len(meters)
        with vehicle.channel() as channel:
            response = vehicle_service_pb2_grpc.VehicleServiceStub(channel).IngestReadings(
                iter([vehicle_service_pb2.IngestReadingsRequest(readings=vehicles)]), timeout=60
            )
            assert response.accepted == len(vehicles)
        yield analytics
    finally:
        for server in (analytics, vehicle, meter):
            server.running.shutdown(5)


def report(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "report", *args],
        env={**os.environ, "ANALYTICS_TARGET": target},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium with no network: a dead proxy for every scheme and no name
    resolution, so the page renders only if it needs nothing from outside."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install -y chromium"
    with tempfile.TemporaryDirectory(prefix="report-chromium-") as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                "--proxy-server=http://127.0.0.1:9",
                "--proxy-bypass-list=<-loopback>",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "HOME": profile},
        )


@pytest.mark.e2e
def test_report_ranks_the_worst_charger_first_and_renders_offline(services, tmp_path):
    output = tmp_path / "energy-report.html"
    result = report(
        services.target,
        *("--end-time", "2026-02-10T06:00:00Z", "--window", WINDOW, "--output", str(output)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert output.is_file()
    assert result.stdout.strip().splitlines()[-1] == f"wrote {output}"

    # The terminal: CHG-005 ranked first, an outlier both ways, its figures beside it.
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["#", "charger"])
    first = lines[header + 1].split()
    assert first[:4] == ["1", "CHG-005", "80.0%", "90.0%"], lines[header + 1]
    assert "below fleet, dropped" in lines[header + 1]
    rows = {line.split()[1]: line for line in lines[header + 1 : header + 1 + len(EFFICIENCY)]}
    assert sorted(rows) == sorted(EFFICIENCY)
    assert rows["CHG-008"].split()[2:5] == ["92.6%", "—", "—"], rows["CHG-008"]
    assert IDLE not in result.stdout.split("worst", 1)[1].rsplit("wrote", 1)[0]

    html = output.read_text()
    assert_self_contained(html)
    worst = re.findall(r'<div class="card worst" data-charger="([^"]+)"', html)
    assert worst[0] == "CHG-005" and sorted(worst) == sorted(EFFICIENCY)
    assert html.count('class="chart sparkline"') == len(worst)
    assert 'id="histogram"' in html and 'id="drift"' in html and 'id="standby"' in html
    charts = 1 + len(worst) + 2  # histogram, a sparkline per worst charger, drift, standby
    assert html.count("<svg") == charts
    # CHG-008 has no efficiency before: unknown, not 0.
    card = re.search(r'data-charger="CHG-008">(.*?)</div>', html, flags=re.DOTALL)
    assert card and "<dt>before</dt><dd>—</dd><dt>change</dt><dd>—</dd>" in card.group(1)

    # Data completeness (GetDataCompleteness): every device reported, and VH-009's chg-002 is
    # a charger that never reported, the same as CHG-002 but for case.
    assert "warning" not in result.stderr, result.stderr
    assert 'id="completeness"' in html and "completeness-unavailable" not in html
    totals = re.findall(r'<tr><td class="text">(chargers|vehicles)</td><td>(\d+)</td>', html)
    assert totals == [
        ("chargers", str(len(EFFICIENCY) + 1)),
        ("vehicles", str(len(EFFICIENCY) + 1)),
    ]
    unreported = re.search(
        r'<td class="text">chg-002</td><td class="text">([^<]*)</td><td class="text">([^<]*)', html
    )
    assert unreported and unreported.groups() == ("CHG-002", MISNAMED), html

    # Rendered with no network: every chart in the DOM, and a screenshot that is not blank.
    dom = chromium("--dump-dom", output.as_uri())
    assert dom.returncode == 0, dom.stderr
    assert dom.stdout.count("<svg") == charts
    screenshot = tmp_path / "report.png"
    shot = chromium(f"--screenshot={screenshot}", "--window-size=1200,2400", output.as_uri())
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr
    with Image.open(screenshot) as image:
        pixels = image.convert("RGB")
        colours = pixels.getcolors(maxcolors=1 << 24) or []
        non_white = 0
        for count, rgb in colours:
            assert isinstance(rgb, tuple)
            if min(rgb) < 245:
                non_white += count
        total = pixels.width * pixels.height
    assert len(colours) > 10, "a blank screenshot"
    assert 0.02 < non_white / total < 0.9, f"{non_white} of {total} pixels not white"


@pytest.mark.e2e
def test_an_unreachable_analytics_service_is_one_line_and_exit_1(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = tmp_path / "report.html"
    result = report(f"127.0.0.1:{port}", "--output", str(output), "--timeout", "20")
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("energy-ingest")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot reach AnalyticsService at 127.0.0.1:{port}" in errors[0]
    assert not output.exists()


def test_chromium_is_installed():
    """The render test needs Debian's chromium (.ci/run installs it): missing is a failure."""
    assert shutil.which("chromium") or Path(CHROMIUM).exists()
