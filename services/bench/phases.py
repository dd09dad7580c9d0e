"""The benchmark's measurements, each against the same fresh database and fleet."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, cast

import grpc
import psycopg
from energy.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_service_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services import launcher
from services.analytics.correlation import ChargerSpan, Consumption, Session
from services.analytics.downstream import Downstream
from services.analytics.service import VehiclePerformanceService
from services.bench.otlp import SpanReceiver
from services.common.config import Settings
from services.common.database import create_engine
from services.common.group_commit import ReadingTable
from services.common.partitions import DAY_US, DailyPartitions, bounds_sql, day_of
from services.launcher import ServiceProcess
from services.meter.kind import METER
from services.meter.repository import READINGS_TABLE as METER_TABLE
from services.meter.repository import MeterRepository, SpanColumns
from services.ocpp import charge_points as charge_points_module
from services.simulate import recording
from services.simulate.feed import FeedResult, feed
from services.simulate.fleet import Fleet, FleetConfig, MeterRow, VehicleRow
from services.vehicle.kind import VEHICLE
from services.vehicle.repository import READINGS_TABLE as VEHICLE_TABLE
from services.vehicle.repository import ChargerRange, SessionRow, VehicleRepository

TABLES = (
    "meter.meter_readings",
    "meter.charger_status",
    "vehicle.vehicle_readings",
    "vehicle.vehicle_status",
)


def truncate(database_url: str) -> None:
    with psycopg.connect(database_url) as connection:
        connection.execute(f"TRUNCATE {', '.join(TABLES)}")


def make_partitions(database_url: str, micros: Iterable[int]) -> None:
    """The daily partitions of both histories for the days of `micros`, made before a phase
    that writes without the services' writers starts its clock."""
    days = {day_of(us) for us in micros}
    with psycopg.connect(database_url, autocommit=True) as connection:
        for schema, table in (("meter", "meter_readings"), ("vehicle", "vehicle_readings")):
            DailyPartitions(schema, table).ensure(connection, days)


def count_rows(database_url: str, table: str) -> int:
    with psycopg.connect(database_url) as connection:
        row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def fleet_rows(config: FleetConfig) -> tuple[list[MeterRow], list[VehicleRow]]:
    meters: list[MeterRow] = []
    vehicles: list[VehicleRow] = []
    for minute in Fleet(config).minutes():
        meters += minute.meter_rows
        vehicles += minute.vehicle_rows
    return meters, vehicles


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


# --- limit: the writers' SQL driven by psycopg alone ------------------------------------------


def _write_share(
    database_url: str, table: ReadingTable, rows: Sequence[tuple[Any, ...]], batch_size: int
) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(table.staging_ddl)
        for first in range(0, len(rows), batch_size):
            batch = rows[first : first + batch_size]
            with connection.cursor() as cursor:
                with cursor.copy(table.copy_sql) as copy:
                    copy.set_types(table.copy_types)
                    for row in batch:
                        copy.write_row(row)
                cursor.execute(table.write_sql.format(staged=len(batch)).encode())


def _run_timed(threads: Sequence[threading.Thread]) -> float:
    """Seconds from starting the threads to the last one's end."""
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _history_rows(database_url: str) -> int:
    return count_rows(database_url, "meter.meter_readings") + count_rows(
        database_url, "vehicle.vehicle_readings"
    )


def limit(
    database_url: str,
    meters: list[MeterRow],
    vehicles: list[VehicleRow],
    *,
    writers: int,
    batch_size: int,
) -> float:
    """Readings/s when psycopg runs the same COPY → staging → insert → hot upsert as the
    services' writers, with as many connections per table, and no gRPC at all."""
    truncate(database_url)
    make_partitions(database_url, [row[1] for row in meters] + [row[1] for row in vehicles])
    shares: list[tuple[ReadingTable, list[tuple[Any, ...]]]] = []
    # The staging rows the fast paths make of interval readings: the register column unset,
    # the stream index last.
    staged = (
        (METER_TABLE, [(m, t, kwh, None, volts, 0) for m, t, kwh, volts in meters]),
        (
            VEHICLE_TABLE,
            [(v, t, c, soc, kwh, None, temp, 0) for v, t, c, soc, kwh, temp in vehicles],
        ),
    )
    for table, rows in staged:
        split: list[list[tuple[Any, ...]]] = [[] for _ in range(writers)]
        for row in rows:
            split[hash(row[0]) % writers].append(row)
        shares += [(table, share) for share in split]
    threads = [
        threading.Thread(target=_write_share, args=(database_url, table, share, batch_size))
        for table, share in shares
    ]
    seconds = _run_timed(threads)
    stored = _history_rows(database_url)
    assert stored == len(meters) + len(vehicles), f"limit stored {stored}"
    return stored / seconds


# --- a recorded load, and PostgreSQL alone on the same rows ---------------------------------


def record(config: FleetConfig, path: Path) -> int:
    """Writes the fleet's readings as encoded messages (before any clock starts); returns how
    many readings it holds."""
    with path.open("wb") as out:
        meters, vehicles = recording.record(Fleet(config), out)
    return meters + vehicles


def _micros(timestamp: Timestamp) -> int:
    return timestamp.seconds * 1_000_000 + timestamp.nanos // 1_000


def _optional(message: Any, name: str) -> float | None:
    return getattr(message, name) if message.HasField(name) else None


# Each history table, its columns as the recording's rows give them (the time in micros), and
# how a staged row becomes a row of the table.
_LIMIT_TABLES = (
    (
        "meter.meter_readings",
        "meter_id text, us int8, kwh_consumed_ac float8, kwh_consumed_ac_register float8, "
        "voltage float8",
        "meter_id, read_time, kwh_consumed_ac, kwh_consumed_ac_register, voltage",
        "meter_id",
    ),
    (
        "vehicle.vehicle_readings",
        "vehicle_id text, us int8, charger_id text, soc float8, kwh_delivered_dc float8, "
        "kwh_delivered_dc_register float8, battery_temp float8",
        "vehicle_id, read_time, charger_id, soc, kwh_delivered_dc, kwh_delivered_dc_register, "
        "battery_temp",
        "vehicle_id",
    ),
)


