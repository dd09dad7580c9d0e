"""A device's stream is held whole until its end (nothing is stored if one reading names another
id), so what it holds is bounded (README "Reliability", "Security"): compact rows rather than
request messages (unknown fields are never kept), at most MAX_DEVICE_STREAM_BYTES received, at
most MAX_STREAMS_PER_DEVICE open at once. (That a failed commit releases what a stream held at
once needs no database: tests/unit/test_failed_commit_memory.py.)"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc

from services.common.timeconv import micros_to_timestamp as ts
from services.launcher import start_service, wait_for_health
from tests.conftest import InProcessServer, start_in_process

MICROS = 1_000_000
MINUTE = 60 * MICROS
D = int(datetime(2026, 2, 10, tzinfo=UTC).timestamp()) * MICROS
DEVICE = "CHG-001"
TOKEN = "tok-charger"
OTHER_TOKEN = "tok-other"
METHOD = "/energy.meter.v1.MeterService/IngestReadings"
METER = "energy.meter.v1.MeterService"
MIB = 1024 * 1024
PAD = 4 * MIB


def reading(meter_id: str, minute: int) -> meter_pb2.MeterReading:
    return meter_pb2.MeterReading(
        meter_id=meter_id, kwh_consumed_ac=1.0, voltage=230.0, timestamp=ts(D + minute * MINUTE)
    )


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def padded(meter_id: str, minute: int, pad: int = PAD) -> bytes:
    """One reading in an IngestReadingsRequest followed by `pad` bytes of field 9999, which the
    schema does not know: protobuf keeps such fields with the message it parsed."""
    request = meter_service_pb2.IngestReadingsRequest(readings=[reading(meter_id, minute)])
    unknown = varint(9999 << 3 | 2) + varint(pad) + b"\0" * pad
    return request.SerializeToString() + unknown


def write_tokens(path: Path) -> Path:
    entries = {TOKEN: DEVICE, OTHER_TOKEN: "CHG-002"}
    path.write_text(
        json.dumps(
            {
                hashlib.sha256(token.encode()).hexdigest(): {"principal": name, "role": "device"}
                for token, name in entries.items()
            }
        )
    )
    return path


def bearer(token: str = TOKEN) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def raw_stream(channel: grpc.Channel) -> grpc.StreamUnaryMultiCallable:
    """IngestReadings taking serialized requests as they are (bytes, no serializer)."""
    return channel.stream_unary(
        METHOD,
        request_serializer=None,
        response_deserializer=meter_service_pb2.IngestReadingsResponse.FromString,
    )


def stored(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM meter.meter_readings").fetchone()
        assert row is not None
        return int(row[0])


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# --- memory of a held stream, in a server process of its own -------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_padded_device_stream_keeps_rows_not_messages(
    database_url: str, tmp_path: Path, compression: grpc.Compression
) -> None:
    """60 readings each padded with 4 MiB of an unknown field (240 MiB decoded; with gzip about
    a quarter of a MiB on the wire), byte bound raised out of the way: the server's peak RSS
    grows by less than 100 MiB, the 60 readings are stored."""
    count = 60
    server = start_service(
        "meter",
        {
            "DATABASE_URL": database_url,
            "AUTH_TOKENS_FILE": str(write_tokens(tmp_path / "tokens.json")),
            "MAX_DEVICE_STREAM_BYTES": str(2 * count * PAD),
        },
    )
    try:
        wait_for_health(server.target, METER, 1)
        with grpc.insecure_channel(server.target) as channel:
            call = raw_stream(channel)
            warm = call(
                iter([padded(DEVICE, -k - 1) for k in range(3)]),
                metadata=bearer(),
                compression=compression,
                timeout=60,
            )
            assert warm.accepted == 3
            baseline = peak_rss_mib(server.process.pid)
            answer = call(
                (padded(DEVICE, minute) for minute in range(count)),
                metadata=bearer(),
                compression=compression,
                timeout=120,
            )
            grown = peak_rss_mib(server.process.pid) - baseline
            print(f"peak RSS {baseline:.0f} MiB -> +{grown:.1f} MiB ({compression.name})")
        assert (answer.accepted, answer.rejected) == (count, 0)
        assert grown < 100, f"peak RSS grew {grown:.0f} MiB for a {count * PAD // MIB} MiB stream"
    finally:
        server.kill()
    assert stored(database_url) == count + 3


# --- bounds, in process ---------------------------------------------------------------------


@pytest.fixture
def device_meter(database_url: str, tmp_path: Path) -> Iterator[InProcessServer]:
    server = start_in_process(
        "meter",
        database_url,
        auth_tokens_file=str(write_tokens(tmp_path / "tokens.json")),
        max_device_stream_bytes=10 * MIB,
    )
    yield server
    server.running.shutdown(5)


@pytest.mark.e2e
@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_device_stream_beyond_its_byte_bound_is_resource_exhausted(
    device_meter: InProcessServer, compression: grpc.Compression
) -> None:
    with device_meter.channel() as channel:
        call = raw_stream(channel)
        with pytest.raises(grpc.RpcError) as caught:
            call(
                (padded(DEVICE, minute) for minute in range(3)),  # 12 MiB > 10 MiB
                metadata=bearer(),
                compression=compression,
                timeout=60,
            )
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "MAX_DEVICE_STREAM_BYTES" in (caught.value.details() or "")
        assert str(10 * MIB) in (caught.value.details() or "")
        assert stored(device_meter.database_url) == 0
        # Under the bound the same stream goes through.
        answer = call(
            (padded(DEVICE, minute) for minute in range(2)),
            metadata=bearer(),
            compression=compression,
            timeout=60,
        )
        assert answer.accepted == 2
    assert stored(device_meter.database_url) == 2


@pytest.mark.e2e
def test_device_stream_rejection_indexes_count_across_the_whole_stream(
    device_meter: InProcessServer,
) -> None:
    bad = meter_pb2.MeterReading(
        meter_id=DEVICE, kwh_consumed_ac=-1.0, voltage=230.0, timestamp=ts(D)
    )
    requests = [
        meter_service_pb2.IngestReadingsRequest(readings=[reading(DEVICE, 1), reading(DEVICE, 2)]),
        meter_service_pb2.IngestReadingsRequest(readings=[reading(DEVICE, 3), bad]),
        meter_service_pb2.IngestReadingsRequest(readings=[bad, reading(DEVICE, 4)]),
    ]
    with device_meter.channel() as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        answer = stub.IngestReadings(iter(requests), metadata=bearer(), timeout=30)
    assert (answer.accepted, answer.rejected) == (4, 2)
    assert [(r.index, r.field) for r in answer.rejections] == [
        (3, "kwh_consumed_ac"),
        (4, "kwh_consumed_ac"),
    ]
    assert stored(device_meter.database_url) == 4


@pytest.mark.e2e
def test_concurrent_streams_of_one_device_are_capped(device_meter: InProcessServer) -> None:
    """MAX_STREAMS_PER_DEVICE (2): a third open stream of the same device is refused at once;
    another device is not affected; once the two end, the device streams again."""
    release = threading.Event()

    def held(minute: int) -> Iterator[meter_service_pb2.IngestReadingsRequest]:
        yield meter_service_pb2.IngestReadingsRequest(readings=[reading(DEVICE, minute)])
        release.wait(30)

    with device_meter.channel() as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        open_streams = [
            stub.IngestReadings.future(held(minute), metadata=bearer(), timeout=60)
            for minute in (1, 2)
        ]
        try:
            time.sleep(1.0)  # both are now inside the server
            with pytest.raises(grpc.RpcError) as caught:
                stub.IngestReadings(
                    iter([meter_service_pb2.IngestReadingsRequest(readings=[reading(DEVICE, 3)])]),
                    metadata=bearer(),
                    timeout=30,
                )
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "MAX_STREAMS_PER_DEVICE" in (caught.value.details() or "")
            other = stub.IngestReadings(
                iter([meter_service_pb2.IngestReadingsRequest(readings=[reading("CHG-002", 1)])]),
                metadata=bearer(OTHER_TOKEN),
                timeout=30,
            )
            assert other.accepted == 1
        finally:
            release.set()
        assert [future.result().accepted for future in open_streams] == [1, 1]
        again = stub.IngestReadings(
            iter([meter_service_pb2.IngestReadingsRequest(readings=[reading(DEVICE, 3)])]),
            metadata=bearer(),
            timeout=30,
        )
        assert again.accepted == 1
    assert stored(device_meter.database_url) == 4
