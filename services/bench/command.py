"""`energy-ingest bench`: every measurement of the benchmark in one run, on one machine, against
a fresh database; prints a markdown table and writes a JSON file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import psycopg

from services.bench import phases
from services.common.config import Settings
from services.common.databases import create_database, drop_database
from services.common.embedded import EmbeddedPostgres
from services.launcher import peak_rss_mib, start_serving
from services.simulate.fleet import MINUTE_US, FleetConfig


@dataclass(frozen=True)
class Plan:
    chargers: int
    vehicles: int
    ingest_minutes: int
    streams: int
    per_request_sample: int
    unary_seconds: float
    unary_in_flight: tuple[int, ...]
    fleet_streams: int
    fleet_batches: int
    analytics_calls: int
    status_calls: int
    mixed_seconds: float
    ocpp_charge_points: int
    ocpp_values: int
    day: bool
    growth_minutes: int
    growth_history_rows: int
    long_window_days: int
    long_window_vehicles: int
    long_window_calls: int
    observability_runs: int
    charger_listing_calls: int


QUICK = Plan(
    chargers=1_000,
    vehicles=1_000,
    ingest_minutes=30,
    streams=4,
    per_request_sample=1_000,
    unary_seconds=3,
    unary_in_flight=(10, 50),
    fleet_streams=200,
    fleet_batches=2,
    analytics_calls=100,
    status_calls=10,
    mixed_seconds=5,
    ocpp_charge_points=100,
    ocpp_values=5,
    day=False,
    growth_minutes=50,
    growth_history_rows=2_000_000,
    long_window_days=3,
    long_window_vehicles=2,
    long_window_calls=10,
    observability_runs=1,
    charger_listing_calls=2,
)
FULL = Plan(
    chargers=10_000,
    vehicles=10_000,
    ingest_minutes=60,
    streams=8,
    per_request_sample=20_000,
    unary_seconds=20,
    unary_in_flight=(10, 50),
    fleet_streams=10_000,
    fleet_batches=3,
    analytics_calls=1_000,
    status_calls=50,
    mixed_seconds=30,
    ocpp_charge_points=1_000,
    ocpp_values=30,
    day=True,
    growth_minutes=50,
    growth_history_rows=100_000_000,
    long_window_days=31,
    long_window_vehicles=10,
    long_window_calls=200,
    observability_runs=3,
    charger_listing_calls=1,
)
DAY_START_US = 1_770_681_600 * 1_000_000  # 2026-02-10T00:00:00Z
# The growth phase's loads: days after everything else, its filled history the days before.
GROWTH_START_US = DAY_START_US + 30 * 24 * 60 * MINUTE_US
# The long-window phase's 31 days end 29 days before the day phase's: no other phase writes there.
LONG_WINDOW_START_US = DAY_START_US - 60 * 24 * 60 * MINUTE_US


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser("bench", help="measure ingest, limits, fleet, analytics, status")
    bench.add_argument("--quick", action="store_true", help="a small run (under 2 minutes)")
    bench.add_argument("--output", type=Path, help="JSON file (default bench-results/…)")
    bench.add_argument("--skip", action="append", default=[], help="skip a phase (repeatable)")
    bench.set_defaults(handler=run)


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(total_kib / 2**20, 1),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "git_commit": commit or None,
    }


def benchmark(server_url: str, plan: Plan, skip: set[str]) -> dict[str, Any]:
    """Runs every phase in a database created for the run and dropped after it."""
    database_url = create_database(server_url, "energy_bench", migrate=True)
    settings = Settings(database_url=database_url)
    results: dict[str, Any] = {"plan": asdict(plan), "machine": machine()}
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SHOW server_version").fetchone()
        results["machine"]["postgresql"] = row[0] if row else None
    config = FleetConfig(
        chargers=plan.chargers,
        vehicles=plan.vehicles,
        minutes=plan.ingest_minutes,
        start_us=DAY_START_US,
    )
    env = {"DATABASE_URL": database_url}
    services = []
    scratch = Path(tempfile.mkdtemp(prefix="energy-bench-"))
    try:
        # The load is generated and encoded before any clock starts (TSBS-style): the loader
        # process only sends it.
        hour = scratch / "hour.readings"
        readings = phases.record(config, hour)
        results["readings"] = readings
        if "limit" not in skip:
            results["limit_per_s"] = phases.copy_limit(database_url, hour)
            meters, vehicles = phases.fleet_rows(config)
            results["writer_sql_per_s"] = phases.limit(
                database_url,
                meters,
                vehicles,
                writers=settings.writer_count,
                batch_size=settings.writer_batch_size,
            )
            del meters, vehicles
        phases.truncate(database_url)
        meter = start_serving("meter", env)
        vehicle = start_serving("vehicle", env)
        services += [meter, vehicle]
        fed = phases.load(hour, meter, vehicle, plan.streams)
        assert fed.accepted == readings, fed
        results["ingest_per_s"] = fed.per_s
        results["ingest"] = asdict(fed)
        if "meter-forms" not in skip:
            meter_rows, _ = phases.fleet_rows(config)
            results["meter_forms"] = phases.meter_forms(meter.target, meter_rows, plan.streams)
            del meter_rows
        if "per-request" not in skip:
            sample, _ = phases.fleet_rows(
                FleetConfig(
                    chargers=plan.per_request_sample,
                    vehicles=0,
                    minutes=1,
                    start_us=DAY_START_US - 24 * 60 * MINUTE_US,
                    seed=3,
                )
            )
            results["per_request_per_s"] = phases.per_request(
                database_url, [("PR-" + row[0], *row[1:]) for row in sample]
            )
        if "unary" not in skip:
            # Each run sends its own keys: a day apart, before the ingest phase's data.
            results["unary"] = [
                asdict(
                    phases.unary(
                        meter.target,
                        meter.pid,
                        in_flight,
                        plan.unary_seconds,
                        (DAY_START_US - (run + 2) * 24 * 60 * MINUTE_US) // 1_000_000,
                    )
                )
                for run, in_flight in enumerate(plan.unary_in_flight)
            ]
        if "ocpp" not in skip:
            # A tenth of the fleet's chargers reporting every second instead of every minute.
            results["ocpp"] = asdict(
                phases.ocpp(
                    meter,
                    plan.ocpp_charge_points,
                    plan.ocpp_values,
                    DAY_START_US - 5 * 24 * 60 * MINUTE_US,
                )
            )
        if plan.day and "day" not in skip:
            phases.truncate(database_url)
            day = FleetConfig(
                chargers=plan.chargers, vehicles=plan.vehicles, minutes=1_440, start_us=DAY_START_US
            )
            day_file = scratch / "day.readings"
            phases.record(day, day_file)
            results["day"] = asdict(phases.load(day_file, meter, vehicle, plan.streams))
            day_file.unlink()
            config = day
        if "rollups" not in skip:
            # The maintenance loop's rollups of what the ingest (or the day) phase stored.
            results["rollups"] = asdict(
                phases.rollup_cost(
                    database_url, config.start_us, config.start_us + config.minutes * MINUTE_US
                )
            )
        if "status" not in skip:
            # As served (pages kept up to STATUS_PAGE_MAX_AGE_MS, 1 s), and every page read by
            # a second MeterService on the same database.
            results["status"] = asdict(phases.status_listing(meter.target, plan.status_calls))
            uncached = start_serving("meter", {**env, "STATUS_PAGE_MAX_AGE_MS": "0"})
            services.append(uncached)
            results["status_uncached"] = asdict(
                phases.status_listing(uncached.target, plan.status_calls)
            )
        if "analytics" not in skip:
            analytics = start_serving(
                "analytics", {**env, "METER_TARGET": meter.target, "VEHICLE_TARGET": vehicle.target}
            )
            services.append(analytics)
            end_us = config.start_us + config.minutes * MINUTE_US
            latency = phases.analytics(
                analytics.target,
                database_url,
                [f"VH-{v:05d}" for v in range(plan.vehicles)],
                end_us=end_us,
                calls=plan.analytics_calls,
            )
            results["analytics"] = asdict(latency)
            if "charger-listing" not in skip:
                results["charger_listing"] = asdict(
                    phases.charger_listing(
                        analytics.target, end_us=end_us, calls=plan.charger_listing_calls
                    )
                )
            if "data-completeness" not in skip:
                results["data_completeness"] = asdict(
                    phases.data_completeness(
                        analytics.target, end_us=end_us, calls=plan.charger_listing_calls
                    )
                )
            if "mixed" not in skip:
                # Ten times the floor (every charger and vehicle reporting once a minute).
                ingest_per_s = 10 * (plan.chargers + plan.vehicles) / 60
                readings_needed = 2 * ingest_per_s * plan.mixed_seconds
                mixed_load = FleetConfig(
                    chargers=plan.chargers,
                    vehicles=plan.vehicles,
                    minutes=int(readings_needed / (plan.chargers + plan.vehicles)) + 3,
                    start_us=end_us,
                    seed=5,
                )
                results["mixed"] = asdict(
                    phases.mixed(
                        meter,
                        vehicle,
                        analytics.target,
                        [f"VH-{v:05d}" for v in range(plan.vehicles)],
                        load=mixed_load,
                        analytics_end_us=end_us,
                        ingest_per_s=ingest_per_s,
                        seconds=plan.mixed_seconds,
                    )
                )
        if "long-window" not in skip:
            long_analytics = start_serving(
                "analytics", {**env, "METER_TARGET": meter.target, "VEHICLE_TARGET": vehicle.target}
            )
            services.append(long_analytics)
            results["long_window"] = asdict(
                phases.long_window(
                    database_url,
                    meter.target,
                    vehicle.target,
                    long_analytics.target,
                    start_us=LONG_WINDOW_START_US,
                    days=plan.long_window_days,
                    vehicles=plan.long_window_vehicles,
                    calls=plan.long_window_calls,
                )
            )
        if "day-drop" not in skip:
            # The day every phase above wrote: the day phase's 14.4M meter readings (full run).
            results["day_drop"] = asdict(phases.day_drop(database_url, DAY_START_US))
        if "growth" not in skip:
            grown = phases.growth(
                database_url,
                meter,
                vehicle,
                config=FleetConfig(
                    chargers=plan.chargers,
                    vehicles=plan.vehicles,
                    minutes=plan.growth_minutes,
                    start_us=GROWTH_START_US,
                ),
                history_rows=plan.growth_history_rows,
                scratch=scratch,
                streams=plan.streams,
            )
            results["growth"] = {**asdict(grown), "ratio": grown.ratio}
        results["server_peak_rss_mib"] = {s.service: peak_rss_mib(s.pid) for s in services}
        for service in services:
            service.terminate(60)
        services.clear()
        if "fleet" not in skip:
            from services.bench.fleet_streams import run_fleet

            fleet = run_fleet(
                database_url=database_url,
                streams=plan.fleet_streams,
                batches_per_stream=plan.fleet_batches,
                batch_size=5,
                interval_seconds=2.0,
                start_micros=DAY_START_US - 72 * 60 * MINUTE_US,
            )
            results["fleet"] = asdict(fleet)
        if "observability" not in skip:
            # Last: it empties the database before each of its runs.
            results["observability"] = asdict(
                phases.observability_cost(
                    database_url,
                    hour,
                    plan.streams,
                    runs=plan.observability_runs,
                    unary_in_flight=max(plan.unary_in_flight),
                    unary_seconds=plan.unary_seconds,
                    first_second=(DAY_START_US - 8 * 24 * 60 * MINUTE_US) // 1_000_000,
                )
            )
    finally:
        for service in services:
            service.terminate(60)
        drop_database(server_url, database_url)
        shutil.rmtree(scratch, ignore_errors=True)
    ratios = results.setdefault("ratios", {})
    if "limit_per_s" in results:
        ratios["ingest_vs_limit"] = results["ingest_per_s"] / results["limit_per_s"]
    if "per_request_per_s" in results:
        ratios["ingest_vs_per_request"] = results["ingest_per_s"] / results["per_request_per_s"]
    if "analytics" in results:
        ratios["analytics_p99_vs_sql_p99"] = (
            results["analytics"]["grpc_p99_ms"] / results["analytics"]["sql_p99_ms"]
        )
    return results


def table(results: dict[str, Any]) -> str:
    rows = [("measure", "result")]
    rows.append(("readings per ingest phase", f"{results['readings']:,}"))
    if "limit_per_s" in results:
        rows.append(
            (
                "limit: binary COPY of the same rows into the history tables, 2 connections",
                f"{results['limit_per_s']:,.0f} /s",
            )
        )
        rows.append(
            (
                "the writers' SQL run by psycopg, no gRPC",
                f"{results['writer_sql_per_s']:,.0f} /s",
            )
        )
    ingest = results["ingest"]
    rows.append(
        (
            "ingest: recorded IngestReadings streams from the loader process, both services",
            f"{ingest['per_s']:,.0f} /s; CPU per reading: services "
            f"{ingest['services_cpu_us']:.1f} µs, PostgreSQL {ingest['postgres_cpu_us']:.1f} µs, "
            f"loader {ingest['loader_cpu_us']:.1f} µs",
        )
    )
    if "meter_forms" in results:
        forms = results["meter_forms"]
        for form in ("interval", "register"):
            rows.append(
                (
                    f"meter {form} readings: pre-encoded streams, MeterService",
                    f"{forms[f'{form}_per_s']:,.0f} /s",
                )
            )
    if "per_request_per_s" in results:
        rows.append(
            (
                "per-request: INSERT + UPSERT per reading, 10 connections",
                f"{results['per_request_per_s']:,.0f} /s",
            )
        )
    for name, ratio in results.get("ratios", {}).items():
        rows.append((f"ratio {name.replace('_', ' ')}", f"{ratio:.2f}"))
    for u in results.get("unary", []):
        rows.append(
            (
                f"unary: IngestReading (Node grpc-js client), {u['in_flight']} in flight",
                f"{u['per_s']:,.0f} calls/s, p50 {u['p50_ms']:.2f} ms, p99 {u['p99_ms']:.2f} ms, "
                f"{u['errors']} errors; CPU per call: server {u['server_cpu_us']:.0f} µs, "
                f"PostgreSQL {u['postgres_cpu_us']:.0f} µs, client {u['client_cpu_us']:.0f} µs",
            )
        )
    if "ocpp" in results:
        o = results["ocpp"]
        rows.append(
            (
                f"ocpp: {o['charge_points']:,} 1.6 charge points, a MeterValues a second each, "
                "through the gateway",
                f"{o['per_s']:,.0f} readings/s, {o['confirmed']:,} confirmed, {o['refused']} "
                f"refused, {o['failed_connections']} failed connections; CPU per reading: gateway "
                f"{o['gateway_cpu_us']:.0f} µs, MeterService {o['meter_cpu_us']:.0f} µs, "
                f"PostgreSQL {o['postgres_cpu_us']:.0f} µs",
            )
        )
    if "day" in results:
        d = results["day"]
        rows.append(
            (
                f"day: {d['readings']:,} readings end to end (recorded, loader process)",
                f"{d['seconds']:.0f} s ({d['per_s']:,.0f} /s), {d['accepted']:,} accepted; "
                f"CPU per reading: services {d['services_cpu_us']:.1f} µs, PostgreSQL "
                f"{d['postgres_cpu_us']:.1f} µs, loader {d['loader_cpu_us']:.1f} µs",
            )
        )
    if "fleet" in results:
        f = results["fleet"]
        rows.append(
            (
                f"fleet: {f['streams']:,} concurrent streams on one MeterService",
                f"{f['errors']} errors, {f['readings_stored']:,}/{f['readings_sent']:,} "
                f"stored, all open at once: {'yes' if f['all_held'] else 'no'}, "
                f"peak RSS {f['server_peak_rss_mib']:.0f} MiB, "
                f"{f['server_peak_threads']:,} threads, "
                f"server CPU {f['server_cpu_seconds']:.1f} s in {f['duration_seconds']:.0f} s",
            )
        )
    if "day_drop" in results:
        d = results["day_drop"]
        rows.append(
            (
                f"retention: one day of {d['rows']:,} meter readings removed",
                f"DELETE {d['delete_seconds'] * 1000:,.0f} ms; partition detached and dropped "
                f"{d['drop_seconds'] * 1000:,.1f} ms",
            )
        )
    if "growth" in results:
        g = results["growth"]
        rows.append(
            (
                f"growth: ingest of {g['first_readings']:,} readings into empty histories, then "
                f"{g['after_readings']:,} with {g['history_rows']:,} rows stored",
                f"{g['first_per_s']:,.0f} /s → {g['after_per_s']:,.0f} /s, ratio "
                f"{g['ratio']:.2f} (history made in {g['fill_seconds']:.0f} s)",
            )
        )
    if "rollups" in results:
        r = results["rollups"]
        rows.append(
            (
                f"rollups: both services' hours made for {r['hours']} hours of the fleet "
                f"({r['readings']:,} readings)",
                f"{r['seconds']:.1f} s",
            )
        )
    if "long_window" in results:
        w = results["long_window"]
        rows.append(
            (
                f"long window: GetVehiclePerformance over {w['days']} days p50 / p99 "
                f"({w['vehicles']} vehicles, {w['readings']:,} readings)",
                f"from the readings {w['raw_p50_ms']:.1f} / {w['raw_p99_ms']:.1f} ms; from the "
                f"rollups {w['rollups_p50_ms']:.1f} / {w['rollups_p99_ms']:.1f} ms (made in "
                f"{w['rollups_seconds']:.1f} s)",
            )
        )
    if "analytics" in results:
        a = results["analytics"]
        rows.append(
            (
                "analytics: GetVehiclePerformance p50 / p99",
                f"{a['grpc_p50_ms']:.1f} / {a['grpc_p99_ms']:.1f} ms",
            )
        )
        rows.append(
            ("analytics: bare SQL p50 / p99", f"{a['sql_p50_ms']:.1f} / {a['sql_p99_ms']:.1f} ms")
        )
    for key, how in (("status", "pages kept ≤ 1 s"), ("status_uncached", "every page read")):
        if key in results:
            s = results[key]
            rows.append(
                (
                    f"status: list all {s['chargers']:,} charger statuses ({how}), 1 client "
                    f"p50 / p99; {s['clients']} clients",
                    f"{s['p50_ms']:.1f} / {s['p99_ms']:.1f} ms; "
                    f"{s['clients_per_s']:.1f} listings/s",
                )
            )
    if "mixed" in results:
        m = results["mixed"]
        what = {
            "ingest": f"IngestReadings of {m['message_readings']} readings, "
            f"{m['ingest_per_s']:,.0f} readings/s",
            "status": "list all charger statuses once a second",
            "analytics": "GetVehiclePerformance 20 a second",
        }
        for name, text in what.items():
            idle, loaded = m["idle"][name], m["loaded"][name]
            rows.append(
                (
                    f"mixed ({m['seconds']:g} s): {text}, p50 / p99 idle → all three at once",
                    f"{idle['p50_ms']:.1f} / {idle['p99_ms']:.1f} ms → "
                    f"{loaded['p50_ms']:.1f} / {loaded['p99_ms']:.1f} ms "
                    f"({loaded['errors'] + idle['errors']} errors)",
                )
            )
    for key, counted, label in (
        (
            "charger_listing",
            "chargers",
            "charger listing: ListChargerEfficiencies, first 1,000 chargers, a day against "
            "the day before",
        ),
        (
            "data_completeness",
            "chargers and vehicles",
            "data completeness: GetDataCompleteness, first 1,000 devices, a day",
        ),
    ):
        if key in results:
            c = results[key]
            outcome = (
                f"failed: {c['error']}"
                if c["error"]
                else ", ".join(f"{s:.2f} s" for s in c["seconds"])
                + f" ({c['devices']:,} {counted})"
            )
            rows.append((label, outcome))
    if "observability" in results:
        o = results["observability"]
        for measured, key, unit in (
            ("streamed readings", "stream", "readings/s"),
            (f"unary IngestReading, {o['unary_in_flight']} in flight", "unary", "calls/s"),
        ):
            rates = {name: statistics.median(v) for name, v in o[f"{key}_per_s"].items()}
            cpu = {name: statistics.median(v) for name, v in o[f"{key}_cpu_us"].items()}
            rows.append(
                (
                    f"observability: {measured}, METRICS_ADDR + traces + access log off → on "
                    f"(every call traced) / sampled (1 %), {o['runs']} runs each, medians",
                    f"{rates['off']:,.0f} → {rates['on']:,.0f} / {rates['sampled']:,.0f} {unit}, "
                    f"ratios {o[f'{key}_ratio']['on']:.3f} / {o[f'{key}_ratio']['sampled']:.3f}; "
                    f"service CPU {cpu['off']:.1f} → {cpu['on']:.1f} / {cpu['sampled']:.1f} µs, "
                    f"ratios {o[f'{key}_cpu_ratio']['on']:.3f} / "
                    f"{o[f'{key}_cpu_ratio']['sampled']:.3f}",
                )
            )
    width = max(len(r[0]) for r in rows)
    lines = [f"| {rows[0][0]:<{width}} | {rows[0][1]} |", f"|{'-' * (width + 2)}|---|"]
    lines += [f"| {name:<{width}} | {value} |" for name, value in rows[1:]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    server_url = os.environ.get("DATABASE_URL") or os.environ.get("METER_DATABASE_URL")
    embedded = None
    if not server_url:
        embedded = EmbeddedPostgres(Path("var") / "bench-postgres")
        server_url = embedded.start()
    started = time.perf_counter()
    try:
        results = benchmark(server_url, plan, set(args.skip))
    finally:
        if embedded is not None:
            embedded.stop()
    results["mode"] = "quick" if args.quick else "full"
    results["wall_seconds"] = time.perf_counter() - started
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    output = args.output or Path("bench-results") / (
        f"bench-{results['mode']}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(
        f"\n{results['mode']} run in {results['wall_seconds']:.0f} s; results in {output}",
        file=sys.stderr,
    )
    return 0
