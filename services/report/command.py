"""`energy-ingest report`: the fleet's charger efficiency over a window, from AnalyticsService
(ANALYTICS_TARGET), as one self-contained HTML file and a short ranked table in the terminal."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from services.common.config import Settings
from services.common.errors import ConfigError
from services.common.security import channel_credentials
from services.report import fetch, page
from services.report.model import (
    WORST_PRINTED,
    Charger,
    Fleet,
    default_end_time,
    iso,
    parse_end_time,
    parse_window,
    percent,
    table,
    untrusted,
    worst,
)

DEFAULT_OUTPUT = Path("energy-report.html")
DEFAULT_TIMEOUT = 600.0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default; one worked out at run time (None) says so in its help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = commands.add_parser(
        "report",
        help="write an HTML report of the chargers' efficiency and the data's completeness",
        description="Asks AnalyticsService (ANALYTICS_TARGET, default localhost:50053; over "
        "TLS when TLS_CA_FILE is set, with TLS_CLIENT_CERT_FILE/TLS_CLIENT_KEY_FILE for mutual "
        "TLS) for every charger's efficiency over the window and the window before, the worst "
        "chargers' efficiency hour by hour and the data's completeness, writes them as one "
        "self-contained HTML file and prints the worst chargers.",
        formatter_class=_HelpFormatter,
    )
    report.add_argument(
        "--end-time",
        type=parse_end_time,
        default=None,
        metavar="RFC3339",
        help="exclusive end of the window, with a zone (2026-02-11T00:00:00Z); "
        "default: now, down to the minute",
    )
    report.add_argument(
        "--window",
        type=parse_window,
        default="24h",
        help="length of the window: 24h, 90m, 3d, 1h30m (at most 31 days)",
    )
    report.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="the HTML file to write"
    )
    report.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="deadline of each call to AnalyticsService (a fleet-wide listing of a thousand "
        "chargers takes tens of seconds)",
    )
    report.set_defaults(handler=run)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _failure(target: str, error: grpc.RpcError) -> str:
    code = error.code()
    details = (error.details() or "").strip().splitlines()
    reason = details[0] if details else ""
    # AnalyticsService's own UNAVAILABLE names the service behind it that it could not reach.
    downstream = reason.startswith(("MeterService", "VehicleService"))
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in reason.lower() and not downstream:
        return f"cannot reach AnalyticsService at {target} (ANALYTICS_TARGET): {reason}"
    name = code.name if code is not None else "UNKNOWN"
    return f"AnalyticsService at {target} answered {name}: {reason}"


def _check_output(output: Path) -> Path:
    """The absolute path to write, its directory checked before the calls that take long."""
    path = output.expanduser().resolve()
    if path.is_dir():
        raise ConfigError(f"--output {output} is a directory")
    if not path.parent.is_dir():
        raise ConfigError(f"--output {output}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise ConfigError(f"--output {output}: directory {path.parent} is not writable")
    return path


def _write(path: Path, text: str) -> None:
    """Written beside its place and renamed: a reader never sees half a report."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    target = settings.analytics_target
    window: timedelta = args.window
    end: datetime = args.end_time or default_end_time()
    path = _check_output(args.output)
    credentials = channel_credentials(settings)
    with fetch.channel(target, credentials) as channel:
        analytics = fetch.Analytics(channel, args.timeout)
        _say(
            f"asking AnalyticsService at {target} for every charger's efficiency from "
            f"{iso(end - window)} to {iso(end)} (and the window before)"
        )
        try:
            fleet = analytics.fleet(end, window)
        except grpc.RpcError as error:
            print(f"energy-ingest report: {_failure(target, error)}", file=sys.stderr)
            return 1
        chosen = worst(fleet.chargers)
        _say(
            f"{len(fleet.chargers):,} chargers; the efficiency over time of the {len(chosen)} worst"
            if chosen
            else f"{len(fleet.chargers):,} chargers; none with a known efficiency to chart"
        )
        try:
            series = analytics.series([c.charger_id for c in chosen], fleet.start, fleet.end)
        except grpc.RpcError as error:
            print(f"energy-ingest report: {_failure(target, error)}", file=sys.stderr)
            return 1
        try:
            completeness = analytics.completeness(end, window)
        except grpc.RpcError as error:
            completeness = fetch.Completeness(unavailable=_completeness_failure(target, error))
            print(
                f"energy-ingest report: warning: {completeness.unavailable}; the report's "
                "completeness section says it is unavailable",
                file=sys.stderr,
            )
    generated = f"generated {iso(datetime.now(UTC))}"
    html = page.render(fleet, chosen, series, completeness, target=target, generated=generated)
    try:
        _write(path, html)
    except OSError as error:
        raise ConfigError(f"--output {args.output}: {error.strerror or error}") from None
    _print_summary(fleet, chosen)
    print(f"wrote {path}")
    return 0


def _completeness_failure(target: str, error: grpc.RpcError) -> str:
    if error.code() == grpc.StatusCode.UNIMPLEMENTED:
        return f"AnalyticsService at {target} does not serve GetDataCompleteness (UNIMPLEMENTED)"
    return f"GetDataCompleteness: {_failure(target, error)}"


def _print_summary(fleet: Fleet, chosen: list[Charger]) -> None:
    known = fleet.known()
    doubtful = len(untrusted(fleet.chargers, count=len(fleet.chargers)))
    print(
        f"{len(fleet.chargers):,} chargers from {iso(fleet.start)} to {iso(fleet.end)}: "
        f"{len(known):,} with a known efficiency"
        + (f" ({doubtful:,} of them flagged, not ranked)" if doubtful else "")
        + f", fleet median {percent(fleet.median)}, {len(fleet.outliers()):,} outliers"
    )
    if not chosen:
        print("no charger has a trusted efficiency over the window")
        return
    shown = chosen[:WORST_PRINTED]
    print(f"worst {len(shown)} (outliers first, then the lowest efficiency):")
    print(table(shown))
