"""`energy-ingest simulate`: a deterministic fleet streamed into the running services, with a
progress bar of what they acknowledged, a summary (after Ctrl-C too) and a grpcurl line that
asks AnalyticsService about one simulated vehicle over the simulated window."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from services import client
from services.analytics.service import MAX_WINDOW_US
from services.common.config import Settings, dial_address, grpcurl_command, grpcurl_flags
from services.common.contracts import FULL_NAMES
from services.common.errors import ConfigError
from services.common.security import channel_credentials
from services.simulate import recording
from services.simulate.feed import STREAM_READINGS, FeedResult, Progress, feed
from services.simulate.fleet import MAX_DEGRADATION, MINUTE_US, Faults, Fleet, FleetConfig

# The default run: small enough to finish within a minute on a 2-core machine that also runs
# the services and PostgreSQL (a day of 200 chargers and 200 vehicles: 576,000 readings).
DEFAULT_CHARGERS = 200
DEFAULT_VEHICLES = 200
DEFAULT_HOURS = 24.0
INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default; an option whose default is worked out at run time (None)
    says what it is in its own help instead of "(default: None)"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _points(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_DEGRADATION:
        raise argparse.ArgumentTypeError(f"must be in (0, {MAX_DEGRADATION}], got {text}")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="stream a simulated fleet of chargers and vehicles into the services",
        description="Streams a deterministic fleet into MeterService (METER_TARGET) and "
        "VehicleService (VEHICLE_TARGET), over TLS when TLS_CA_FILE is set (with "
        "TLS_CLIENT_CERT_FILE/TLS_CLIENT_KEY_FILE for mutual TLS). Progress counts readings "
        "the services acknowledged. Ctrl-C stops sending and prints what was acknowledged. "
        "The closing grpcurl line dials AnalyticsService at ANALYTICS_LISTEN_ADDR.",
        formatter_class=_HelpFormatter,
    )
    simulate.add_argument(
        "--chargers", type=_positive_int, default=DEFAULT_CHARGERS, help="chargers in the fleet"
    )
    simulate.add_argument(
        "--vehicles",
        type=int,
        default=DEFAULT_VEHICLES,
        help="vehicles in the fleet, at most --chargers",
    )
    simulate.add_argument(
        "--hours", type=_positive_float, default=DEFAULT_HOURS, help="simulated duration"
    )
    simulate.add_argument("--seed", type=int, default=1, help="same seed, same readings")
    simulate.add_argument(
        "--mode",
        choices=("backfill", "live"),
        default="backfill",
        help="backfill: as fast as the services accept; live: accelerated real time",
    )
    simulate.add_argument(
        "--speed",
        type=_positive_float,
        default=60.0,
        help="live mode: simulated minutes per real minute",
    )
    simulate.add_argument(
        "--start",
        type=_start_time,
        help="RFC 3339 time with a zone of the first reading, rounded down to the minute "
        "(default: backfill yesterday 00:00 UTC; live: now minus the duration, so nothing "
        "lies in the future)",
    )
    simulate.add_argument(
        "--streams", type=_positive_int, default=8, help="concurrent streams per service"
    )
    simulate.add_argument(
        "--batch-size", type=_positive_int, default=500, help="readings per message"
    )
    simulate.add_argument(
        "--ocpp",
        action="store_true",
        help="the chargers only, as OCPP 1.6 charge points (the ocpp library's client) sending "
        "their Wh register to the gateway at OCPP_LISTEN_ADDR, one MeterValues per simulated "
        "minute on connector 1 (meter id <CHG-…>:1)",
    )
    simulate.add_argument(
        "--output",
        type=Path,
        help="write the readings to this file as encoded IngestReadings messages instead of "
        "sending them (a load to replay without generating it while it is timed; the format "
        "is in services/simulate/recording.py; default: send them)",
    )
    faults = simulate.add_argument_group(
        "faults",
        "field faults in some entities' readings, for a report to find. The faulty chargers "
        "and vehicles are drawn from --seed and the fleet's size (spread over the fleet) and "
        "named in the summary",
    )
    faults.add_argument(
        "--degrading-chargers",
        type=_count,
        default=0,
        metavar="N",
        help="N chargers whose efficiency falls linearly over the run from their own to their "
        "own minus --degradation at its end: they draw AC = DC / (the efficiency of the minute)",
    )
    faults.add_argument(
        "--degradation",
        type=_points,
        default=0.06,
        metavar="POINTS",
        help=f"efficiency a degrading charger has lost by the run's end, in (0, {MAX_DEGRADATION}]",
    )
    faults.add_argument(
        "--silent-chargers",
        type=_count,
        default=0,
        metavar="N",
        help="N chargers, none of them degrading, that report no meter reading from halfway "
        "through the run (their vehicles still charge and report DC under their id)",
    )
    faults.add_argument(
        "--misnamed-chargers",
        type=_count,
        default=0,
        metavar="N",
        help="N vehicles that report every charger they use under its id in lower case "
        "(chg-00042 for CHG-00042) for the whole run",
    )
    simulate.set_defaults(handler=run)


def _start_time(text: str) -> datetime:
    try:
        start = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        start = None
    if start is None or start.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time with a zone, such as 2026-11-20T00:00:00Z"
        )
    return start


def _start_us(args: argparse.Namespace, minutes: int) -> int:
    if args.start:
        start = args.start
    elif args.mode == "live":
        start = datetime.now(UTC) - timedelta(minutes=minutes)
    else:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=1)
    return int(start.timestamp()) * 1_000_000 // MINUTE_US * MINUTE_US


def _stream_readings(total: int, streams: int) -> int:
    """Readings per IngestReadings stream. A stream is acknowledged only when it ends, so each
    of the 2 x `streams` senders ends about 20 of them in a run (a progress bar that moves);
    between 1,000 (per-stream overhead) and the feed's usual 50,000."""
    return max(1_000, min(STREAM_READINGS, total // (2 * streams * 20)))


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def grpcurl_line(
    analytics_addr: str,
    vehicle_id: str,
    start_us: int,
    end_us: int,
    flags: str = "-plaintext",
) -> tuple[str, bool]:
    """A ready-to-paste GetVehiclePerformance call for `vehicle_id` over [start_us, end_us)
    (micros), and whether the window had to be cut to AnalyticsService's 31-day limit (then it
    covers the last 31 days up to end_us)."""
    window_us = min(end_us - start_us, MAX_WINDOW_US)
    body = json.dumps(
        {"vehicleId": vehicle_id, "endTime": _iso(end_us), "window": f"{window_us // 1_000_000}s"}
    )
    line = (
        f"{grpcurl_command()} {flags} -d {shlex.quote(body)} {dial_address(analytics_addr)} "
        f"{FULL_NAMES['analytics']}/GetVehiclePerformance"
    )
    return line, end_us - start_us > MAX_WINDOW_US


def _minute(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%dT%H:%MZ")


def fault_lines(fleet: Fleet) -> list[str]:
    """The summary's lines naming the faulty chargers and vehicles, one per fault in use."""
    config, faults = fleet.config, fleet.faults
    lines = []
    if faults.degrading:
        last = config.minutes - 1
        lines.append(
            f"degrading chargers (efficiency falling linearly by {faults.degradation:g} from "
            f"{_minute(config.start_us)} to {_minute(config.start_us + last * MINUTE_US)}): "
            + ", ".join(
                f"{fleet.charger_ids[c]} {fleet.efficiency_at(c, 0):.4f} to "
                f"{fleet.efficiency_at(c, last):.4f}"
                for c in faults.degrading
            )
        )
    if faults.silent:
        silent_us = config.start_us + faults.silent_from * MINUTE_US
        lines.append(
            f"silent chargers (no meter readings from {_minute(silent_us)}, minute "
            f"{faults.silent_from} of {config.minutes}; their vehicles still report): "
            + ", ".join(fleet.charger_ids[c] for c in faults.silent)
        )
    if faults.misnamed:
        lines.append(
            "misnamed chargers (vehicles reporting their chargers' ids in lower case): "
            + ", ".join(fleet.vehicle_ids[v] for v in faults.misnamed)
        )
    return lines


def _check_faults(args: argparse.Namespace) -> Faults:
    """The faults the options ask for, or a ConfigError naming the option that does not fit."""
    if args.ocpp:
        if args.degrading_chargers or args.silent_chargers or args.misnamed_chargers:
            raise ConfigError(
                "--degrading-chargers, --silent-chargers and --misnamed-chargers do not apply "
                "to --ocpp: its charge points send registers of their own, not the fleet's"
            )
        return Faults()
    for option, count in (
        ("--degrading-chargers", args.degrading_chargers),
        ("--silent-chargers", args.silent_chargers),
    ):
        if count > args.chargers:
            raise ConfigError(f"{option} must be at most --chargers ({args.chargers}), got {count}")
    if args.degrading_chargers + args.silent_chargers > args.chargers:
        raise ConfigError(
            f"--degrading-chargers ({args.degrading_chargers}) and --silent-chargers "
            f"({args.silent_chargers}) must add up to at most --chargers ({args.chargers}): "
            "a charger that falls silent is not also a degrading one"
        )
    if args.misnamed_chargers > args.vehicles:
        raise ConfigError(
            f"--misnamed-chargers counts vehicles: it must be at most --vehicles "
            f"({args.vehicles}), got {args.misnamed_chargers}"
        )
    return Faults(
        degrading_chargers=args.degrading_chargers,
        degradation=args.degradation,
        silent_chargers=args.silent_chargers,
        misnamed_chargers=args.misnamed_chargers,
    )


def _summary(
    result: FeedResult, settings: Settings, start_us: int, faults: list[str] | None = None
) -> None:
    for name, totals in (("meter", result.meter), ("vehicle", result.vehicle)):
        print(
            f"{name:<8} accepted {totals.accepted:>12,}  duplicates {totals.duplicates:>10,}  "
            f"rejected {totals.rejected:>8,}  resent streams {totals.resends}  "
            f"stream errors {len(totals.errors)}"
        )
        for error in totals.errors[:3]:
            print(f"         {error}")
        for rejection in totals.rejections[:1]:
            print(
                f"         rejected, e.g. reading {rejection.index}: {rejection.field} "
                f"{rejection.description}"
            )
    figures = (
        f"{result.acknowledged:,} of {result.total:,} readings acknowledged in "
        f"{result.seconds:.1f} s = {result.rate:,.0f} readings/s"
    )
    if result.interrupted:
        print(f"interrupted: {figures}; the rest was not sent or not acknowledged")
    else:
        print(figures)
    for line in faults or ():
        print(line)
    if result.charging is None or result.end_us is None:
        print("no vehicle reading was acknowledged: nothing to ask AnalyticsService about")
        return
    line, clamped = grpcurl_line(
        settings.analytics_listen_addr,
        result.charging[0],
        start_us,
        result.end_us,
        grpcurl_flags(settings),
    )
    print(
        f"ask AnalyticsService about {result.charging[0]} over the simulated window "
        f"{_iso(start_us)} to {_iso(result.end_us)}:"
    )
    if clamped:
        print("(cut to the last 31 days of it: AnalyticsService answers for at most 31 days)")
    print(f"  {line}")


def run(args: argparse.Namespace) -> int:
    stop, abandon = threading.Event(), threading.Event()

    def interrupted(signum: int, frame: FrameType | None) -> None:
        # os.write: a signal handler must not re-enter the buffered stderr.
        if stop.is_set():
            abandon.set()
            os.write(2, b"\nnot waiting any longer\n")
        else:
            stop.set()
            os.write(
                2,
                b"\ninterrupted: sending nothing more, waiting for the services to acknowledge "
                b"what they got (Ctrl-C again: stop waiting)\n",
            )

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        return _run(args, stop, abandon)
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(args: argparse.Namespace, stop: threading.Event, abandon: threading.Event) -> int:
    settings = Settings.from_env()
    if not args.ocpp and not 0 <= args.vehicles <= args.chargers:
        raise ConfigError(
            f"--vehicles must be between 0 and --chargers ({args.chargers}): a vehicle only "
            f"uses the chargers of its own group of 20, got {args.vehicles}"
        )
    faults = _check_faults(args)
    minutes = max(1, round(args.hours * 60))
    config = FleetConfig(
        chargers=args.chargers,
        vehicles=args.vehicles,
        minutes=minutes,
        start_us=_start_us(args, minutes),
        seed=args.seed,
        faults=faults,
    )
    fleet = Fleet(config)
    first = datetime.fromtimestamp(config.start_us / 1e6, UTC)
    if args.ocpp:
        return _run_ocpp(args, settings, config, stop)
    if args.output is not None:
        try:
            with args.output.open("wb") as out:
                meters, vehicles = recording.record(fleet, out, args.batch_size)
        except OSError as error:
            raise ConfigError(f"--output: {error}") from None
        print(
            f"wrote {meters:,} meter and {vehicles:,} vehicle readings of {config.chargers:,} "
            f"chargers and {config.vehicles:,} vehicles over {minutes:,} minutes from "
            f"{first:%Y-%m-%dT%H:%MZ} to {args.output}"
        )
        for line in fault_lines(fleet):
            print(line)
        return 0
    print(
        f"simulating {config.chargers:,} chargers and {config.vehicles:,} vehicles for "
        f"{minutes:,} minutes from {first:%Y-%m-%dT%H:%MZ} ({args.mode}) "
        f"into {settings.meter_target} and {settings.vehicle_target}; Ctrl-C stops",
        flush=True,
    )
    credentials = channel_credentials(settings)
    with (
        client.channel(settings.meter_target, credentials) as meter_channel,
        client.channel(settings.vehicle_target, credentials) as vehicle_channel,
    ):
        result = feed(
            fleet,
            meter_channel,
            vehicle_channel,
            streams=args.streams,
            batch_size=args.batch_size,
            stream_readings=_stream_readings(sum(fleet.reading_count()), args.streams),
            speed=args.speed if args.mode == "live" else None,
            progress=True,
            stop=stop,
            abandon=abandon,
        )
        _summary(result, settings, config.start_us, fault_lines(fleet))
    if result.interrupted:
        return INTERRUPTED
    failed = result.meter.errors or result.vehicle.errors
    return 1 if failed or result.meter.rejected or result.vehicle.rejected else 0


def _run_ocpp(
    args: argparse.Namespace, settings: Settings, config: FleetConfig, stop: threading.Event
) -> int:
    from services.ocpp.charge_points import ChargePointRun, drive_blocking

    uri = f"ws://{dial_address(settings.ocpp_listen_addr)}"
    print(
        f"simulating {config.chargers:,} OCPP 1.6 charge points for {config.minutes:,} minutes "
        f"({args.mode}) against {uri}; Ctrl-C stops",
        flush=True,
    )
    run = ChargePointRun(config.chargers)
    bar = Progress(lambda: run.confirmed, config.chargers * config.minutes, enabled=True)
    try:
        drive_blocking(
            uri,
            config.chargers,
            config.minutes,
            period_s=60.0 / args.speed if args.mode == "live" else 0.0,
            start_us=config.start_us,
            prefix="CHG",
            stop_when=stop.is_set,
            run=run,
        )
    finally:
        bar.finish()
    print(
        f"{run.confirmed:,} MeterValues confirmed by the gateway ({run.refused:,} answered "
        f"CALLERROR and sent again, {run.failed_connections} charge points could not connect) "
        f"in {run.seconds:.1f} s = {run.per_s:,.0f} readings/s"
    )
    if run.first_failure:
        print(f"first charge point that could not connect: {run.first_failure}")
    if stop.is_set():
        return INTERRUPTED
    return 1 if run.failed_connections else 0