def _recorded_rows(path: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    meters: list[tuple[Any, ...]] = []
    vehicles: list[tuple[Any, ...]] = []
    for kind, data in recording.records(path):
        if kind == recording.METER:
            for m in meter_service_pb2.IngestReadingsRequest.FromString(data).readings:
                meters.append(
                    (
                        m.meter_id,
                        _micros(m.timestamp),
                        _optional(m, "kwh_consumed_ac"),
                        _optional(m, "kwh_consumed_ac_register"),
                        m.voltage,
                    )
                )
        else:
            for v in vehicle_service_pb2.IngestReadingsRequest.FromString(data).readings:
                vehicles.append(
                    (
                        v.vehicle_id,
                        _micros(v.timestamp),
                        v.charger_id,
                        _optional(v, "soc"),
                        _optional(v, "kwh_delivered_dc"),
                        _optional(v, "kwh_delivered_dc_register"),
                        _optional(v, "battery_temp"),
                    )
                )
    return meters, vehicles


def copy_limit(database_url: str, path: Path, connections: int = 2) -> float:
    """Readings/s of binary COPY of the recording's rows straight into the history tables, with
    their keys and indexes, over `connections` connections: what PostgreSQL alone does with the
    rows (no validation, no natural-key check, no status upsert). The COPY data is made before
    the clock starts, so the client only sends bytes."""
    truncate(database_url)
    rows = _recorded_rows(path)
    make_partitions(database_url, [row[1] for table_rows in rows for row in table_rows])
    payloads: list[list[tuple[str, str, bytes]]] = [[] for _ in range(connections)]
    with psycopg.connect(database_url, autocommit=True) as connection:
        for (table, staged, columns, key), table_rows in zip(_LIMIT_TABLES, rows, strict=True):
            connection.execute(f"CREATE TEMP TABLE limit_rows ({staged})")
            with connection.cursor() as cursor:
                with cursor.copy("COPY limit_rows FROM STDIN") as copy:
                    for row in table_rows:
                        copy.write_row(row)
                for part in range(connections):
                    query = (
                        f"COPY (SELECT {columns.replace('read_time', _TIME_OF_US)} "
                        f"FROM limit_rows WHERE abs(hashtext({key})) % {connections} = {part}) "
                        "TO STDOUT (FORMAT BINARY)"
                    )
                    with cursor.copy(query) as copy:
                        data = b"".join(bytes(chunk) for chunk in copy)
                    payloads[part].append((table, columns, data))
            connection.execute("DROP TABLE limit_rows")
    del rows

    def send(share: list[tuple[str, str, bytes]]) -> None:
        with (
            psycopg.connect(database_url, autocommit=True) as connection,
            connection.cursor() as cursor,
        ):
            for table, columns, data in share:
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.write(data)

    threads = [threading.Thread(target=send, args=(share,)) for share in payloads]
    seconds = _run_timed(threads)
    stored = _history_rows(database_url)
    truncate(database_url)
    return stored / seconds


_TIME_OF_US = "timestamptz 'epoch' + us * interval '1 microsecond'"


@dataclass
class Load:
    """A recording sent by the loader process (services/bench/loader.py) into both services:
    readings/s from its first message to its last acknowledgement, and the CPU each party
    spent per reading (µs): the loader, the two services, PostgreSQL."""

    readings: int
    accepted: int
    seconds: float
    per_s: float
    loader_cpu_us: float
    services_cpu_us: float
    postgres_cpu_us: float


def load(path: Path, meter: ServiceProcess, vehicle: ServiceProcess, streams: int) -> Load:
    def services_cpu() -> float:
        return _cpu_seconds(meter.pid) + _cpu_seconds(vehicle.pid)

    services_before, postgres_before = services_cpu(), _postgres_cpu_seconds()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.bench.loader",
            str(path),
            f"--meter-target={meter.target}",
            f"--vehicle-target={vehicle.target}",
            f"--streams={streams}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the loader failed: {result.stdout}{result.stderr}")
    services_cpu_s = services_cpu() - services_before
    postgres_cpu_s = _postgres_cpu_seconds() - postgres_before
    sent = json.loads(result.stdout)
    readings = sent["accepted"] + sent["duplicates"] + sent["rejected"]
    per_reading = 1e6 / max(1, readings)
    return Load(
        readings=readings,
        accepted=sent["accepted"],
        seconds=sent["seconds"],
        per_s=sent["per_s"],
        loader_cpu_us=sent["cpu_seconds"] * per_reading,
        services_cpu_us=services_cpu_s * per_reading,
        postgres_cpu_us=postgres_cpu_s * per_reading,
    )


@dataclass
class ObservabilityCost:
    """Ingestion with the metrics endpoint (METRICS_ADDR), traces (to an OTLP receiver in this
    process) and the access log all on, against all off (the metrics are counted either way:
    the interceptor is always there, only the endpoint is off): the recording streamed
    (readings/s) and unary IngestReading calls (calls/s, `unary_in_flight` in flight) into
    freshly started services on an emptied database, `runs` times each, the configurations in
    turn (their order reversed every other run). `on` traces every call (the SDK's default
    sampler), `sampled` one root call in a hundred (OTEL_TRACES_SAMPLER=
    parentbased_traceidratio, 0.01). Ratios are of the medians, against `off`; so are those of
    the services' CPU per streamed reading and MeterService's per unary call (µs; steadier than
    rates on a busy machine). `spans` is how many spans the receiver got."""

    runs: int
    unary_in_flight: int
    stream_per_s: dict[str, list[float]]
    unary_per_s: dict[str, list[float]]
    stream_ratio: dict[str, float]
    unary_ratio: dict[str, float]
    stream_cpu_us: dict[str, list[float]]
    unary_cpu_us: dict[str, list[float]]
    stream_cpu_ratio: dict[str, float]
    unary_cpu_ratio: dict[str, float]
    spans: int


