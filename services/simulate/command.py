"""`energy-ingest simulate`: a deterministic fleet streamed into the running services."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from services import client
from services.common.config import Settings
from services.simulate.feed import feed
from services.simulate.fleet import MINUTE_US, Fleet, FleetConfig


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = commands.add_parser(
        "simulate", help="stream a simulated fleet of chargers and vehicles into the services"
    )
    simulate.add_argument("--chargers", type=int, default=10_000)
    simulate.add_argument("--vehicles", type=int, default=10_000)
    simulate.add_argument("--hours", type=float, default=24.0, help="simulated duration")
    simulate.add_argument("--seed", type=int, default=1, help="same seed, same readings")
    simulate.add_argument(
        "--mode",
        choices=("backfill", "live"),
        default="backfill",
        help="backfill: as fast as the services accept; live: accelerated real time",
    )
    simulate.add_argument(
        "--speed", type=float, default=60.0, help="live mode: simulated minutes per real minute"
    )
    simulate.add_argument(
        "--start",
        help="ISO time of the first reading (default: backfill yesterday 00:00 UTC; "
        "live: now minus the duration, so nothing lies in the future)",
    )
    simulate.add_argument("--streams", type=int, default=8, help="concurrent streams per service")
    simulate.add_argument("--batch-size", type=int, default=500, help="readings per message")
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
    minutes = round(args.hours * 60)
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
