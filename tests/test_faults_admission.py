"""Fault tier: no call holds a worker without progress, and business traffic cannot delay health.

Real servers (`energy-ingest serve meter` processes) on real sockets, real grpc clients. The
attacks hold calls that sent their headers and never a message: for a unary method, a
request-streaming call on the unary method's path (the client sends HEADERS, then waits for a
request iterator that never yields, so no DATA frame ever goes out); for IngestReadings, a
stream whose iterator never yields. Each attack spreads its calls over several connections, so
the server's per-connection stream limit does not by itself stop them."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.launcher import ServiceProcess, start_service, wait_for_health

METER = "energy.meter.v1.MeterService"
SERVING = health_pb2.HealthCheckResponse.SERVING
INGEST_READING = f"/{METER}/IngestReading"
INGEST_READINGS = f"/{METER}/IngestReadings"
ATTACK_CALLS = 300
ATTACK_CONNECTIONS = 6
TOKENS = {
    "service-token": {"principal": "analytics", "role": "service"},
    "attacker-token": {"principal": "CHG-ATTACK", "role": "device"},
    "good-device-token": {"principal": "CHG-GOOD", "role": "device"},
}


def write_tokens(directory: Path) -> str:
    path = directory / "tokens.json"
    table = {hashlib.sha256(token.encode()).hexdigest(): who for token, who in TOKENS.items()}
    path.write_text(json.dumps(table))
    return str(path)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def own_connection(target: str) -> grpc.Channel:
    """A channel with a connection of its own (not shared with other channels to `target`)."""
    return grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


class Attack:
    """`calls` calls on `method` spread over `connections` connections, each sending headers and
    then nothing until `stop()`. Records how each call ended."""

    def __init__(
        self,
        target: str,
        method: str,
        calls: int,
        connections: int,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.stopped = threading.Event()
        self.outcomes: list[tuple[grpc.StatusCode, float]] = []
        self._lock = threading.Lock()
        self._channels = [own_connection(target) for _ in range(connections)]
        self._started = time.monotonic()
        self._threads = [
            threading.Thread(
                target=self._call,
                args=(self._channels[i % connections], method, metadata),
                daemon=True,
            )
            for i in range(calls)
        ]

    def _silent(self) -> Iterator[bytes]:
        self.stopped.wait()
        return
        yield b""  # a generator that never yields before stop()

    def _call(
        self, channel: grpc.Channel, method: str, metadata: tuple[tuple[str, str], ...]
    ) -> None:
        call = channel.stream_unary(method)  # raw bytes: no serializer
        try:
            call(self._silent(), metadata=metadata, timeout=120)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
        with self._lock:
            self.outcomes.append((code, time.monotonic() - self._started))

    def start(self) -> Attack:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        for channel in self._channels:
            channel.close()
        for thread in self._threads:
            thread.join(10)

    def ended(self) -> list[tuple[grpc.StatusCode, float]]:
        with self._lock:
            return list(self.outcomes)


class Legitimate:
    """A client calling IngestReading and GetChargerStatus in a loop (deadline 2 s each) as the
    service principal, counting successes with their times; and a health prober calling Check
    every 100 ms (deadline 1 s) on a connection of its own."""

    def __init__(self, target: str, metadata: tuple[tuple[str, str], ...], meter_id: str) -> None:
        self._channel = own_connection(target)
        self._health_channel = own_connection(target)
        self._stub = meter_service_pb2_grpc.MeterServiceStub(self._channel)
        self._metadata = metadata
        self._meter_id = meter_id
        self._stop = threading.Event()
        self.successes: list[float] = []
        self.failures: list[tuple[float, grpc.StatusCode]] = []
        self.health_failures: list[tuple[float, object]] = []
        self.health_checks = 0
        self._threads = [
            threading.Thread(target=self._run, daemon=True),
            threading.Thread(target=self._probe, daemon=True),
        ]

    def _run(self) -> None:
        base = int(time.time()) - 3600
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                if n % 2:
                    reading = meter_pb2.MeterReading(
                        meter_id=self._meter_id,
                        kwh_consumed_ac=1.0,
                        voltage=230.0,
                        timestamp=Timestamp(seconds=base + n),
                    )
                    self._stub.IngestReading(
                        meter_service_pb2.IngestReadingRequest(reading=reading),
                        metadata=self._metadata,
                        timeout=2,
                    )
                else:
                    self._stub.GetChargerStatus(
                        meter_service_pb2.GetChargerStatusRequest(meter_id=self._meter_id),
                        metadata=self._metadata,
                        timeout=2,
                    )
                self.successes.append(time.monotonic())
            except grpc.RpcError as error:
                self.failures.append((time.monotonic(), error.code()))

    def _probe(self) -> None:
        stub = health_pb2_grpc.HealthStub(self._health_channel)
        while not self._stop.wait(0.1):
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(service=METER), timeout=1)
                self.health_checks += 1
                if response.status != SERVING:
                    self.health_failures.append((time.monotonic(), response.status))
            except grpc.RpcError as error:
                self.health_failures.append((time.monotonic(), error.code()))

    def start(self) -> Legitimate:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self._channel.close()
        self._health_channel.close()

    def rate(self, start: float, end: float) -> float:
        return sum(1 for t in self.successes if start <= t < end) / (end - start)

    def first_success_after(self, moment: float) -> float | None:
        return next((t for t in self.successes if t >= moment), None)


def serve(database_url: str, **env: str) -> ServiceProcess:
    meter = start_service("meter", {"DATABASE_URL": database_url, **env})
    wait_for_health(meter.target, METER, SERVING)
    return meter


def assert_legitimate_unharmed(
    legit: Legitimate, baseline: tuple[float, float], attack: tuple[float, float]
) -> None:
    before = legit.rate(*baseline)
    during = legit.rate(*attack)
    print(
        f"legitimate calls/s before {before:.0f}, during {during:.0f}; "
        f"health checks {legit.health_checks}, failed {len(legit.health_failures)}"
    )
    assert before > 0, "the legitimate client made no call before the attack"
    assert during >= 0.5 * before, (
        f"legitimate calls fell from {before:.0f}/s to {during:.0f}/s under the attack; "
        f"failures: {legit.failures[:5]}"
    )
    recovered = legit.first_success_after(attack[1])
    assert recovered is not None and recovered - attack[1] <= 1.0, (
        f"no legitimate call within 1 s after the attack (first at {recovered})"
    )
    assert legit.health_checks > 0
    assert not legit.health_failures, f"health Check failed: {legit.health_failures[:5]}"


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


def test_unary_calls_without_message_or_credentials_hold_no_worker(database_url, tmp_path):
    """300 unauthenticated unary calls that never send their message, against a server admitting
    50 calls (so held threads would run out): each is refused UNAUTHENTICATED at once, the
    server never holds a thread per attacking call, legitimate calls and health go on."""
    meter = serve(
        database_url, AUTH_TOKENS_FILE=write_tokens(tmp_path), GRPC_MAX_CONCURRENT_RPCS="50"
    )
    legit = Legitimate(meter.target, bearer("service-token"), "CHG-LEGIT-1").start()
    attack: Attack | None = None
    try:
        time.sleep(2)
        baseline = (time.monotonic() - 1.5, time.monotonic())
        attack = Attack(meter.target, INGEST_READING, ATTACK_CALLS, ATTACK_CONNECTIONS).start()
        attack_start = time.monotonic()
        peak_threads = 0
        while time.monotonic() < attack_start + 4:
            peak_threads = max(peak_threads, threads_of(meter.process.pid))
            time.sleep(0.1)
        ended = attack.ended()
        attack.stop()
        attack_end = time.monotonic()
        time.sleep(1.5)
        legit.stop()
        # Refused at once, without waiting for the message that never comes.
        assert len(ended) == ATTACK_CALLS, f"only {len(ended)} of the calls were answered"
        assert {code for code, _ in ended} == {grpc.StatusCode.UNAUTHENTICATED}
        assert max(at for _, at in ended) < 4
        print(f"server threads at most {peak_threads} during the attack")
        # The pool is 50 + 8 + 8 threads (admission.pool_size) and a refusal holds none.
        assert peak_threads < 150, f"{peak_threads} threads in the server under the attack"
        assert_legitimate_unharmed(legit, baseline, (attack_start + 0.5, attack_end))
    finally:
        legit.stop()
        if attack is not None:
            attack.stop()
        meter.kill()
    assert any('"code": "UNAUTHENTICATED"' in line for line in meter.log_lines), "no audit line"


def test_idle_streams_of_one_device_are_capped_and_ended(database_url, tmp_path):
    """300 IngestReadings streams from one device token that never send a message: beyond
    MAX_CALLS_PER_PRINCIPAL they are RESOURCE_EXHAUSTED at once, the admitted ones are ended
    after STREAM_IDLE_TIMEOUT_SECONDS, other principals are served throughout."""
    idle_timeout = 2.0
    meter = serve(
        database_url,
        AUTH_TOKENS_FILE=write_tokens(tmp_path),
        MAX_CALLS_PER_PRINCIPAL="20",
        # The per-device stream cap (2 by default) would refuse first: this is the cap on any
        # principal's calls, whatever they are.
        MAX_STREAMS_PER_DEVICE="1000",
        STREAM_IDLE_TIMEOUT_SECONDS=str(idle_timeout),
    )
    legit = Legitimate(meter.target, bearer("service-token"), "CHG-LEGIT-2").start()
    attack: Attack | None = None
    try:
        time.sleep(2)
        baseline = (time.monotonic() - 1.5, time.monotonic())
        attack = Attack(
            meter.target,
            INGEST_READINGS,
            ATTACK_CALLS,
            ATTACK_CONNECTIONS,
            metadata=bearer("attacker-token"),
        ).start()
        attack_start = time.monotonic()
        # Another device is served while the attacker's streams are open.
        with own_connection(meter.target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            reading = meter_pb2.MeterReading(
                meter_id="CHG-GOOD",
                kwh_consumed_ac=1.0,
                voltage=230.0,
                timestamp=Timestamp(seconds=int(time.time()) - 60),
            )
            time.sleep(0.5)
            answer = stub.IngestReadings(
                iter([meter_service_pb2.IngestReadingsRequest(readings=[reading])]),
                metadata=bearer("good-device-token"),
                timeout=5,
            )
            assert answer.accepted == 1
        time.sleep(idle_timeout + 3)
        ended = attack.ended()
        attack.stop()
        attack_end = time.monotonic()
        time.sleep(1.5)
        legit.stop()
        codes = [code for code, _ in ended]
        assert len(ended) == ATTACK_CALLS, f"only {len(ended)} of the streams were ended"
        assert codes.count(grpc.StatusCode.DEADLINE_EXCEEDED) == 20, codes
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == ATTACK_CALLS - 20, codes
        idle_ends = [at for code, at in ended if code == grpc.StatusCode.DEADLINE_EXCEEDED]
        assert min(idle_ends) >= idle_timeout - 0.1
        assert max(idle_ends) <= idle_timeout + 2.5
        assert_legitimate_unharmed(legit, baseline, (attack_start + 0.5, attack_end))
    finally:
        legit.stop()
        if attack is not None:
            attack.stop()
        meter.kill()
    assert any('"code": "RESOURCE_EXHAUSTED"' in line for line in meter.log_lines)


def test_plaintext_caps_per_peer_and_ends_unary_calls_whose_message_never_comes(database_url):
    """Auth off: calls are counted per client address (MAX_CALLS_PER_PEER); a unary call whose
    message never arrives is ended after UNARY_MESSAGE_TIMEOUT_SECONDS; health is exempt."""
    meter = serve(database_url, MAX_CALLS_PER_PEER="5", UNARY_MESSAGE_TIMEOUT_SECONDS="1")
    attack = Attack(meter.target, INGEST_READING, 8, 2)
    try:
        attack.start()
        deadline = time.monotonic() + 10
        while len(attack.ended()) < 8 and time.monotonic() < deadline:
            # Health is answered while the peer's calls are all taken.
            with grpc.insecure_channel(meter.target) as channel:
                health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=METER), timeout=1
                )
            time.sleep(0.1)
        codes = [code for code, _ in attack.ended()]
        assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 3, codes
        assert codes.count(grpc.StatusCode.DEADLINE_EXCEEDED) == 5, codes
        # The slots are released: the same peer is served again, and a call that ends in an
        # error or a streamed response gives its slot back too (more calls than the cap).
        with grpc.insecure_channel(meter.target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            for _ in range(10):
                try:
                    stub.GetChargerStatus(
                        meter_service_pb2.GetChargerStatusRequest(meter_id="CHG-NONE"), timeout=5
                    )
                    raise AssertionError("an unknown charger was found")
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.NOT_FOUND, error
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            for _ in range(2 * 8 + 1):  # beyond GRPC_HEALTH_WORKERS, which reflection uses
                answers = list(
                    reflection.ServerReflectionInfo(
                        iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                        timeout=5,
                    )
                )
                assert answers[0].list_services_response.service
    finally:
        attack.stop()
        meter.kill()


def test_health_answers_while_business_calls_fill_every_admitted_slot(database_url):
    """GRPC_MAX_CONCURRENT_RPCS business calls held open: the next business call is answered
    RESOURCE_EXHAUSTED at once (overload is an answer, not a queue) and health Check, on threads
    of its own, answers every time."""
    meter = serve(database_url, GRPC_MAX_CONCURRENT_RPCS="5", MAX_CALLS_PER_PEER="0")
    attack = Attack(meter.target, INGEST_READINGS, 10, 2)
    try:
        attack.start()
        deadline = time.monotonic() + 10
        while len(attack.ended()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        codes = [code for code, _ in attack.ended()]
        assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 5, codes  # 5 held, 5 refused
        with own_connection(meter.target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(20):
                answer = health.Check(health_pb2.HealthCheckRequest(service=METER), timeout=1)
                assert answer.status == SERVING
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            started = time.monotonic()
            try:
                stub.GetChargerStatus(
                    meter_service_pb2.GetChargerStatusRequest(meter_id="CHG-NONE"), timeout=5
                )
                raise AssertionError("a business call was admitted beyond the cap")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error
            assert time.monotonic() - started < 2
    finally:
        attack.stop()
        meter.kill()