def observability_cost(
    database_url: str,
    path: Path,
    streams: int,
    *,
    runs: int,
    unary_in_flight: int,
    unary_seconds: float,
    first_second: int,
) -> ObservabilityCost:
    receiver = SpanReceiver()
    on = {
        "DATABASE_URL": database_url,
        "METRICS_ADDR": "127.0.0.1:0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
    }
    configurations = {
        "off": {"DATABASE_URL": database_url, "ACCESS_LOG_LINES_PER_SECOND": "0"},
        "on": on,
        "sampled": {
            **on,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
        },
    }
    stream: dict[str, list[float]] = {name: [] for name in configurations}
    calls: dict[str, list[float]] = {name: [] for name in configurations}
    stream_cpu: dict[str, list[float]] = {name: [] for name in configurations}
    calls_cpu: dict[str, list[float]] = {name: [] for name in configurations}
    try:
        for run in range(runs):
            names = list(configurations)
            for name in names if run % 2 == 0 else names[::-1]:
                truncate(database_url)
                env = configurations[name]
                meter = launcher.start_serving("meter", env)
                vehicle = launcher.start_serving("vehicle", env)
                try:
                    fed = load(path, meter, vehicle, streams)
                    stream[name].append(fed.per_s)
                    stream_cpu[name].append(fed.services_cpu_us)
                    called = unary(
                        meter.target, meter.pid, unary_in_flight, unary_seconds, first_second
                    )
                    calls[name].append(called.per_s)
                    calls_cpu[name].append(called.server_cpu_us)
                finally:
                    launcher.terminate_all([meter, vehicle], 60)
    finally:
        receiver.stop()

    def ratios(rates: dict[str, list[float]]) -> dict[str, float]:
        base = statistics.median(rates["off"])
        return {name: statistics.median(values) / base for name, values in rates.items()}

    return ObservabilityCost(
        runs=runs,
        unary_in_flight=unary_in_flight,
        stream_per_s=stream,
        unary_per_s=calls,
        stream_ratio=ratios(stream),
        unary_ratio=ratios(calls),
        stream_cpu_us=stream_cpu,
        unary_cpu_us=calls_cpu,
        stream_cpu_ratio=ratios(stream_cpu),
        unary_cpu_ratio=ratios(calls_cpu),
        spans=len(receiver.received()),
    )


# --- meter forms: interval and register readings through the same streams -------------------


def _encoded_requests(readings: list[meter_pb2.MeterReading], size: int) -> list[bytes]:
    return [
        meter_service_pb2.IngestReadingsRequest(readings=readings[i : i + size]).SerializeToString()
        for i in range(0, len(readings), size)
    ]


def _send_all(meter_target: str, requests: list[bytes], streams: int) -> float:
    """Readings/s of IngestReadings over `streams` concurrent streams of pre-encoded messages
    (the client builds nothing while it is timed)."""
    shares = [requests[k::streams] for k in range(streams)]
    accepted = [0] * streams
    with grpc.insecure_channel(meter_target) as channel:
        send = channel.stream_unary(
            "/energy.meter.v1.MeterService/IngestReadings",
            request_serializer=None,
            response_deserializer=meter_service_pb2.IngestReadingsResponse.FromString,
        )

        def run(k: int) -> None:
            accepted[k] = send(iter(shares[k]), timeout=600).accepted

        threads = [threading.Thread(target=run, args=(k,)) for k in range(streams)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
    return sum(accepted) / seconds


def _form_requests(meters: list[MeterRow], form: str, prefix: str) -> list[bytes]:
    """The fleet's meter readings under `prefix`-ed ids, as interval energy or as each
    charger's cumulative register (from 1000 kWh), in 500-reading messages."""
    readings = []
    totals: dict[str, float] = {}
    for meter_id, micros, kwh, volts in sorted(meters, key=lambda row: row[1]):
        reading = meter_pb2.MeterReading(
            meter_id=f"{prefix}-{meter_id}",
            voltage=volts,
            timestamp=Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000),
        )
        if form == "interval":
            reading.kwh_consumed_ac = kwh
        else:
            totals[meter_id] = totals.get(meter_id, 1000.0) + kwh
            reading.kwh_consumed_ac_register = totals[meter_id]
        readings.append(reading)
    return _encoded_requests(readings, 500)


def meter_forms(meter_target: str, meters: list[MeterRow], streams: int) -> dict[str, float]:
    """Readings/s of the fleet's meter readings through IngestReadings as interval energy and as
    registers, alternating twice under new ids each time; the second round of each counts (the
    first warms the server and the database up)."""
    rates: dict[str, float] = {}
    for round_ in (1, 2):
        for form in ("interval", "register"):
            requests = _form_requests(meters, form, f"{form[:2].upper()}{round_}")
            rates[f"{form}_per_s"] = _send_all(meter_target, requests, streams)
    return rates


# --- per-request: the original design's insert-then-upsert per reading ----------------------

_PER_REQUEST_INSERT = (
    "INSERT INTO meter.meter_readings (meter_id, read_time, kwh_consumed_ac, voltage) "
    "VALUES (%s, timestamptz 'epoch' + %s * interval '1 microsecond', %s, %s)"
)
_PER_REQUEST_UPSERT = (
    "INSERT INTO meter.charger_status (meter_id, kwh_consumed_ac, voltage, read_time, update_time) "
    "VALUES (%s, %s, %s, timestamptz 'epoch' + %s * interval '1 microsecond', now()) "
    "ON CONFLICT (meter_id) DO UPDATE SET kwh_consumed_ac = excluded.kwh_consumed_ac, "
    "voltage = excluded.voltage, read_time = excluded.read_time, update_time = now()"
)


def per_request(database_url: str, sample: list[MeterRow], connections: int = 10) -> float:
    """Readings/s of one INSERT and one UPSERT per reading, each reading its own transaction,
    over 10 concurrent connections (the original's pool size)."""
    make_partitions(database_url, [row[1] for row in sample])
    shares = [sample[i::connections] for i in range(connections)]

    def work(rows: list[MeterRow]) -> None:
        with psycopg.connect(database_url) as connection:
            for meter_id, micros, kwh, voltage in rows:
                connection.execute(_PER_REQUEST_INSERT, (meter_id, micros, kwh, voltage))
                connection.execute(_PER_REQUEST_UPSERT, (meter_id, kwh, voltage, micros))
                connection.commit()

    started = time.perf_counter()
    with futures.ThreadPoolExecutor(connections) as pool:
        list(pool.map(work, shares))
    return len(sample) / (time.perf_counter() - started)


