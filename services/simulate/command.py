"""`energy-ingest simulate`: a deterministic fleet streamed into the running services."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from services import client
from services.common.config import Settings
from services.common.errors import ConfigError
from services.simulate.feed import feed
from services.simulate.fleet import MINUTE_US, Fleet, FleetConfig

# The default run: small enough to finish within a minute on a 2-core machine that also runs
# the services and PostgreSQL (a day of 200 chargers and 200 vehicles: 576,000 readings).
DEFAULT_CHARGERS = 200
DEFAULT_VEHICLES = 200
DEFAULT_HOURS = 24.0


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


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="stream a simulated fleet of chargers and vehicles into the services",
        description="Streams a deterministic fleet into MeterService (METER_TARGET) and "
        "VehicleService (VEHICLE_TARGET).",
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
        help="ISO time of the first reading (default: backfill yesterday 00:00 UTC; "
        "live: now minus the duration, so nothing lies in the future)",
    )
    simulate.add_argument(
        "--streams", type=_positive_int, default=8, help="concurrent streams per service"
    )
    simulate.add_argument(
        "--batch-size", type=_positive_int, default=500, help="readings per message"
    )
    simulate.set_defaults(handler=run)


def _start_us(args: argparse.Namespace, minutes: int) -> int:
    if args.start:
        start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
    elif args.mode == "live":
        start = datetime.now(UTC) - timedelta(minutes=minutes)
    else:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=1)
    return int(start.timestamp()) * 1_000_000 // MINUTE_US * MINUTE_US


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if not 0 <= args.vehicles <= args.chargers:
        raise ConfigError(
            f"--vehicles must be between 0 and --chargers ({args.chargers}): a vehicle only "
            f"uses the chargers of its own group of 20, got {args.vehicles}"
        )
    minutes = max(1, round(args.hours * 60))
    config = FleetConfig(
        chargers=args.chargers,
        vehicles=args.vehicles,
        minutes=minutes,
        start_us=_start_us(args, minutes),
        seed=args.seed,
    )
    first = datetime.fromtimestamp(config.start_us / 1e6, UTC)
    print(
        f"simulating {config.chargers:,} chargers and {config.vehicles:,} vehicles for "
        f"{minutes:,} minutes from {first:%Y-%m-%dT%H:%MZ} ({args.mode}) "
        f"into {settings.meter_target} and {settings.vehicle_target}",
        flush=True,
    )
    with (
        client.channel(settings.meter_target) as meter_channel,
        client.channel(settings.vehicle_target) as vehicle_channel,
    ):
        result = feed(
            Fleet(config),
            meter_channel,
            vehicle_channel,
            streams=args.streams,
            batch_size=args.batch_size,
            speed=args.speed if args.mode == "live" else None,
            progress=True,
        )
    for name, totals in (("meter", result.meter), ("vehicle", result.vehicle)):
        print(
            f"{name:<8} accepted {totals.accepted:>12,}  duplicates {totals.duplicates:>10,}  "
            f"rejected {totals.rejected:>8,}  resent streams {totals.resends}  "
            f"stream errors {len(totals.errors)}"
        )
        for error in totals.errors[:3]:
            print(f"         {error}")
    print(
        f"sent {result.sent:,} readings in {result.seconds:.1f} s = {result.rate:,.0f} readings/s"
    )
    failed = result.meter.errors or result.vehicle.errors
    return 1 if failed else 0
