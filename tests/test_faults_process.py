"""Reliability of the server process: killed mid-load, drained on SIGTERM, overloaded. Real
processes, real PostgreSQL; nothing acknowledged is ever lost and nothing is stored twice."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import client
from services.launcher import ServiceProcess, start_service, wait_for_health
from tests.support import wait_for

pytestmark = pytest.mark.e2e

METER = "energy.meter.v1.MeterService"
SERVING = health_pb2.HealthCheckResponse.SERVING
T0 = 1_770_681_600  # 2026-02-10T00:00:00Z


def readings(meter_id: str, count: int, first_minute: int = 0) -> list[meter_pb2.MeterReading]:
    return [
        meter_pb2.MeterReading(
            meter_id=meter_id,
            kwh_consumed_ac=0.25,
            voltage=230,
            timestamp=Timestamp(seconds=T0 + 60 * (first_minute + k)),
        )
        for k in range(count)
    ]


def request(batch: Sequence[meter_pb2.MeterReading]) -> meter_service_pb2.IngestReadingsRequest:
    return meter_service_pb2.IngestReadingsRequest(readings=batch)


def stored(url: str, prefix: str) -> dict[str, int]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT meter_id, count(*) FROM meter.meter_readings WHERE meter_id LIKE %s "
            "GROUP BY meter_id",
            (prefix + "%",),
        ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


BATCH = 100  # readings per message of run_senders' streams


@dataclass(eq=False)
class _Attempt:
    sender: int
    after_release: bool  # begun once the hold was released
    parked: bool = False
    open: bool = True


class Hold:
    """Holds each sender's stream that starts at reading `first` open after `batches(sender)`
    of its messages until the test releases it: those readings are committed but cannot be
    acknowledged, so the test, not timing, decides that a fault hits committed, unacknowledged
    readings. Every attempt at that stream is held until the release, resends too. `deadline`
    replaces the sender's for held attempts, so that only the fault ends them."""

    def __init__(
        self, first: int, batches: Callable[[int], int], deadline: float | None = None
    ) -> None:
        self.first = first
        self.batches = batches
        self.deadline = deadline
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._attempts: list[_Attempt] = []
        # Senders with an attempt that began after the release and failed.
        self.failed_after_release: set[int] = set()

    def committed(self, sender: int) -> int:
        """A held sender's stored readings: the streams before this one and the held part."""
        return self.first + BATCH * self.batches(sender)

    def parked(self) -> set[int]:
        """Senders with an attempt held on a call that is still open."""
        with self._lock:
            return {a.sender for a in self._attempts if a.parked and a.open}

    def release(self) -> None:
        self._released.set()

    def call(
        self, call: Callable[..., Any], sender: int, first: Any, rest: Iterator[Any], timeout: float
    ) -> Any:
        attempt = _Attempt(sender, after_release=self._released.is_set())
        with self._lock:
            self._attempts.append(attempt)

        def held() -> Iterator[Any]:
            for sent, message in enumerate(itertools.chain([first], rest), 1):
                yield message
                # gRPC asks for the next message once this one is sent: park here.
                if sent == self.batches(sender) and not self._released.is_set():
                    with self._lock:
                        attempt.parked = True
                    self._released.wait()

        try:
            if self.deadline is not None and not self._released.is_set():
                timeout = self.deadline
            return call(held(), timeout=timeout)
        except grpc.RpcError:
            if attempt.after_release:
                with self._lock:
                    self.failed_after_release.add(sender)
            raise
        finally:
            with self._lock:
                attempt.open = False


def held_call(call: Callable[..., Any], sender: int, holds: Sequence[Hold]) -> Callable[..., Any]:
    """`call` with the streams that `holds` name held; the others pass as they are."""

    def attempt(requests: Iterator[Any], timeout: float) -> Any:
        first = next(requests)
        minute = (first.readings[0].timestamp.seconds - T0) // 60
        for hold in holds:
            if hold.first == minute:
                return hold.call(call, sender, first, requests, timeout)
        return call(itertools.chain([first], requests), timeout=timeout)

    return attempt


