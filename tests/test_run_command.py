"""`energy-ingest run`: embedded PostgreSQL (or DATABASE_URL), migrations, three children,
a banner with the addresses, and a clean stop of everything on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.common.contracts import FULL_NAMES
from services.launcher import health_status

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SERVING = 1


def start_run(env: dict[str, str], data_dir: Path, stderr: Path) -> subprocess.Popen[str]:
    """`energy-ingest run` in a session of its own, so a test can Ctrl-C its whole process
    group as a terminal would; its logs go to `stderr`."""
    with stderr.open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "run", "--data-dir", str(data_dir)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )


def run_to_exit(env: dict[str, str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    """A `run` expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "run", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def run_until_banner(env: dict[str, str], data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    stderr = data_dir.parent / "run-stderr.log"
    process = start_run(env, data_dir, stderr)
    assert process.stdout is not None
    banner = ""
    for line in process.stdout:
        banner += line
        if "Ctrl-C stops everything." in line:
            return process, banner
    code = process.wait()
    tail = "".join(stderr.read_text().splitlines(keepends=True)[-30:])
    raise AssertionError(f"run exited ({code}) before its banner:\n{banner}\n{tail}")


def ports_env() -> tuple[dict[str, str], dict[str, int]]:
    """Free ports for the three gRPC services (returned) and the OCPP gateway (in the env)."""
    ports = {service: free_port() for service in FULL_NAMES}
    env = {f"{s.upper()}_LISTEN_ADDR": f"127.0.0.1:{port}" for s, port in ports.items()}
    env["OCPP_LISTEN_ADDR"] = f"127.0.0.1:{free_port()}"
    return env, ports


def check_running_then_interrupt(process: subprocess.Popen[str], ports: dict[str, int]) -> str:
    """The banner came, so every service answers SERVING right now (no waiting); then Ctrl-C
    reaches the whole process group, as in a terminal."""
    for service, port in ports.items():
        assert health_status(f"127.0.0.1:{port}", FULL_NAMES[service]) == SERVING
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(60) == 0
    assert process.stdout is not None
    return process.stdout.read()


def drains_logged(stderr: Path) -> list[str]:
    return [
        json.loads(line)["service"]
        for line in stderr.read_text().splitlines()
        if '"signal received, draining"' in line
    ]


def test_run_with_embedded_postgres(pg_dir):
    listen, ports = ports_env()
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL")} | listen
    process, banner = run_until_banner(env, pg_dir / "var")
    try:
        assert "starting embedded PostgreSQL" in banner
        for service, port in ports.items():
            assert f"{service}" in banner and f"127.0.0.1:{port}" in banner
        assert f"ocpp      ws://{listen['OCPP_LISTEN_ADDR']}/<chargePointId>" in banner
        assert "grpcurl -plaintext" in banner
        # A second run on the same embedded database (other ports) is refused, and leaves the
        # first one serving.
        other_ports, _ = ports_env()
        second = run_to_exit(env | other_ports, pg_dir / "var")
        assert second.returncode == 2
        assert second.stdout == ""
        assert second.stderr.splitlines() == [
            f"energy-ingest run: another `energy-ingest run` (pid {process.pid}) is using "
            f"{(pg_dir / 'var').resolve()}; stop it first"
        ]
        tail = check_running_then_interrupt(process, ports)
        assert "stopped" in tail
    finally:
        if process.poll() is None:
            process.kill()
    assert sorted(drains_logged(pg_dir / "run-stderr.log")) == sorted(FULL_NAMES)
    data = pg_dir / "var" / "postgres"
    assert (data / "PG_VERSION").exists(), "the database is kept under the data dir"
    assert not (data / "postmaster.pid").exists(), "the embedded PostgreSQL was stopped"


def test_run_uses_database_url_when_set(tmp_path, database_url):
    listen, ports = ports_env()
    env = dict(os.environ) | listen | {"DATABASE_URL": database_url}
    process, banner = run_until_banner(env, tmp_path / "var")
    try:
        assert "embedded" not in banner
        # The same command again, as a second `make run` would: refused before it starts
        # anything, in one line naming the address and the variable that moves it.
        second = run_to_exit(env, tmp_path / "var2")
        assert second.returncode == 2
        assert second.stdout == ""
        assert second.stderr.splitlines() == [
            f"energy-ingest run: cannot listen on 127.0.0.1:{ports['meter']}: address already in "
            "use (is another server running there?); set METER_LISTEN_ADDR to use another address"
        ]
        check_running_then_interrupt(process, ports)
    finally:
        if process.poll() is None:
            process.kill()
    assert not (tmp_path / "var").exists()
    assert sorted(drains_logged(tmp_path / "run-stderr.log")) == sorted(FULL_NAMES)


def test_run_refuses_a_busy_port_in_one_line_and_starts_nothing(tmp_path, database_url):
    listen, ports = ports_env()
    env = dict(os.environ) | listen | {"DATABASE_URL": database_url}
    with socket.socket() as held:
        held.bind(("127.0.0.1", ports["vehicle"]))
        held.listen()
        result = run_to_exit(env, tmp_path / "var")
        # Nothing else took the other two ports: no service was started.
        for service in ("meter", "analytics"):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", ports[service]))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"energy-ingest run: cannot listen on 127.0.0.1:{ports['vehicle']}: address already in use "
        "(is another server running there?); set VEHICLE_LISTEN_ADDR to use another address"
    ]


def child_pids(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("moment", ["migrating", "children importing"])
def test_ctrl_c_during_start_up_stops_everything_without_a_traceback(
    tmp_path, database_url, moment
):
    """Ctrl-C while the runner migrates, or while its children are still importing (no handler
    of theirs yet): everything stops, no KeyboardInterrupt traceback from the runner or a
    child, and no port stays taken. (Once the banner is out, the tests above Ctrl-C it.)"""
    listen, ports = ports_env()
    env = dict(os.environ) | listen | {"DATABASE_URL": database_url}
    stderr = tmp_path / "run-stderr.log"
    process = start_run(env, tmp_path / "var", stderr)
    assert process.stdout is not None
    try:
        first = process.stdout.readline()
        assert first == "migrating and starting meter, vehicle, analytics and the OCPP gateway\n"
        if moment == "children importing":
            wait_for(lambda: len(child_pids(process.pid)) == 4, "the four children")
        os.killpg(process.pid, signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, stdout
    assert "energy-ingest is running" not in stdout
    assert "Traceback" not in stdout + stderr.read_text()
    for port in ports.values():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
