"""The database health monitor never dies: whatever a ping or a report raises, it goes on."""

from __future__ import annotations

import time

from services.common.component import DatabaseMonitor


class _Flaky:
    """An engine whose connect() raises what it is given, then delegates."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures

    def connect(self):
        if self.failures:
            raise self.failures.pop(0)
        return _Answering()


class _Answering:
    def __enter__(self) -> _Answering:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def execute(self, _statement: object) -> None:
        return None


class _Reporter:
    """Records what it is told; its first set_serving fails (a bug in reporting)."""

    def __init__(self) -> None:
        self.reports: list[bool] = []
        self.failed = False

    def set_serving(self, serving: bool) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("reporting failed")
        self.reports.append(serving)


def test_the_health_monitor_survives_unexpected_exceptions():
    """Anything a ping raises is NOT_SERVING for that tick, logged, and the monitor goes on;
    a report that fails is made again on the next tick."""
    engine = _Flaky([RuntimeError("a bug"), TimeoutError("pool")])
    reporter = _Reporter()
    monitor = DatabaseMonitor(engine, reporter, interval=0.05)  # type: ignore[arg-type]
    monitor.start()
    try:
        deadline = time.monotonic() + 5
        while reporter.reports[-1:] != [True] and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        monitor.stop()
    assert reporter.reports == [False, True]
