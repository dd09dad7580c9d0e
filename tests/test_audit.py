"""The audit trail: one JSON line per refused call, with peer, principal, method and reason (its
rate limit: tests/unit/test_refusal_log.py); and a serving process writes nothing but JSON
lines."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc

from services.launcher import start_service, wait_for_health
from tests.conftest import start_in_process

AUDIT_LOGGER = "energy_ingest.audit"


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


def json_lines(text: str) -> list[dict]:
    """Every line of `text` parsed; fails on the first line that is not a JSON object."""
    parsed = []
    for line in text.splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return parsed


def test_once_captured_every_line_written_to_stderr_is_json():
    """Raw writes to file descriptor 2 (what gRPC's C core does), print() to sys.stderr and a
    thread's uncaught exception: all come out as JSON objects, in one line each."""
    script = textwrap.dedent(
        """
        import os, sys, threading, logging
        from services.common.logs import configure_logging, capture_stderr_as_json
        configure_logging("meter", "INFO")
        capture_stderr_as_json()
        os.write(2, b"E1130 18:22:22.022957    6353 add_port.cc:83] Failed to add port\\n")
        print("a plain print", file=sys.stderr)
        logging.getLogger("x").info("a log line")
        def boom():
            raise ValueError("the thread's own error")
        thread = threading.Thread(target=boom, name="worker-1")
        thread.start()
        thread.join()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 0, result.stderr
    entries = json_lines(result.stderr)
    # Relayed lines may come after direct ones: the order between them is not kept.
    assert sorted((e["logger"], e["level"], e["message"]) for e in entries) == sorted(
        [
            (
                "stderr",
                "ERROR",
                "E1130 18:22:22.022957    6353 add_port.cc:83] Failed to add port",
            ),
            ("stderr", "ERROR", "a plain print"),
            ("x", "INFO", "a log line"),
            ("energy_ingest.threads", "ERROR", "thread died of an uncaught exception"),
        ]
    )
    assert all(entry["service"] == "meter" for entry in entries)
    (died,) = [e for e in entries if e["logger"] == "energy_ingest.threads"]
    assert died["thread_name"] == "worker-1"
    assert "ValueError: the thread's own error" in died["exception"]


@pytest.mark.e2e
def test_a_serving_process_writes_only_json_even_from_grpc_core(database_url):
    # gRPC's C core logs plain text lines when asked to be verbose.
    meter = start_service(
        "meter",
        {"DATABASE_URL": database_url, "GRPC_VERBOSITY": "debug", "GRPC_TRACE": "http"},
    )
    try:
        wait_for_health(meter.target, "energy.meter.v1.MeterService", 1)
    finally:
        assert meter.terminate() == 0
    text = "".join(meter.log_lines)
    listening = text.index('"message": "listening"')
    served = text[text.rindex("\n", 0, listening) + 1 :]
    entries = json_lines(served)
    assert any(entry["logger"] == "stderr" for entry in entries), "gRPC core said nothing"
    assert entries[-1]["message"] == "stopped"
