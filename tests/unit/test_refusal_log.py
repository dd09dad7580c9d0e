"""The audit trail's rate limit: refusals beyond the rate are not written one by one but counted,
and the count is reported with the next line written."""

from __future__ import annotations

import json
import logging

import grpc

from services.common.audit import RefusalLog
from services.common.logs import JsonFormatter

AUDIT_LOGGER = "energy_ingest.audit"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refusals_beyond_the_rate_are_counted_and_reported_with_the_next_line(caplog):
    clock = FakeClock()
    refusals = RefusalLog(per_second=2.0, burst=3, clock=clock)
    caplog.set_level(logging.WARNING, logger=AUDIT_LOGGER)

    def refuse() -> bool:
        return refusals.refused(
            grpc.StatusCode.UNAUTHENTICATED,
            "unknown bearer token",
            method="/energy.meter.v1.MeterService/IngestReading",
            peer="ipv4:127.0.0.1:5555",
            principal=None,
        )

    # A burst of 3 is written, the next 7 are not.
    assert [refuse() for _ in range(10)] == [True] * 3 + [False] * 7
    # Half a second later one token has come back (2 a second): one line, carrying the 7.
    clock.now += 0.5
    assert [refuse(), refuse()] == [True, False]
    lines = [record for record in caplog.records if record.name == AUDIT_LOGGER]
    assert len(lines) == 4
    assert [line.suppressed_since_last for line in lines] == [0, 0, 0, 7]
    entry = json.loads(JsonFormatter("meter").format(lines[-1]))
    assert entry["message"] == "call refused"
    assert {key: entry[key] for key in ("code", "reason", "method", "peer", "principal")} == {
        "code": "UNAUTHENTICATED",
        "reason": "unknown bearer token",
        "method": "/energy.meter.v1.MeterService/IngestReading",
        "peer": "ipv4:127.0.0.1:5555",
        "principal": None,
    }
