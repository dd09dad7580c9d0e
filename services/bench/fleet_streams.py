"""Benchmark phase "fleet": K long-lived IngestReadings streams held open against one
MeterService process, each charger sending a small batch every few seconds.

Reports errors, readings acknowledged and stored, and the server's peak RSS and CPU. The server
runs as a real `energy-ingest serve meter` child so its memory is measured alone; the client
side is one asyncio loop (grpc.aio), since 10,000 client threads would distort the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import grpc
import psycopg
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from google.protobuf import timestamp_pb2

from services.launcher import ServiceProcess, start_serving

STREAMS_PER_CHANNEL = 1000
MINUTE_MICROS = 60_000_000
# The server under test, as deployed; a module constant so an experiment can swap it.
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class FleetResult:
    streams: int
    readings_sent: int
    readings_acknowledged: int  # sum of `accepted` + `duplicates` over all stream responses
    readings_stored: int  # count(*) in meter.meter_readings for the fleet's meter ids after the run
    errors: int  # streams that ended with a gRPC error
    error_samples: list[str]  # up to 5 distinct "CODE: details"
    server_peak_rss_mib: float  # peak RSS of the server while streams were open
    server_cpu_seconds: float  # user+sys CPU the server used during the phase
    duration_seconds: float
    open_seconds: float  # time until all K streams were open and had sent their first batch
    # Beyond the phase's contract, to tell whether the server really held all K at once (a
    # client's write completes once HTTP/2 has it, before the server runs a handler for it).
    all_held: bool = False  # every sent reading was stored before any stream closed
    held_seconds: float = -1.0  # time until then; -1 when never
    server_peak_threads: int = 0  # one worker thread per live call in the thread-pool server
    server_idle_threads: int = 0  # its thread count once SERVING, before any stream
    client_cpu_seconds: float = 0.0  # user+sys CPU of this (client) process during the phase


# ---------------------------------------------------------------------------------------------
# The server process


def _start_server(database_url: str, streams: int) -> ServiceProcess:
    return start_serving(
        "meter",
        {
            "DATABASE_URL": database_url,
            "METER_DATABASE_URL": "",  # it would win over DATABASE_URL
            # Each streaming call holds one worker thread for its whole life.
            "GRPC_MAX_WORKERS": str(streams + 64),
            "GRPC_MAX_CONCURRENT_RPCS": str(streams + 64),
            # Streams opened faster than workers pick them up queue here instead of being
            # cancelled.
            "GRPC_MAX_PENDING_REQUESTS": str(max(20_000, 2 * streams)),
            # The client multiplexes STREAMS_PER_CHANNEL streams on each connection, and the
            # whole fleet comes from this one machine, standing in for `streams` chargers
            # at as many addresses: the per-connection and per-address caps make room for it.
            "GRPC_MAX_STREAMS_PER_CONNECTION": str(STREAMS_PER_CHANNEL),
            "MAX_CALLS_PER_PEER": "0",
            # Each stream is held open, silent, after its last batch until the whole fleet's
            # readings are stored (that is how the phase proves all K were running at once):
            # the server's idle timeout would end them first (measured: 2,130 of 10,000 streams
            # DEADLINE_EXCEEDED at the default 30 s). Longer than any hold.
            "STREAM_IDLE_TIMEOUT_SECONDS": "3600",
        },
    )


# ---------------------------------------------------------------------------------------------
# Measuring the server from /proc


@dataclass(frozen=True)
class _ProcStatus:
    rss_kib: int = 0
    hwm_kib: int = 0
    threads: int = 0


def _proc_status(pid: int) -> _ProcStatus:
    """VmRSS, VmHWM (KiB) and thread count; zeros once the process is gone."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    values[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return _ProcStatus(values.get("VmRSS", 0), values.get("VmHWM", 0), values.get("Threads", 0))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    # The command name may hold spaces and parentheses: fields count from the last ")".
    after_name = text[text.rindex(")") + 2 :].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return (utime + stime) / _CLK_TCK


class _ProcSampler:
    """Samples the server every `period` seconds in a thread and keeps the peaks."""

    def __init__(self, pid: int, period: float = 0.5) -> None:
        self._pid = pid
        self._period = period
        self._stop = threading.Event()
        self.peak_rss_kib = 0
        self.peak_threads = 0
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while True:
            status = _proc_status(self._pid)
            self.peak_rss_kib = max(self.peak_rss_kib, status.rss_kib)
            self.peak_threads = max(self.peak_threads, status.threads)
            if self._stop.wait(self._period):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        # VmHWM also catches a spike between two samples.
        status = _proc_status(self._pid)
        self.peak_rss_kib = max(self.peak_rss_kib, status.rss_kib, status.hwm_kib)


# ---------------------------------------------------------------------------------------------
# The client fleet


