"""A failed commit releases what a stream held at once: with the cyclic GC off, reference counting
alone frees its rows and the writer's batch (no cycle through the error's traceback)."""

from __future__ import annotations

import gc
import logging
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2

from services.common.group_commit import GroupCommitWriters
from services.common.ingest import Ingestor, batches_of
from services.common.timeconv import micros_to_timestamp as ts
from services.meter import rules
from services.meter.repository import READINGS_TABLE

MICROS = 1_000_000
MINUTE = 60 * MICROS
D = int(datetime(2026, 2, 10, tzinfo=UTC).timestamp()) * MICROS
DEVICE = "CHG-001"
MIB = 1024 * 1024


def reading(meter_id: str, minute: int) -> meter_pb2.MeterReading:
    return meter_pb2.MeterReading(
        meter_id=meter_id, kwh_consumed_ac=1.0, voltage=230.0, timestamp=ts(D + minute * MINUTE)
    )


def test_failed_commit_releases_the_stream_at_once() -> None:
    """The writers cannot connect, so the commit fails. With the cyclic GC off, what the stream
    held (its rows, the writer's batch) must be freed by reference counting alone: no cycle
    through the error's traceback (ticket -> error -> traceback -> frame -> ticket)."""

    def refuse() -> psycopg.Connection:
        raise RuntimeError("no database here")

    writers = GroupCommitWriters(
        READINGS_TABLE,
        refuse,
        count=2,
        batch_size=50_000,
        flush_seconds=0.005,
        queue_readings=200_000,
        enqueue_timeout=10,
        name="leak-test",
    )
    ingestor = Ingestor(
        writers,
        rules.RULES,
        rules.validate_batch,
        clock_skew_seconds=300,
        max_rejections_listed=100,
        max_device_stream_bytes=1 << 30,
    )
    writers.start()

    def requests() -> Iterator[meter_service_pb2.IngestReadingsRequest]:
        for k in range(20):
            yield meter_service_pb2.IngestReadingsRequest(
                readings=[reading(DEVICE, k * 2000 + i) for i in range(2000)]
            )

    def attempt() -> None:
        with pytest.raises(RuntimeError, match="no database here"):
            ingestor.ingest_stream(batches_of(requests(), DEVICE), DEVICE)

    # pytest's log capture keeps each record, with the traceback of "batch failed": keep it
    # out, as a server's JSON handler formats a record and lets it go.
    writer_log = logging.getLogger("services.common.group_commit")
    writer_log.propagate = False
    writer_log.addHandler(logging.NullHandler())
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        attempt()  # warms caches (ids, logging) so the baseline holds them
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        attempt()  # 40,000 rows: several MiB of tuples, floats and ints
        deadline = time.monotonic() + 5
        while True:
            held = tracemalloc.get_traced_memory()[0] - baseline
            if held < MIB or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # the writer thread lets go of its batch just after failing it
        assert held < MIB, f"{held / MIB:.1f} MiB still held after the failed commit"
    finally:
        tracemalloc.stop()
        gc.enable()
        writer_log.propagate = True
        writers.stop(5)
