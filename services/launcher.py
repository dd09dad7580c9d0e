"""The services as child processes (`python -m services.cli serve NAME`), for `energy-ingest
run`, the benchmark, tools and tests: start one, learn its port, wait until it answers SERVING,
stop it.

A child started on a free port names it in its JSON "listening" log line on stderr; from then
on its stderr is drained by a thread for as long as it runs (a full pipe would block the child)
and every line is kept in `ServiceProcess.log_lines`. `spawn` is the other way: the child writes
its logs straight to ours and listens on an address the caller already knows."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services import client
from services.common.contracts import FULL_NAMES

SERVING = health_pb2.HealthCheckResponse.SERVING
# Between two rounds of health checks, and the deadline of one check: a child that is still
# importing refuses the connection at once, one that is up answers in milliseconds.
POLL_SECONDS = 0.1
CHECK_TIMEOUT_SECONDS = 1.0


class ExitedBeforeServing(RuntimeError):
    """A child exited while it was awaited; `code` is its exit code (negative: the signal)."""

    def __init__(self, child: ServiceProcess, code: int) -> None:
        self.service = child.service
        self.code = code
        logs = f", its last lines:\n{''.join(child.log_lines[-30:])}" if child.log_lines else ""
        super().__init__(f"{child.service} exited with code {code} before serving{logs}")


class NotServingInTime(TimeoutError):
    """`services` (short names, sorted) did not answer SERVING within `timeout` seconds."""

    def __init__(self, services: Sequence[str], timeout: float) -> None:
        self.services = sorted(services)
        self.timeout = timeout
        super().__init__(f"not SERVING after {timeout:g} s: {', '.join(self.services)}")


@dataclass
class ServiceProcess:
    """One `serve` child. `service` is its short name ("meter"), `target` where to dial it
    ("127.0.0.1:PORT"); `log_lines` holds, in order, every stderr line it wrote so far (each
    ending in a newline) when its logs are captured, and stays empty when they go to ours."""

    service: str
    process: subprocess.Popen[str]
    target: str
    log_lines: list[str] = field(default_factory=list)
    log_reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        return int(self.target.rsplit(":", 1)[1])

    @property
    def full_name(self) -> str:
        """The proto service name its health is checked under, e.g. energy.meter.v1.MeterService."""
        return FULL_NAMES[self.service]

    def exit_code(self) -> int | None:
        """None while it runs; then its exit code (negative: the signal that ended it)."""
        return self.process.poll()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM: the service drains and exits; SIGKILL when it has not within `timeout`
        seconds. Returns its exit code once it has exited and its last log line is read."""
        return terminate_all([self], timeout)[0]

    def kill(self) -> None:
        """SIGKILL, no draining; returns once it has exited and its last log line is read."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._finish_reading(10)

    def _reap(self, timeout: float) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._finish_reading(timeout)
        return code

    def _finish_reading(self, timeout: float) -> None:
        # The exit comes before the reader reaches the end of the pipe.
        if self.log_reader is not None:
            self.log_reader.join(timeout)


def serve_command(service: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", "serve", service]


def spawn(service: str, env: Mapping[str, str], target: str) -> ServiceProcess:
    """`serve SERVICE` with exactly `env` as its environment, writing its logs to this
    process's stderr. `target` is where it will listen, known from the settings (nothing is
    read from the child); the caller waits for it with `wait_serving`."""
    process = subprocess.Popen(serve_command(service), env=dict(env), text=True)
    return ServiceProcess(service, process, target)


def start_service(
    service: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> ServiceProcess:
    """`serve SERVICE` on a free port of 127.0.0.1, in this process's environment plus `env`
    (which wins: METER_LISTEN_ADDR=127.0.0.1:PORT restarts a service on a known port). Returns
    once it has logged "listening", with the port from that line, without waiting for its
    health (see `wait_serving`, `start_serving`).

    Raises RuntimeError, with its logs, when it exits before listening, and TimeoutError, after
    killing it, when it has not listened within `timeout` seconds."""
    full_env = {
        **os.environ,
        "LOG_LEVEL": "INFO",  # the "listening" line is an INFO line
        f"{service.upper()}_LISTEN_ADDR": "127.0.0.1:0",
        **(env or {}),
    }
    process = subprocess.Popen(
        serve_command(service), env=full_env, stderr=subprocess.PIPE, text=True
    )
    log_lines: list[str] = []
    ports: queue.Queue[int | None] = queue.Queue()  # its port, or None: it closed its stderr

    def drain() -> None:
        assert process.stderr is not None
        port: int | None = None
        for line in process.stderr:
            log_lines.append(line)
            if port is None:
                port = _listening_port(line)
                if port is not None:
                    ports.put(port)
        if port is None:
            ports.put(None)

    reader = threading.Thread(target=drain, name=f"{service}-stderr", daemon=True)
    reader.start()
    try:
        port = ports.get(timeout=timeout)
    except queue.Empty:
        process.kill()
        process.wait()
        reader.join(10)
        raise TimeoutError(
            f"{service} did not listen within {timeout:g} s:\n{''.join(log_lines)}"
        ) from None
    if port is None:
        code = process.wait()
        reader.join(10)
        raise RuntimeError(f"{service} exited ({code}):\n{''.join(log_lines)}")
    return ServiceProcess(service, process, f"127.0.0.1:{port}", log_lines, reader)


def _listening_port(line: str) -> int | None:
    """The port of a "listening" JSON log line; None for any other line (plain lines come
    before a service sets up its logging)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if isinstance(entry, dict) and entry.get("message") == "listening":
        return int(entry["port"])
    return None


