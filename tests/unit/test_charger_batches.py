"""ListChargerEfficiencies' downstream reads in batches, against a fake downstream (a plain
object with the calls it makes): a batch whose read runs out of time is read again in halves,
and the caller's own deadline is never outlived."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from services.analytics.chargers import (
    CHARGER_DAYS_PER_READ,
    ChargerEfficiencyService,
    OutlierRule,
    chargers_per_read,
)
from services.analytics.correlation import Consumption
from services.analytics.downstream import Downstream
from services.common.errors import DeadlineExceeded, Unavailable

DAY = 24 * 3600 * 1_000_000
NOW = 20_000 * DAY


class SlowForBigBatches:
    """Answers no session and no AC; a sessions read of more than `most` chargers runs out of
    time, as a loaded VehicleService would."""

    def __init__(self, chargers: list[str], most: int) -> None:
        self.chargers = chargers
        self.most = most
        self.reads: list[int] = []
        self.remaining = 60.0  # the caller's time left, in seconds
        self.timeouts_use_up_the_caller = False

    def reported_chargers(self, timeout: float) -> list[str]:
        return self.chargers

    def charger_sessions(self, charger_ids, ranges, excluded, window, timeout) -> list:
        self.reads.append(len(charger_ids))
        if len(charger_ids) > self.most:
            if self.timeouts_use_up_the_caller:
                self.remaining = -1.0
            raise DeadlineExceeded("VehicleService did not answer in time")
        return []

    def attribute(self, sessions, others, start_us, end_us, timeout) -> list[Consumption]:
        return [Consumption(0.0, 0, 0, 0, 0) for _ in sessions]


def service(downstream: SlowForBigBatches) -> ChargerEfficiencyService:
    return ChargerEfficiencyService(
        cast(Downstream, downstream),
        session_gap_us=300_000_000,
        reach_us=900_000_000,
        downstream_timeout=5.0,
        rule=OutlierRule(),
    )


def test_batches_are_charger_days():
    assert chargers_per_read(DAY) == CHARGER_DAYS_PER_READ
    assert chargers_per_read(2 * DAY) == CHARGER_DAYS_PER_READ // 2
    assert chargers_per_read(3600 * 1_000_000) == 24 * CHARGER_DAYS_PER_READ
    assert chargers_per_read(1000 * DAY) == 1


def test_a_batch_that_runs_out_of_time_is_read_in_halves():
    chargers = [f"CHG-{n}" for n in range(5)]
    fake = SlowForBigBatches(chargers, most=2)
    page = service(fake).efficiencies(
        [], NOW, DAY, page_size=0, page_token="", time_remaining=lambda: 60.0
    )
    assert [row.charger_id for row in page.rows] == chargers
    # Per window: 5 refused, then 2 and 3; the 3 refused, then 1 and 2.
    assert fake.reads == [5, 2, 3, 1, 2] * 2


def test_no_half_is_read_once_the_callers_deadline_has_passed():
    fake = SlowForBigBatches([f"CHG-{n}" for n in range(5)], most=2)
    fake.timeouts_use_up_the_caller = True
    with pytest.raises(DeadlineExceeded):
        service(fake).efficiencies(
            [], NOW, DAY, page_size=0, page_token="", time_remaining=lambda: fake.remaining
        )
    assert fake.reads == [5]


class CancelledCall:
    """What the servicer sees of a call its client cancelled (grpc.ServicerContext's calls)."""

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 60.0


def test_a_cancelled_call_reads_nothing_more():
    from services.analytics.servicer import _time_remaining

    fake = SlowForBigBatches([f"CHG-{n}" for n in range(5)], most=10)
    with pytest.raises(DeadlineExceeded):
        service(fake).efficiencies(
            [],
            NOW,
            DAY,
            page_size=0,
            page_token="",
            time_remaining=_time_remaining(cast(Any, CancelledCall())),
        )
    assert fake.reads == []


class MeterStillReading(SlowForBigBatches):
    """VehicleService is down; MeterService's whole-window read, begun beside the sessions
    read, answers only once the test lets it."""

    def __init__(self, chargers: list[str]) -> None:
        super().__init__(chargers, most=10)
        self.meter_may_answer = threading.Event()
        self.meter_read_over = False

    def charger_sessions(self, charger_ids, ranges, excluded, window, timeout) -> list:
        raise Unavailable("VehicleService unavailable: connection refused")

    def attribute(self, sessions, others, start_us, end_us, timeout) -> list[Consumption]:
        self.meter_may_answer.wait(timeout=5)
        self.meter_read_over = True
        return super().attribute(sessions, others, start_us, end_us, timeout)


def test_a_failed_sessions_read_is_reported_without_waiting_for_the_meter_read():
    fake = MeterStillReading([f"CHG-{n}" for n in range(5)])
    try:
        with pytest.raises(Unavailable):
            service(fake).efficiencies(
                [], NOW, DAY, page_size=0, page_token="", time_remaining=lambda: 60.0
            )
        # Raised while the meter read still waits: the listing did not wait for it.
        assert not fake.meter_read_over
    finally:
        fake.meter_may_answer.set()