# --- through the services -----------------------------------------------------------------


def ingest(meter_target: str, vehicle_target: str, config: FleetConfig, streams: int) -> FeedResult:
    with (
        grpc.insecure_channel(meter_target) as meters,
        grpc.insecure_channel(vehicle_target) as vehicles,
    ):
        return feed(Fleet(config), meters, vehicles, streams=streams, progress=False)


UNARY_LOAD_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "unary_load.mjs"


@dataclass
class UnaryLoad:
    """One reading per IngestReading call from a Node @grpc/grpc-js client keeping `in_flight`
    calls open: calls/s, latency, and the CPU each party spent per call (µs)."""

    in_flight: int
    calls: int
    errors: int
    per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float
    postgres_cpu_us: float
    client_cpu_us: float


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads) so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu_seconds() -> float:
    """CPU of every process named postgres on this machine (the server and its backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += _cpu_seconds(int(entry.name))
            except (OSError, ValueError):  # gone meanwhile
                continue
    return total


def unary(
    meter_target: str, meter_pid: int, in_flight: int, seconds: float, first_second: int
) -> UnaryLoad:
    """tools/unary_load.mjs against MeterService for `seconds` (after a 1 s warm-up), each call
    a new (meter_id, timestamp) from `first_second` on. Needs Node and `npm ci` (make bench)."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the unary phase needs Node.js (and `npm ci` for @grpc/grpc-js)")
    server_before, postgres_before = _cpu_seconds(meter_pid), _postgres_cpu_seconds()
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        [
            node,
            str(UNARY_LOAD_SCRIPT),
            f"--target={meter_target}",
            f"--in-flight={in_flight}",
            f"--seconds={seconds:g}",
            f"--first-second={first_second}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + 120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"unary load failed: {result.stderr.strip()}")
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = _cpu_seconds(meter_pid) - server_before
    postgres_cpu = _postgres_cpu_seconds() - postgres_before
    # The client's CPU includes its 1 s warm-up; it is reported per call of the measured part.
    client_cpu = (client_after.ru_utime + client_after.ru_stime) - (
        client_before.ru_utime + client_before.ru_stime
    )
    load = json.loads(result.stdout)
    calls = max(1, int(load["calls"]))
    return UnaryLoad(
        in_flight=in_flight,
        calls=int(load["calls"]),
        errors=int(load["errors"]),
        per_s=float(load["per_s"]),
        p50_ms=float(load["p50_ms"]),
        p99_ms=float(load["p99_ms"]),
        server_cpu_us=server_cpu * 1e6 / calls,
        postgres_cpu_us=postgres_cpu * 1e6 / calls,
        client_cpu_us=client_cpu * 1e6 / calls,
    )


@dataclass
class StatusListing:
    """Listing every charger status in pages of 10,000: one client's p50/p99 (ms) over `calls`
    sequential listings, and the listings/s of `clients` clients listing at once."""

    chargers: int
    p50_ms: float
    p99_ms: float
    clients: int
    clients_per_s: float


def _list_all(stub: meter_service_pb2_grpc.MeterServiceStub) -> int:
    count = 0
    token = ""
    while True:
        page = stub.ListChargerStatuses(
            meter_service_pb2.ListChargerStatusesRequest(page_size=10_000, page_token=token),
            timeout=30,
        )
        count += len(page.charger_statuses)
        token = page.next_page_token
        if not token:
            return count


def status_listing(
    meter_target: str, calls: int, clients: int = 10, seconds: float = 5.0
) -> StatusListing:
    latencies: list[float] = []
    count = 0
    with grpc.insecure_channel(meter_target) as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        for _ in range(calls + 3):
            started = time.perf_counter()
            count = _list_all(stub)
            latencies.append((time.perf_counter() - started) * 1000)
    measured = latencies[3:]  # the first calls warm connections and plans

    def client(deadline: float) -> int:
        done = 0
        with grpc.insecure_channel(meter_target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            while time.perf_counter() < deadline:
                _list_all(stub)
                done += 1
        return done

    with futures.ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        listed = sum(pool.map(client, [started + seconds] * clients))
        elapsed = time.perf_counter() - started
    return StatusListing(
        count,
        statistics.median(measured),
        percentile(measured, 0.99),
        clients,
        listed / elapsed,
    )


def session_of(row: SessionRow) -> Session:
    return Session(
        row.vehicle_id,
        row.charger_id,
        row.start_micros,
        row.end_micros,
        row.kwh_delivered_dc,
        row.reading_count,
        row.battery_temp_sum,
        row.battery_temp_count,
        row.first_reading_micros,
        row.last_reading_micros,
    )


def spans(sessions: Sequence[Session]) -> SpanColumns:
    return SpanColumns(
        [s.charger_id for s in sessions],
        [s.start_us for s in sessions],
        [s.end_us for s in sessions],
        [s.kwh_delivered_dc for s in sessions],
    )


class RepositoryDownstream:
    """AnalyticsService's downstream calls made on the repositories directly: the bare SQL of
    GetVehiclePerformance, composed by the same service code, without gRPC in between."""

    def __init__(self, vehicles: VehicleRepository, meters: MeterRepository) -> None:
        self._vehicles = vehicles
        self._meters = meters

    def sessions(
        self, vehicle_id: str, start_us: int, end_us: int, gap_us: int, timeout: float
    ) -> list[Session]:
        rows = self._vehicles.list_sessions(vehicle_id, start_us, end_us, gap_us)
        return [session_of(row) for row in rows]

    def charger_sessions(
        self,
        charger_ids: Sequence[str],
        ranges: Sequence[ChargerSpan],
        excluded_vehicle_id: str,
        window: tuple[int, int, int],
        timeout: float,
    ) -> list[Session]:
        start_us, end_us, gap_us = window
        rows = self._vehicles.list_charger_sessions(
            list(charger_ids),
            [ChargerRange(r.charger_id, r.start_us, r.end_us) for r in ranges],
            excluded_vehicle_id=excluded_vehicle_id,
            start_us=start_us,
            end_us=end_us,
            gap_us=gap_us,
        )
        return [session_of(row) for row in rows]

    def attribute(
        self,
        sessions: Sequence[Session],
        others: Sequence[Session],
        start_us: int,
        end_us: int,
        timeout: float,
    ) -> list[Consumption]:
        rows = self._meters.attribute(spans(sessions), spans(others), start_us, end_us)
        return [
            Consumption(
                row.kwh_consumed_ac,
                row.reading_count,
                round(row.covered_seconds * 1_000_000),
                row.implausible_count,
                row.unknown_energy_count,
            )
            for row in rows
        ]


@dataclass
class AnalyticsLatency:
    grpc_p50_ms: float
    grpc_p99_ms: float
    sql_p50_ms: float
    sql_p99_ms: float
    calls: int


@dataclass
class FleetCall:
    """One of AnalyticsService's fleet-wide calls, its first page (1000 devices) over the day
    ending at the bench's data end: seconds per call, the devices it covered over all pages
    (every id a phase before wrote: each is computed for the first page), and the code of a
    call that failed (the phase records a failure instead of stopping the bench)."""

    calls: int
    seconds: list[float]
    devices: int
    error: str | None


def charger_listing(analytics_target: str, *, end_us: int, calls: int) -> FleetCall:
    """ListChargerEfficiencies: every charger's day against the day before."""
    request = analytics_service_pb2.ListChargerEfficienciesRequest(
        end_time=Timestamp(seconds=end_us // 1_000_000),
        window=Duration(seconds=24 * 3600),
        page_size=1000,
    )
    return _fleet_call(
        analytics_target,
        lambda stub: stub.ListChargerEfficiencies(request, timeout=900),
        lambda response: int(response.total_size),
        calls,
    )


def data_completeness(analytics_target: str, *, end_us: int, calls: int) -> FleetCall:
    """GetDataCompleteness: every charger's and vehicle's reporting over the day."""
    request = analytics_service_pb2.GetDataCompletenessRequest(
        end_time=Timestamp(seconds=end_us // 1_000_000),
        window=Duration(seconds=24 * 3600),
        page_size=1000,
    )
    return _fleet_call(
        analytics_target,
        lambda stub: stub.GetDataCompleteness(request, timeout=900),
        lambda response: int(
            response.charger_totals.device_count + response.vehicle_totals.device_count
        ),
        calls,
    )


def _fleet_call(
    analytics_target: str,
    call: Callable[[Any], Any],
    devices_of: Callable[[Any], int],
    calls: int,
) -> FleetCall:
    seconds: list[float] = []
    devices = 0
    with grpc.insecure_channel(analytics_target) as channel:
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        for _ in range(calls):
            started = time.perf_counter()
            try:
                response = call(stub)
            except grpc.RpcError as error:
                return FleetCall(calls, seconds, devices, error.code().name)
            seconds.append(time.perf_counter() - started)
            devices = devices_of(response)
    return FleetCall(calls, seconds, devices, None)


def analytics(
    analytics_target: str,
    database_url: str,
    vehicle_ids: Sequence[str],
    *,
    end_us: int,
    calls: int,
    seed: int = 7,
) -> AnalyticsLatency:
    """GetVehiclePerformance over random vehicles, next to the bare SQL of the same computation
    (the same composition over the repositories: RepositoryDownstream)."""
    rng = random.Random(seed)
    picks = [rng.choice(vehicle_ids) for _ in range(calls + 20)]
    window_us = 24 * 3600 * 1_000_000
    grpc_ms: list[float] = []
    with grpc.insecure_channel(analytics_target) as channel:
        stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
        end = Timestamp(seconds=end_us // 1_000_000)
        for vehicle_id in picks:
            request = analytics_service_pb2.GetVehiclePerformanceRequest(
                vehicle_id=vehicle_id, end_time=end
            )
            started = time.perf_counter()
            stub.GetVehiclePerformance(request, timeout=10)
            grpc_ms.append((time.perf_counter() - started) * 1000)
    engine = create_engine(database_url, pool_size=1, connect_timeout=5, name="bench-sql")
    bare = VehiclePerformanceService(
        cast(
            Downstream,
            RepositoryDownstream(
                VehicleRepository(VEHICLE, engine), MeterRepository(METER, engine)
            ),
        ),
        session_gap_us=300_000_000,
        reach_us=900_000_000,
        downstream_timeout=10.0,
    )
    sql_ms: list[float] = []
    for vehicle_id in picks:
        started = time.perf_counter()
        bare.performance(vehicle_id, end_us, window_us, lambda: None)
        sql_ms.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    grpc_ms, sql_ms = grpc_ms[20:], sql_ms[20:]  # warm-up
    return AnalyticsLatency(
        statistics.median(grpc_ms),
        percentile(grpc_ms, 0.99),
        statistics.median(sql_ms),
        percentile(sql_ms, 0.99),
        calls,
    )


# --- mixed: ingest, dashboards and analytics at once ----------------------------------------


@dataclass
class Latency:
    """p50/p99 (ms) and how many calls were made (and how many failed) at what rate."""

    p50_ms: float
    p99_ms: float
    calls: int
    errors: int
    per_s: float


@dataclass
class Mixed:
    """Each workload alone (idle) and all three at once (loaded), for `seconds` each: ingest of
    `message_readings`-reading IngestReadings calls at `ingest_per_s` readings/s, a dashboard
    listing every charger status once a second, and GetVehiclePerformance 20 times a second."""

    seconds: float
    ingest_per_s: float
    message_readings: int
    idle: dict[str, Latency]
    loaded: dict[str, Latency]


def _paced(call: Callable[[int], None], per_s: float, seconds: float, workers: int) -> Latency:
    """Calls `call(k)` for k = 0, 1, … at `per_s` a second for `seconds` (open loop: a slow
    call does not delay the next one's start, up to `workers` in flight)."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    started = time.perf_counter()
    total = max(1, int(per_s * seconds))

    def one(k: int) -> None:
        nonlocal errors
        due = started + k / per_s
        time.sleep(max(0.0, due - time.perf_counter()))
        begun = time.perf_counter()
        try:
            call(k)
        except grpc.RpcError:
            with lock:
                errors += 1
            return
        with lock:
            latencies.append((time.perf_counter() - begun) * 1000)

    with futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(total)))
    elapsed = time.perf_counter() - started
    if not latencies:
        return Latency(0.0, 0.0, total, errors, 0.0)
    return Latency(
        statistics.median(latencies), percentile(latencies, 0.99), total, errors, total / elapsed
    )


def mixed(
    meter: ServiceProcess,
    vehicle: ServiceProcess,
    analytics_target: str,
    vehicle_ids: Sequence[str],
    *,
    load: FleetConfig,
    analytics_end_us: int,
    ingest_per_s: float,
    seconds: float,
    message_readings: int = 100,
) -> Mixed:
    """`load` is a fleet of new readings (after what is stored), recorded and encoded before
    the clock starts and sent as one message per call, meter and vehicle messages in turn; the
    idle ingest run sends its first part, the loaded run the rest."""
    encoded = io.BytesIO()
    recording.record(Fleet(load), encoded, message_readings)
    encoded.seek(0)
    messages = list(recording.read_records(encoded))
    calls_per_s = ingest_per_s / message_readings
    needed = int(calls_per_s * seconds)
    if len(messages) < 2 * needed:
        raise ValueError(f"the mixed load holds {len(messages)} messages, {2 * needed} needed")
    rng = random.Random(11)
    picks = [rng.choice(vehicle_ids) for _ in range(int(20 * seconds) + 1)]
    end = Timestamp(seconds=analytics_end_us // 1_000_000)
    with (
        grpc.insecure_channel(meter.target) as meter_channel,
        grpc.insecure_channel(vehicle.target) as vehicle_channel,
        grpc.insecure_channel(analytics_target) as analytics_channel,
    ):
        senders = {
            recording.METER: meter_channel.stream_unary(
                "/energy.meter.v1.MeterService/IngestReadings", request_serializer=None
            ),
            recording.VEHICLE: vehicle_channel.stream_unary(
                "/energy.vehicle.v1.VehicleService/IngestReadings", request_serializer=None
            ),
        }
        status_stub = meter_service_pb2_grpc.MeterServiceStub(meter_channel)
        analytics_stub = analytics_service_pb2_grpc.AnalyticsServiceStub(analytics_channel)

        def ingest_from(offset: int) -> Callable[[int], None]:
            def send(k: int) -> None:
                kind, data = messages[offset + k]
                senders[kind](iter([data]), timeout=30)

            return send

        def dashboard(_: int) -> None:
            _list_all(status_stub)

        def ask(k: int) -> None:
            analytics_stub.GetVehiclePerformance(
                analytics_service_pb2.GetVehiclePerformanceRequest(
                    vehicle_id=picks[k % len(picks)], end_time=end
                ),
                timeout=30,
            )

        workloads: dict[str, tuple[Callable[[int], None], float, int]] = {
            "ingest": (ingest_from(0), calls_per_s, 16),
            "status": (dashboard, 1.0, 2),
            "analytics": (ask, 20.0, 8),
        }
        idle = {
            name: _paced(call, per_s, seconds, workers)
            for name, (call, per_s, workers) in workloads.items()
        }
        workloads["ingest"] = (ingest_from(needed), calls_per_s, 16)
        with futures.ThreadPoolExecutor(len(workloads)) as pool:
            running = {
                name: pool.submit(_paced, call, per_s, seconds, workers)
                for name, (call, per_s, workers) in workloads.items()
            }
            loaded = {name: future.result() for name, future in running.items()}
    return Mixed(seconds, ingest_per_s, message_readings, idle, loaded)


# --- OCPP: charge points through the gateway ------------------------------------------------


@dataclass
class OcppLoad:
    """`charge_points` 1.6 charge points each sending a MeterValues a second through the gateway
    (`energy-ingest serve ocpp`) into MeterService: readings/s confirmed, and CPU per reading
    (µs) of the gateway, MeterService and PostgreSQL; the charge points run in the bench's own
    process."""

    charge_points: int
    confirmed: int
    refused: int
    failed_connections: int
    seconds: float
    per_s: float
    gateway_cpu_us: float
    meter_cpu_us: float
    postgres_cpu_us: float


def ocpp(meter: ServiceProcess, charge_points: int, values: int, start_us: int) -> OcppLoad:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "OCPP_LISTEN_ADDR": f"127.0.0.1:{port}",
        "METER_TARGET": meter.target,
        "LOG_LEVEL": "WARNING",
    }
    gateway = launcher.spawn("ocpp", env, f"127.0.0.1:{port}")
    try:
        launcher.wait_listening([gateway], 60)
        before = (_cpu_seconds(gateway.pid), _cpu_seconds(meter.pid), _postgres_cpu_seconds())
        run = charge_points_module.drive_blocking(
            f"ws://127.0.0.1:{port}", charge_points, values, start_us=start_us
        )
        after = (_cpu_seconds(gateway.pid), _cpu_seconds(meter.pid), _postgres_cpu_seconds())
    finally:
        gateway.terminate(30)
    per_reading = 1e6 / max(1, run.confirmed)
    gateway_cpu, meter_cpu, postgres_cpu = (b - a for a, b in zip(before, after, strict=True))
    return OcppLoad(
        charge_points,
        run.confirmed,
        run.refused,
        run.failed_connections,
        run.seconds,
        run.per_s,
        gateway_cpu * per_reading,
        meter_cpu * per_reading,
        postgres_cpu * per_reading,
    )


# --- history: dropping a day, and ingest as the history grows ---------------------------------


# --- long window: 31 days of GetVehiclePerformance, from the readings and from the rollups ---


@dataclass
class LongWindow:
    """GetVehiclePerformance over `days` for vehicles that charged every minute of them, on
    chargers metered every minute: every hour read from the readings (all marked stale), then
    with the rollups made (`rollups_seconds` to make both services' hours)."""

    days: int
    vehicles: int
    readings: int
    calls: int
    raw_p50_ms: float
    raw_p99_ms: float
    rollups_p50_ms: float
    rollups_p99_ms: float
    rollups_seconds: float


@dataclass
class RollupCost:
    """The maintenance loop's work for a span of the fleet's history: both services' rollups
    of `hours` hours holding `readings` readings, made in `seconds`."""

    hours: int
    readings: int
    seconds: float


def rollup_cost(database_url: str, start_us: int, end_us: int) -> RollupCost:
    """Marks every hour of [start_us, end_us) stale in both services and makes them, as the
    maintenance loop does (a day per transaction at most)."""
    from services.meter.component import rollups as meter_rollups
    from services.vehicle.component import rollups as vehicle_rollups

    settings = Settings(database_url=database_url)  # the services run with the defaults
    made = [meter_rollups(settings), vehicle_rollups(settings)]
    hour_us = 3600 * 1_000_000
    first, end = start_us // hour_us * hour_us, -(-end_us // hour_us) * hour_us
    readings = 0
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SET jit = off")
        tables = ("meter.meter_readings", "vehicle.vehicle_readings")
        for rollups, table in zip(made, tables, strict=True):
            rollups.mark(connection, first, end)
            counted = connection.execute(
                f"SELECT count(*) FROM {table} WHERE read_time >= %s AND read_time < %s",
                (_datetime(first), _datetime(end)),
            ).fetchone()
            readings += counted[0] if counted else 0
        started = time.perf_counter()
        for rollups in made:
            rollups.refresh(connection, (first, end))
        seconds = time.perf_counter() - started
    return RollupCost((end - first) // hour_us, readings, seconds)


def _every_minute_streams(
    stub_call: Callable[..., Any], requests: Callable[[list[int]], Any], minutes: int
) -> None:
    chunk = 20_000  # readings per message (a stream holds at most 100,000)
    batches = [list(range(m, min(m + chunk, minutes))) for m in range(0, minutes, chunk)]
    stub_call(iter([requests(batch) for batch in batches]), timeout=300)


def long_window(
    database_url: str,
    meter_target: str,
    vehicle_target: str,
    analytics_target: str,
    *,
    start_us: int,
    days: int,
    vehicles: int,
    calls: int,
) -> LongWindow:
    """Seeds `vehicles` vehicles (LW-VH-n on LW-CHG-n, 0.125 kWh DC a minute, 0.25 kWh AC)
    for `days` from `start_us`, and times `calls` sequential GetVehiclePerformance calls of
    the whole window at random vehicles, twice. The answers must agree (the same figures, to
    1e-9: sums are taken in another order)."""
    from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2_grpc

    from services.meter.component import rollups as meter_rollups
    from services.vehicle.component import rollups as vehicle_rollups

    minutes = days * 1440
    first_s = start_us // 1_000_000

    def meter_request(v: int, batch: list[int]) -> meter_service_pb2.IngestReadingsRequest:
        return meter_service_pb2.IngestReadingsRequest(
            readings=[
                meter_pb2.MeterReading(
                    meter_id=f"LW-CHG-{v}",
                    kwh_consumed_ac=0.25,
                    voltage=230,
                    timestamp=Timestamp(seconds=first_s + 60 * (m + 1)),
                )
                for m in batch
            ]
        )

    def vehicle_request(v: int, batch: list[int]) -> vehicle_service_pb2.IngestReadingsRequest:
        return vehicle_service_pb2.IngestReadingsRequest(
            readings=[
                vehicle_pb2.VehicleReading(
                    vehicle_id=f"LW-VH-{v}",
                    charger_id=f"LW-CHG-{v}",
                    soc=50,
                    kwh_delivered_dc=0.125,
                    battery_temp=30,
                    timestamp=Timestamp(seconds=first_s + 60 * (m + 1)),
                )
                for m in batch
            ]
        )

    with grpc.insecure_channel(meter_target) as channel:
        meter_stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        for v in range(vehicles):
            _every_minute_streams(meter_stub.IngestReadings, partial(meter_request, v), minutes)
    with grpc.insecure_channel(vehicle_target) as channel:
        vehicle_stub = vehicle_service_pb2_grpc.VehicleServiceStub(channel)
        for v in range(vehicles):
            _every_minute_streams(vehicle_stub.IngestReadings, partial(vehicle_request, v), minutes)
    end_us = start_us + days * DAY_US
    within = (start_us - 3600 * 1_000_000, end_us + 2 * 3600 * 1_000_000)
    settings = Settings(database_url=database_url)  # the services run with the defaults
    made = [meter_rollups(settings), vehicle_rollups(settings)]
    with psycopg.connect(database_url, autocommit=True) as connection:
        for rollups in made:  # every hour of the window from the readings
            rollups.mark(connection, *within)
    rng = random.Random(11)
    picks = [f"LW-VH-{rng.randrange(vehicles)}" for _ in range(calls + 5)]

    def timed() -> tuple[list[float], list[Any]]:
        latencies, answers = [], []
        with grpc.insecure_channel(analytics_target) as channel:
            stub = analytics_service_pb2_grpc.AnalyticsServiceStub(channel)
            for vehicle_id in picks:
                request = analytics_service_pb2.GetVehiclePerformanceRequest(
                    vehicle_id=vehicle_id,
                    end_time=Timestamp(seconds=end_us // 1_000_000),
                    window=Duration(seconds=days * 86400),
                )
                started = time.perf_counter()
                answers.append(stub.GetVehiclePerformance(request, timeout=60))
                latencies.append((time.perf_counter() - started) * 1000)
        return latencies[5:], answers  # the first calls warm up connections and plans

    raw_ms, raw_answers = timed()
    started = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SET jit = off")
        for rollups in made:
            rollups.refresh(connection, within)
    rollups_seconds = time.perf_counter() - started
    rolled_ms, rolled_answers = timed()
    for raw, rolled in zip(raw_answers, rolled_answers, strict=True):
        assert raw.data_points == rolled.data_points == minutes, (raw, rolled)
        assert raw.meter_data_points == rolled.meter_data_points, (raw, rolled)
        for field in ("total_energy_consumed_ac", "total_energy_delivered_dc"):
            a, b = getattr(raw, field), getattr(rolled, field)
            assert abs(a - b) <= 1e-9 * abs(a), (field, a, b)
    return LongWindow(
        days,
        vehicles,
        2 * vehicles * minutes,
        calls,
        statistics.median(raw_ms),
        percentile(raw_ms, 0.99),
        statistics.median(rolled_ms),
        percentile(rolled_ms, 0.99),
        rollups_seconds,
    )


@dataclass
class DayDrop:
    """One day of meter readings removed two ways: DELETE (rolled back, so that the same day is
    then dropped) and its partition detached CONCURRENTLY and dropped."""

    rows: int
    delete_seconds: float
    drop_seconds: float


def day_drop(database_url: str, day_us: int) -> DayDrop:
    partitions = DailyPartitions("meter", "meter_readings")
    day = day_of(day_us)
    name = f"meter.{partitions.name(day)}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(f"SELECT count(*) FROM {name}").fetchone()
        rows = int(row[0]) if row else 0
        started = time.perf_counter()
        with connection.transaction():
            connection.execute(
                "DELETE FROM meter.meter_readings WHERE read_time >= %s AND read_time < %s",
                (_datetime(day * DAY_US), _datetime((day + 1) * DAY_US)),
            )
            deleted = time.perf_counter() - started
            raise psycopg.Rollback()
        started = time.perf_counter()
        dropped = partitions.drop(connection, day)
        drop_seconds = time.perf_counter() - started
    assert dropped, partitions.name(day)
    return DayDrop(rows=rows, delete_seconds=deleted, drop_seconds=drop_seconds)


def _datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1e6, UTC)


@dataclass
class Growth:
    """Ingest end to end (recorded streams, both services) of one load while the histories hold
    only a warm-up, then of the next load once `history_rows` rows of earlier days were added:
    the rate of each and their ratio. Each measured load writes a day of its own (a new
    partition, as each day is) and starts right after a CHECKPOINT, so the two differ only in
    the history stored (not in which pages a checkpoint makes WAL copy in full, nor in a
    status row made rather than updated: a warm-up minute of the fleet makes them first)."""

    first_readings: int
    first_per_s: float
    history_rows: int
    fill_seconds: float
    after_readings: int
    after_per_s: float

    @property
    def ratio(self) -> float:
        return self.after_per_s / self.first_per_s


def growth(
    database_url: str,
    meter: ServiceProcess,
    vehicle: ServiceProcess,
    *,
    config: FleetConfig,
    history_rows: int,
    scratch: Path,
    streams: int,
) -> Growth:
    """`config` is the first measured load; the second is the same fleet a day later."""
    truncate(database_url)

    def recorded(name: str, start_us: int, minutes: int) -> Path:
        path = scratch / name
        record(replace(config, start_us=start_us, minutes=minutes), path)
        return path

    warm_up = recorded("growth-0.readings", config.start_us - DAY_US, 1)
    first_file = recorded("growth-1.readings", config.start_us, config.minutes)
    after_file = recorded("growth-2.readings", config.start_us + DAY_US, config.minutes)
    load(warm_up, meter, vehicle, streams)
    _checkpoint(database_url)
    first = load(first_file, meter, vehicle, streams)
    started = time.perf_counter()
    fill_history(database_url, config.start_us - DAY_US, history_rows, config.chargers)
    fill_seconds = time.perf_counter() - started
    _checkpoint(database_url)
    after = load(after_file, meter, vehicle, streams)
    return Growth(
        first_readings=first.readings,
        first_per_s=first.per_s,
        history_rows=_history_rows(database_url),
        fill_seconds=fill_seconds,
        after_readings=after.readings,
        after_per_s=after.per_s,
    )


def _checkpoint(database_url: str) -> None:
    # CHECKPOINT needs superuser or pg_checkpoint; without, the loads start as they find it.
    with (
        psycopg.connect(database_url, autocommit=True) as connection,
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
    ):
        connection.execute("CHECKPOINT")


# How the fill makes a day of each history: rows first, then the keys and indexes the
# partitioned table has (a sorted build, not row-by-row inserts), then ATTACH, which adopts them.
_FILL = {
    "meter": (
        "meter_readings",
        "(meter_id, read_time, kwh_consumed_ac, voltage) "
        "SELECT 'FILL-' || lpad(e::text, 6, '0'), %s + m * interval '1 minute', 0.18, 230 "
        "FROM generate_series(0, %s - 1) AS e, generate_series(0, 1439) AS m LIMIT %s",
        ("ALTER TABLE {name} ADD PRIMARY KEY (meter_id, read_time)",),
    ),
    "vehicle": (
        "vehicle_readings",
        "(vehicle_id, read_time, charger_id, soc, kwh_delivered_dc, battery_temp) "
        "SELECT 'FILLV-' || lpad(e::text, 6, '0'), %s + m * interval '1 minute', "
        "'FILL-' || lpad(e::text, 6, '0'), 50, 0.16, 25 "
        "FROM generate_series(0, %s - 1) AS e, generate_series(0, 1439) AS m LIMIT %s",
        (
            "ALTER TABLE {name} ADD PRIMARY KEY (vehicle_id, read_time)",
            "CREATE INDEX ON {name} (charger_id, read_time)",
        ),
    ),
}


def fill_history(database_url: str, before_us: int, rows: int, entities: int) -> None:
    """`rows` readings of the days before `before_us`, half meter and half vehicle, `entities`
    of each reporting once a minute, made by PostgreSQL (one connection per kind): each day a
    table filled, indexed and attached as that day's partition."""
    last_day = day_of(before_us) - 1
    per_day = entities * 1_440
    half = rows // 2
    days = [last_day - k for k in range(-(-half // per_day))]

    def fill(schema: str) -> None:
        table, select, keys = _FILL[schema]
        partitions = DailyPartitions(schema, table)
        left = half
        with psycopg.connect(database_url, autocommit=True) as connection:
            for day in days:
                take = min(left, per_day)
                left -= take
                name = f"{schema}.{partitions.name(day)}"
                connection.execute(
                    f"CREATE TABLE {name} (LIKE {schema}.{table} INCLUDING DEFAULTS)"
                )
                connection.execute(
                    f"INSERT INTO {name} {select}", (_datetime(day * DAY_US), entities, take)
                )
                for key in keys:
                    connection.execute(key.format(name=name))
                connection.execute(
                    f"ALTER TABLE {schema}.{table} ATTACH PARTITION {name} " + bounds_sql(day)
                )

    _run_timed([threading.Thread(target=fill, args=(schema,)) for schema in _FILL])