def run_senders(
    target: str,
    prefix: str,
    count: int,
    faults: Callable[[], None],
    *,
    per_sender: int,
    stream_readings: int,
    deadline: float = 120,
    holds: Sequence[Hold] = (),
) -> list[client.ResilientStreamSender]:
    """`count` clients each send `per_sender` readings of their own meter through resending
    streams while `faults()` runs; returns the senders once all are done (none may fail).
    `holds` hold chosen streams open until `faults()` releases them (see Hold)."""
    senders: list[client.ResilientStreamSender | None] = [None] * count
    failures: list[BaseException] = []

    def send(index: int) -> None:
        with client.channel(target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            sender = client.ResilientStreamSender(
                held_call(stub.IngestReadings, index, holds),
                request,
                batch_size=BATCH,
                stream_readings=stream_readings,
                deadline=deadline,
                give_up_after=300,
            )
            senders[index] = sender
            try:
                for first in range(0, per_sender, BATCH):
                    sender.send(readings(f"{prefix}-{index:02d}", BATCH, first))
                sender.flush()
            except BaseException as error:  # reported below
                failures.append(error)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    try:
        faults()
    finally:
        for hold in holds:  # never leave a sender parked, whatever happened
            hold.release()
        for thread in threads:
            thread.join(300)
    assert not failures, failures
    assert all(not t.is_alive() for t in threads), "a sender did not finish"
    assert None not in senders
    return [s for s in senders if s is not None]


def wait_held(url: str, prefix: str, count: int, hold: Hold, *, open_calls: bool) -> None:
    """Until every sender's held stream has its held part committed (and, with `open_calls`,
    is parked on a call that is still open)."""
    want = {f"{prefix}-{i:02d}": hold.committed(i) for i in range(count)}
    wait_for(
        f"the streams at reading {hold.first} held with {want} stored",
        lambda: (
            stored(url, prefix + "-") == want
            and (not open_calls or hold.parked() == set(range(count)))
        ),
        state=lambda: (stored(url, prefix + "-"), sorted(hold.parked())),
    )


def writers_waiting_on_a_lock(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'meter-writer' AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_kill_9_mid_load_then_restart_loses_and_doubles_nothing(database_url):
    meter = start_service("meter", {"DATABASE_URL": database_url})
    per_client = 3_000
    # Each client's third stream (readings 1,000-1,499, five messages) is held open after 1 to
    # 4 of its messages: those are committed and cannot be acknowledged.
    hold = Hold(1_000, lambda sender: 1 + sender % 4)
    restarted: list[ServiceProcess] = []

    def kill_and_restart() -> None:
        wait_held(database_url, "KILL", 20, hold, open_calls=True)
        with psycopg.connect(database_url) as blocker:
            blocker.execute("LOCK TABLE meter.charger_status IN EXCLUSIVE MODE")
            # The rest of the held streams now reaches the writers, whose commit waits on the
            # lock: no stream can be acknowledged, and the kill lands on a commit in flight.
            hold.release()
            wait_for(
                "a writer's commit waiting on the lock",
                lambda: writers_waiting_on_a_lock(database_url) > 0,
            )
            meter.process.send_signal(signal.SIGKILL)
            meter.process.wait(10)
            blocker.rollback()
        restarted.append(
            start_service(
                "meter",
                {"DATABASE_URL": database_url, "METER_LISTEN_ADDR": f"127.0.0.1:{meter.port}"},
            )
        )

    try:
        senders = run_senders(
            meter.target,
            "KILL",
            20,
            kill_and_restart,
            per_sender=per_client,
            stream_readings=500,
            holds=[hold],
        )
    finally:
        meter.kill()
        for process in restarted:
            process.kill()
    assert stored(database_url, "KILL-") == {f"KILL-{i:02d}": per_client for i in range(20)}
    # The 20 streams cut by the kill were sent again; what they had committed came back as
    # duplicates, stored once, and every reading was acknowledged exactly once.
    for index, sender in enumerate(senders):
        assert sender.totals.accepted + sender.totals.duplicates == per_client
        assert sender.totals.duplicates >= BATCH * hold.batches(index)


def test_sigterm_drains_100_active_streams(database_url):
    meter = start_service("meter", {"DATABASE_URL": database_url, "SHUTDOWN_GRACE_SECONDS": "20"})
    wait_for_health(meter.target, METER, SERVING)
    draining = threading.Event()
    responses: dict[int, meter_service_pb2.IngestReadingsResponse] = {}
    errors: list[BaseException] = []

    def batches(index: int) -> Iterator[meter_service_pb2.IngestReadingsRequest]:
        yield request(readings(f"DRAIN-{index:03d}", 10, 0))
        draining.wait(120)  # the rest is sent only once the server is draining
        for part in range(1, 5):
            time.sleep(0.5)
            yield request(readings(f"DRAIN-{index:03d}", 10, 10 * part))

    def stream(index: int, stub: meter_service_pb2_grpc.MeterServiceStub) -> None:
        try:
            responses[index] = stub.IngestReadings(batches(index), timeout=120)
        except BaseException as error:  # reported below
            errors.append(error)

    try:
        with grpc.insecure_channel(meter.target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=METER), timeout=120
            )
            assert next(watch).status == SERVING
            threads = [threading.Thread(target=stream, args=(i, stub)) for i in range(100)]
            for thread in threads:
                thread.start()
            # Every stream's first batch is committed: all 100 handlers are running on the
            # server (a call the server has not picked up yet is cancelled by the stop, not
            # drained).
            wait_for(
                "every stream's first batch committed",
                lambda: sum(stored(database_url, "DRAIN-").values()) == 1_000,
                state=lambda: sum(stored(database_url, "DRAIN-").values()),
            )
            signalled = time.monotonic()
            meter.process.send_signal(signal.SIGTERM)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            assert time.monotonic() - signalled < 1.0
            watch.cancel()
            draining.set()
            for thread in threads:
                thread.join(120)
        assert meter.process.wait(60) == 0
    finally:
        draining.set()
        meter.kill()
    assert not errors, errors[:3]
    assert all(r.accepted == 50 for r in responses.values()) and len(responses) == 100
    assert stored(database_url, "DRAIN-") == {f"DRAIN-{i:03d}": 50 for i in range(100)}


def test_calls_beyond_the_limit_get_resource_exhausted(database_url):
    meter = start_service("meter", {"DATABASE_URL": database_url, "GRPC_MAX_CONCURRENT_RPCS": "10"})
    release = threading.Event()
    outcomes: list[object] = []
    lock = threading.Lock()

    def held_batches(index: int) -> Iterator[meter_service_pb2.IngestReadingsRequest]:
        yield request(readings(f"LIMIT-{index:02d}", 5))
        release.wait(300)  # an admitted call stays open until the refusals are counted

    def stream(index: int, stub: meter_service_pb2_grpc.MeterServiceStub) -> None:
        try:
            response = stub.IngestReadings(held_batches(index), timeout=360)
            outcome: object = response.accepted
        except grpc.RpcError as error:
            outcome = error.code()
        with lock:
            outcomes.append(outcome)

    try:
        wait_for_health(meter.target, METER, SERVING)
        with grpc.insecure_channel(meter.target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            threads = [threading.Thread(target=stream, args=(i, stub)) for i in range(30)]
            for thread in threads:
                thread.start()
            wait_for("20 calls answered", lambda: len(outcomes) >= 20, state=lambda: outcomes)
            assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 20
            release.set()
            for thread in threads:
                thread.join(120)
    finally:
        release.set()
        meter.kill()
    assert outcomes.count(5) == 10, outcomes  # the admitted ten completed
    assert sum(stored(database_url, "LIMIT-").values()) == 50


def test_oversized_message_is_resource_exhausted(database_url):
    meter = start_service(
        "meter", {"DATABASE_URL": database_url, "GRPC_MAX_MESSAGE_BYTES": "100000"}
    )
    try:
        wait_for_health(meter.target, METER, SERVING)
        with grpc.insecure_channel(meter.target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            big = request(readings("BIG-1", 4_000))
            assert big.ByteSize() > 100_000
            with pytest.raises(grpc.RpcError) as failure:
                stub.IngestReadings(iter([big]), timeout=30)
            assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            small = stub.IngestReadings(iter([request(readings("BIG-1", 100))]), timeout=30)
            assert small.accepted == 100
    finally:
        meter.kill()


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_backpressure_bounds_memory_when_the_database_stalls(database_url):
    """With the writers stuck behind a lock, callers are held back and then refused; the queue
    does not grow without bound, and what was acknowledged before is stored."""
    meter = start_service(
        "meter",
        {
            "DATABASE_URL": database_url,
            "WRITER_COUNT": "1",
            "WRITER_QUEUE_READINGS": "20000",
            "WRITER_ENQUEUE_TIMEOUT_SECONDS": "2",
        },
    )
    try:
        wait_for_health(meter.target, METER, SERVING)
        with grpc.insecure_channel(meter.target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            warm = stub.IngestReadings(iter([request(readings("PUSH-00", 1_000))]), timeout=30)
            assert warm.accepted == 1_000
            baseline = rss_mib(meter.process.pid)
            with psycopg.connect(database_url) as blocker:
                blocker.execute("LOCK TABLE meter.charger_status IN EXCLUSIVE MODE")
                codes = []
                for index in range(1, 9):  # 8 x 50,000 readings against a 20,000 queue
                    batches = (
                        request(readings(f"PUSH-{index:02d}", 500, 500 * k)) for k in range(100)
                    )
                    try:
                        stub.IngestReadings(batches, timeout=30)
                        codes.append(grpc.StatusCode.OK)
                    except grpc.RpcError as error:
                        codes.append(error.code())
                grown = rss_mib(meter.process.pid) - baseline
                blocker.rollback()
        assert set(codes) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        # 400,000 readings were pushed; a queue holding them all would take far more than this.
        assert grown < 150, f"server grew {grown:.0f} MiB while the database stalled"
    finally:
        meter.kill()
    assert stored(database_url, "PUSH-00") == {"PUSH-00": 1_000}