def start_serving(
    service: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> ServiceProcess:
    """`start_service`, then `wait_serving`, both within `timeout` seconds in all; the child is
    killed when it does not get there (their errors are raised)."""
    deadline = time.monotonic() + timeout
    child = start_service(service, env, timeout)
    try:
        wait_serving([child], max(0.0, deadline - time.monotonic()))
    except BaseException:
        child.kill()
        raise
    return child


def check_health(channel: grpc.Channel, service_name: str, timeout: float = 5) -> int:
    """The status the child reports for `service_name` ("" for the whole server): a
    HealthCheckResponse.ServingStatus, 1 SERVING, 2 NOT_SERVING. Raises grpc.RpcError when it
    does not answer (UNAVAILABLE while it starts, NOT_FOUND for a name it does not serve)."""
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service=service_name)
    return int(stub.Check(request, timeout=timeout).status)


def health_status(
    target: str,
    service_name: str,
    timeout: float = 5,
    credentials: grpc.ChannelCredentials | None = None,
) -> int:
    """`check_health` over a channel of its own to `target` ("host:port")."""
    with client.channel(target, credentials) as channel:
        return check_health(channel, service_name, timeout)


def wait_for_health(target: str, service_name: str, want: int, timeout: float = 20) -> None:
    """Polls `target` (plaintext) until it reports status `want` for `service_name`. Raises
    AssertionError, naming the last status or error seen, after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = health_status(target, service_name)
            if last == want:
                return
        except grpc.RpcError as error:
            last = error.code()
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"{service_name} at {target}: health {last}, wanted {want}")


def wait_serving(
    children: Sequence[ServiceProcess],
    timeout: float,
    credentials: grpc.ChannelCredentials | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Returns once every child answers SERVING under its full service name, or as soon as
    `stop` is set. Raises ExitedBeforeServing when a child exits meanwhile, NotServingInTime
    (naming those still waiting) after `timeout` seconds. `credentials` for TLS servers."""
    stop = stop if stop is not None else threading.Event()
    channels = [client.channel(child.target, credentials) for child in children]
    waiting = list(range(len(children)))
    deadline = time.monotonic() + timeout
    try:
        while waiting and not stop.is_set():
            exited = first_exited(children)
            if exited is not None:
                child, code = exited
                child._finish_reading(5)  # its last lines tell why
                raise ExitedBeforeServing(child, code)
            waiting = [i for i in waiting if not _serving(channels[i], children[i].full_name)]
            if waiting and time.monotonic() > deadline:
                raise NotServingInTime([children[i].service for i in waiting], timeout)
            stop.wait(POLL_SECONDS)
    finally:
        for channel in channels:
            channel.close()


def wait_listening(
    children: Sequence[ServiceProcess], timeout: float, stop: threading.Event | None = None
) -> None:
    """Like wait_serving for children that are not gRPC servers (the OCPP gateway): returns
    once each accepts TCP connections on its target."""
    stop = stop if stop is not None else threading.Event()
    waiting = list(children)
    deadline = time.monotonic() + timeout
    while waiting and not stop.is_set():
        exited = first_exited(children)
        if exited is not None:
            raise ExitedBeforeServing(*exited)
        waiting = [child for child in waiting if not _accepts(child.target)]
        if waiting and time.monotonic() > deadline:
            raise NotServingInTime([child.service for child in waiting], timeout)
        stop.wait(POLL_SECONDS)


def _accepts(target: str) -> bool:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def _serving(channel: grpc.Channel, service_name: str) -> bool:
    try:
        return check_health(channel, service_name, CHECK_TIMEOUT_SECONDS) == SERVING
    except grpc.RpcError:
        return False


def first_exited(children: Iterable[ServiceProcess]) -> tuple[ServiceProcess, int] | None:
    """The first child (in the given order) that has exited, with its exit code; None if all
    run."""
    for child in children:
        code = child.exit_code()
        if code is not None:
            return child, code
    return None


def terminate_all(children: Sequence[ServiceProcess], timeout: float) -> list[int]:
    """SIGTERM to every child still running at once (they drain in parallel), then waits for
    each in turn, up to `timeout` seconds each, killing one that is still running. Returns
    their exit codes, in order."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    return [child._reap(timeout) for child in children]


def peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM), in MiB; 0.0 when the kernel
    does not report one. Raises FileNotFoundError once the process is reaped."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
