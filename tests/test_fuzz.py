"""Property-based input fuzzing against a real server: NaN, infinities, huge and negative numbers,
odd unicode ids, empty and missing fields, random bytes. Never a crash, never INTERNAL; every
invalid reading is rejected naming its field, every valid one is stored."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import grpc
import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import InProcessServer, start_in_process

pytestmark = pytest.mark.e2e

ALLOWED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
Y2000 = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-100, max_value=2500),
    st.sampled_from([0.0, -0.0, 1000.0, 1000.0000001, 2000.0, 100.0, 120.0, -60.0, 5e-324]),
)
ids = st.one_of(
    st.text(alphabet="".join(sorted(ALLOWED)), min_size=0, max_size=70),
    st.text(min_size=0, max_size=70),  # any unicode, spaces, NUL, emoji
    st.sampled_from(["CHG-1", "é", "a b", "x" * 64, "x" * 65, "\x00", "CHG:1.2_3-4"]),
)
# Seconds from before 2000 to far ahead; None is a missing timestamp.
seconds = st.one_of(
    st.none(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.integers(min_value=Y2000 - 10, max_value=int(time.time()) + 3600),
)


def id_ok(value: str) -> bool:
    return 1 <= len(value) <= 64 and set(value) <= ALLOWED


def in_range(value: float, low: float, high: float, *, low_open: bool = False) -> bool:
    if not math.isfinite(value):
        return False
    return (value > low if low_open else value >= low) and value <= high


def time_ok(ts: int | None, now: float) -> bool:
    return ts is not None and Y2000 <= ts <= now + 300


def first_bad_meter_field(r: meter_pb2.MeterReading, ts: int | None, now: float) -> str | None:
    checks = [
        ("meter_id", id_ok(r.meter_id)),
        ("kwh_consumed_ac", in_range(r.kwh_consumed_ac, 0, 1000)),
        ("voltage", in_range(r.voltage, 0, 2000, low_open=True)),
        ("timestamp", time_ok(ts, now)),
    ]
    return next((name for name, ok in checks if not ok), None)


def first_bad_vehicle_field(
    r: vehicle_pb2.VehicleReading, ts: int | None, now: float
) -> str | None:
    checks = [
        ("vehicle_id", id_ok(r.vehicle_id)),
        ("charger_id", id_ok(r.charger_id)),
        ("soc", in_range(r.soc, 0, 100)),
        ("kwh_delivered_dc", in_range(r.kwh_delivered_dc, 0, 1000)),
        ("battery_temp", in_range(r.battery_temp, -60, 120)),
        ("timestamp", time_ok(ts, now)),
    ]
    return next((name for name, ok in checks if not ok), None)


@pytest.fixture(scope="module")
def servers(tmp_path_factory, postgres_url):
    from services.common.databases import create_database, drop_database

    url = create_database(postgres_url, "ei_fuzz", migrate=True)
    started = {"meter": start_in_process("meter", url), "vehicle": start_in_process("vehicle", url)}
    yield started, url
    for server in started.values():
        server.running.shutdown(5)
    drop_database(postgres_url, url)


def count(url: str, table: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(st.lists(st.tuples(ids, numbers, numbers, seconds), min_size=1, max_size=30))
def test_meter_stream_fuzz(servers, batch):
    started, url = servers
    meter: InProcessServer = started["meter"]
    readings = []
    for meter_id, kwh, voltage, ts in batch:
        reading = meter_pb2.MeterReading(meter_id=meter_id, kwh_consumed_ac=kwh, voltage=voltage)
        if ts is not None:
            reading.timestamp.CopyFrom(Timestamp(seconds=ts))
        readings.append((reading, ts))
    now = time.time()
    expected = [first_bad_meter_field(r, ts, now) for r, ts in readings]
    before = count(url, "meter.meter_readings")
    with meter.channel() as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        response = stub.IngestReadings(
            iter([meter_service_pb2.IngestReadingsRequest(readings=[r for r, _ in readings])]),
            timeout=30,
        )
    valid = [r for (r, _), bad in zip(readings, expected, strict=True) if bad is None]
    assert response.rejected == len(readings) - len(valid)
    assert [(x.index, x.field) for x in response.rejections] == [
        (i, bad) for i, bad in enumerate(expected) if bad is not None
    ]
    # Examples share one database: a key an earlier example stored with other values (or an
    # earlier reading of this batch) is a conflict, counted apart and not stored.
    assert response.accepted + response.duplicates + response.conflicts == len(valid)
    assert len(response.conflicting_readings) == response.conflicts
    assert count(url, "meter.meter_readings") == before + response.accepted


@FUZZ
@given(st.tuples(ids, ids, numbers, numbers, numbers, seconds))
def test_vehicle_unary_fuzz(servers, fields):
    started, _ = servers
    vehicle_id, charger_id, soc, dc, temp, ts = fields
    reading = vehicle_pb2.VehicleReading(
        vehicle_id=vehicle_id,
        charger_id=charger_id,
        soc=soc,
        kwh_delivered_dc=dc,
        battery_temp=temp,
    )
    if ts is not None:
        reading.timestamp.CopyFrom(Timestamp(seconds=ts))
    bad = first_bad_vehicle_field(reading, ts, time.time())
    with started["vehicle"].channel() as channel:
        stub = vehicle_service_pb2_grpc.VehicleServiceStub(channel)
        try:
            stub.IngestReading(
                vehicle_service_pb2.IngestReadingRequest(reading=reading), timeout=30
            )
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
            assert bad is not None and f"reading.{bad}" in error.details()
            return
    assert bad is None, f"{bad} should have been refused"


@FUZZ
@given(st.binary(min_size=0, max_size=300))
def test_random_bytes_never_crash_or_internal(servers, payload):
    started, _ = servers
    with started["meter"].channel() as channel:
        for method in ("IngestReading", "IngestReadings", "GetChargerStatus"):
            path = f"/energy.meter.v1.MeterService/{method}"
            try:
                if method == "IngestReadings":
                    channel.stream_unary(path)(iter([payload]), timeout=10)
                else:
                    channel.unary_unary(path)(payload, timeout=10)
            except grpc.RpcError as error:
                assert error.code() in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.NOT_FOUND,
                ), (method, error.code(), error.details())