@dataclass
class _Tally:
    streams: int
    acknowledged: int = 0
    sent: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    opened: int = 0  # streams that sent their first batch, or failed before
    open_at: float | None = None
    written: int = 0  # streams that sent every batch, or failed before
    all_written: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    held_at: float | None = None

    def error(self, sample: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5 and sample not in self.error_samples:
            self.error_samples.append(sample)
        # A stream that failed is no longer held: nothing left to wait for.
        self.release.set()

    def stream_opened(self, now: float) -> None:
        self.opened += 1
        if self.opened == self.streams:
            self.open_at = now

    def stream_written(self) -> None:
        self.written += 1
        if self.written == self.streams:
            self.all_written.set()


def _batch(
    meter_id: str, charger: int, first_minute: int, size: int, start_micros: int
) -> meter_service_pb2.IngestReadingsRequest:
    readings = []
    for minute in range(first_minute, first_minute + size):
        micros = start_micros + minute * MINUTE_MICROS
        # Deterministic spread over 0.1-0.3 kWh per minute, distinct per charger and minute.
        kwh = 0.1 + 0.2 * (((charger * 7919 + minute * 104_729) % 1000) / 999)
        readings.append(
            meter_pb2.MeterReading(
                meter_id=meter_id,
                kwh_consumed_ac=round(kwh, 4),
                voltage=230.0,
                timestamp=timestamp_pb2.Timestamp(
                    seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000
                ),
            )
        )
    return meter_service_pb2.IngestReadingsRequest(readings=readings)


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return f"{type(error).__name__}: {error}"


async def _one_stream(
    stub: meter_service_pb2_grpc.MeterServiceStub,
    charger: int,
    tally: _Tally,
    *,
    t0: float,
    offset: float,
    batches: int,
    batch_size: int,
    interval: float,
    start_micros: int,
    meter_id: str,
    timeout: float,
) -> None:
    loop = asyncio.get_running_loop()
    call = stub.IngestReadings(timeout=timeout)
    # A call that ends while held (the server cancelled it) ends the hold for all, so the
    # failure is counted now rather than when the hold times out.
    call.add_done_callback(lambda _call: tally.release.set())
    opened = written = False
    try:
        for number in range(batches):
            # Absolute schedule, so a slow write does not push every later batch back.
            delay = t0 + offset + number * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await call.write(
                _batch(meter_id, charger, number * batch_size, batch_size, start_micros)
            )
            tally.sent += batch_size
            if not opened:
                opened = True
                tally.stream_opened(loop.time())
        written = True
        tally.stream_written()
        await tally.release.wait()
        await call.done_writing()
        response = await call
    except Exception as error:
        # A failed stream still counts as settled, so neither milestone waits for it.
        if not opened:
            tally.stream_opened(loop.time())
        if not written:
            tally.stream_written()
        if not isinstance(error, grpc.aio.AioRpcError):
            # A write on a call the server already ended raises InvalidStateError; the call's
            # own status says why.
            try:
                await call
            except grpc.aio.AioRpcError as status:
                error = status
            except Exception:
                pass
        tally.error(_describe(error))
        return
    tally.acknowledged += response.accepted + response.duplicates


async def _hold_until_stored(
    tally: _Tally, database_url: str, meter_prefix: str, baseline: int, timeout: float
) -> None:
    """Keeps every stream open until the database holds every reading sent.

    A handler consumes a stream's messages only while it runs, and none can finish before its
    stream closes; so once all readings are stored with no stream closed yet, the server was
    running all K calls at the same time. Gives up after `timeout` or at the first error."""
    try:
        await tally.all_written.wait()
        if baseline == 0 and not tally.release.is_set():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline and not tally.release.is_set():
                stored = await asyncio.to_thread(_count_stored, database_url, meter_prefix)
                if stored >= tally.sent:
                    tally.held_at = loop.time()
                    break
                await asyncio.sleep(0.5)
    finally:
        tally.release.set()


async def _drive_fleet(
    target: str,
    *,
    streams: int,
    batches: int,
    batch_size: int,
    interval: float,
    start_micros: int,
    meter_prefix: str,
    database_url: str,
    hold_timeout: float,
) -> tuple[_Tally, float]:
    """Runs the fleet; returns the tally and the loop time it started at."""
    tally = _Tally(streams)
    # Rows already there (a rerun) would make "all stored" meaningless: then nothing is held.
    baseline = await asyncio.to_thread(_count_stored, database_url, meter_prefix)
    channel_count = max(1, -(-streams // STREAMS_PER_CHANNEL))
    channels = [
        grpc.aio.insecure_channel(
            target,
            # Identical channels would share one subchannel from the global pool, hence one TCP
            # connection; a local pool gives each channel its own HTTP/2 connection.
            options=[("grpc.use_local_subchannel_pool", 1)],
        )
        for _ in range(channel_count)
    ]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), timeout=30)
        stubs = [meter_service_pb2_grpc.MeterServiceStub(channel) for channel in channels]
        # The stream's own schedule, the hold, and generous room for a loaded server.
        timeout = interval * (batches + 1) + hold_timeout + 300.0
        t0 = loop.time()
        holder = asyncio.create_task(
            _hold_until_stored(tally, database_url, meter_prefix, baseline, hold_timeout)
        )
        tasks = [
            asyncio.create_task(
                _one_stream(
                    stubs[index % channel_count],
                    index,
                    tally,
                    t0=t0,
                    # First sends are spread over the first interval so they do not all fire.
                    offset=interval * index / streams,
                    batches=batches,
                    batch_size=batch_size,
                    interval=interval,
                    start_micros=start_micros,
                    meter_id=f"{meter_prefix}-{index:05d}",
                    timeout=timeout,
                )
            )
            for index in range(streams)
        ]
        await asyncio.gather(*tasks)
        await holder
    finally:
        for channel in channels:
            await channel.close()
    return tally, t0


# ---------------------------------------------------------------------------------------------
# The phase


def _count_stored(database_url: str, meter_prefix: str) -> int:
    escaped = meter_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM meter.meter_readings WHERE meter_id LIKE %s",
            (f"{escaped}-%",),
        ).fetchone()
    return int(row[0]) if row else 0


