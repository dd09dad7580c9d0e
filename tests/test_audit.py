"""The audit trail: one JSON line per refused call, with peer, principal, method and reason;
rate-limited, so a flood of refused calls cannot flood the log."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime

import grpc
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc

from services.common.audit import RefusalLog
from services.common.logs import JsonFormatter
from tests.conftest import start_in_process

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


@pytest.mark.e2e
def test_a_refused_call_logs_who_what_and_why(tmp_path, database_url, caplog):
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                hashlib.sha256(b"tok-operator").hexdigest(): {
                    "principal": "ops",
                    "role": "operator",
                }
            }
        )
    )
    server = start_in_process("meter", database_url, auth_tokens_file=str(tokens))
    caplog.set_level(logging.WARNING, logger=AUDIT_LOGGER)
    reading = meter_pb2.MeterReading(meter_id="CHG-001", kwh_consumed_ac=1.0, voltage=230.0)
    reading.timestamp.FromDatetime(datetime(2026, 2, 10, tzinfo=UTC))
    request = meter_service_pb2.IngestReadingRequest(reading=reading)
    try:
        with server.channel() as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            for metadata, code in (
                (None, grpc.StatusCode.UNAUTHENTICATED),
                ([("authorization", "Bearer tok-operator")], grpc.StatusCode.PERMISSION_DENIED),
            ):
                with pytest.raises(grpc.RpcError) as refused:
                    stub.IngestReading(request, metadata=metadata, timeout=10)
                assert refused.value.code() == code
    finally:
        server.running.shutdown(5)
    lines = [record for record in caplog.records if record.name == AUDIT_LOGGER]
    assert [(line.code, line.method, line.principal, line.reason) for line in lines] == [
        (
            "UNAUTHENTICATED",
            "/energy.meter.v1.MeterService/IngestReading",
            None,
            "credentials required: a client certificate or a bearer token",
        ),
        (
            "PERMISSION_DENIED",
            "/energy.meter.v1.MeterService/IngestReading",
            "ops",
            "operator ops may not ingest",
        ),
    ]
    assert all(line.peer.startswith("ipv") for line in lines)