def run_fleet(
    *,
    database_url: str,
    streams: int,
    batches_per_stream: int,
    batch_size: int,
    interval_seconds: float,
    start_micros: int,
    meter_prefix: str = "FLEET",
    hold_timeout_seconds: float = 120.0,
) -> FleetResult:
    """Runs the fleet phase against a fresh MeterService process; the database must be migrated.

    Readings are one minute apart from `start_micros`, which must leave every reading in the
    past. After its last batch each stream stays open until every reading sent is stored (at
    most `hold_timeout_seconds`), which proves the server held all streams at once; with rows
    of the prefix already stored (a rerun) there is nothing to prove that with and streams
    close at once. Stored rows are counted by prefix."""
    if streams <= 0 or batches_per_stream <= 0 or batch_size <= 0:
        raise ValueError("streams, batches_per_stream and batch_size must be positive")
    last_micros = start_micros + (batches_per_stream * batch_size - 1) * MINUTE_MICROS
    if start_micros < 946_684_800_000_000 or last_micros > time.time() * 1_000_000:
        raise ValueError("readings must fall after 2000-01-01 and in the past")

    server = _start_server(database_url, streams)
    pid = server.pid
    idle_threads = _proc_status(pid).threads
    sampler = _ProcSampler(pid)
    sampler.start()
    try:
        cpu_before = _cpu_seconds(pid)
        client_before = os.times()
        started = time.monotonic()
        tally, t0 = asyncio.run(
            _drive_fleet(
                server.target,
                streams=streams,
                batches=batches_per_stream,
                batch_size=batch_size,
                interval=interval_seconds,
                start_micros=start_micros,
                meter_prefix=meter_prefix,
                database_url=database_url,
                hold_timeout=hold_timeout_seconds,
            )
        )
        duration = time.monotonic() - started
        cpu_used = _cpu_seconds(pid) - cpu_before
        client_after = os.times()
    finally:
        sampler.stop()  # before the server exits, while its VmHWM can still be read
        exit_code = server.terminate(60)
    if exit_code != 0:
        tally.error(f"server exited {exit_code}")
    return FleetResult(
        streams=streams,
        readings_sent=tally.sent,
        readings_acknowledged=tally.acknowledged,
        readings_stored=_count_stored(database_url, meter_prefix),
        errors=tally.errors,
        error_samples=tally.error_samples,
        server_peak_rss_mib=round(sampler.peak_rss_kib / 1024, 1),
        server_cpu_seconds=round(cpu_used, 2),
        duration_seconds=round(duration, 2),
        open_seconds=round(tally.open_at - t0, 2) if tally.open_at is not None else -1.0,
        all_held=tally.held_at is not None,
        held_seconds=round(tally.held_at - t0, 2) if tally.held_at is not None else -1.0,
        server_peak_threads=sampler.peak_threads,
        server_idle_threads=idle_threads,
        client_cpu_seconds=round(
            (client_after.user - client_before.user) + (client_after.system - client_before.system),
            2,
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.bench.fleet_streams")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--prefix", default="FLEET")
    parser.add_argument("--hold-timeout", type=float, default=120.0)
    parser.add_argument(
        "--start-micros",
        type=int,
        default=None,
        help="first reading's time (default: two days ago, on the minute)",
    )
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url or DATABASE_URL is required")
    start = args.start_micros
    if start is None:
        start = (int(time.time()) // 60 - 2 * 24 * 60) * MINUTE_MICROS
    result = run_fleet(
        database_url=args.database_url,
        streams=args.streams,
        batches_per_stream=args.batches,
        batch_size=args.batch_size,
        interval_seconds=args.interval,
        start_micros=start,
        meter_prefix=args.prefix,
        hold_timeout_seconds=args.hold_timeout,
    )
    print(json.dumps(asdict(result), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
