"""End to end ingestion: real in-process gRPC servers, the generated stubs, real PostgreSQL.

Every expected count and value is computed here from the data the test generates (random with
fixed seeds), never taken from what the services answered."""

from __future__ import annotations

import base64
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.conftest import start_in_process

pytestmark = pytest.mark.e2e

MICROS = 1_000_000
MINUTE = 60 * MICROS
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BASE = int((datetime(2026, 2, 10, tzinfo=UTC) - EPOCH).total_seconds()) * MICROS
BEFORE_2000 = int((datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC) - EPOCH).total_seconds()) * MICROS
CALL_TIMEOUT = 120.0
REJECTIONS_LISTED = 100  # Settings.max_rejections_listed default

Key = tuple[str, int]  # (entity id, read time in microseconds since the epoch)
Values = tuple[Any, ...]  # every stored column but the key, in table order
Status = tuple[int, Values]  # (read time micros, values) of an entity's newest reading


# --- time -----------------------------------------------------------------------------------


def ts(micros: int) -> Timestamp:
    seconds, rest = divmod(micros, MICROS)
    return Timestamp(seconds=seconds, nanos=rest * 1000)


def ts_micros(timestamp: Timestamp) -> int:
    assert timestamp.nanos % 1000 == 0, "the service keeps microseconds"
    return timestamp.seconds * MICROS + timestamp.nanos // 1000


def db_micros(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


def now_plus(seconds: float) -> int:
    return int((time.time() + seconds) * MICROS)


# --- what differs between MeterService and VehicleService -----------------------------------


@dataclass(frozen=True)
class Flavour:
    """One ingesting service seen from a client: readings, calls and its two tables."""

    name: str
    id_field: str
    value_fields: tuple[str, ...]  # the stored columns after the key, in table order
    make: Callable[[str, int, Values], Any]
    random_values: Callable[[random.Random], Values]
    # (field the stream must name, corruption applied in place to an otherwise valid reading)
    corruptions: Sequence[tuple[str, Callable[[Any], None]]]
    stub: Callable[[grpc.Channel], Any]
    batch: Callable[[Sequence[Any]], Any]
    unary: Callable[[Any], Any]
    get_status: Callable[[Any, str], Status]
    list_page: Callable[[Any, int, str], tuple[list[tuple[str, Status]], str]]
    history_sql: str
    status_sql: str

    def key(self, reading: Any) -> Key:
        return getattr(reading, self.id_field), ts_micros(reading.timestamp)

    def values(self, reading: Any) -> Values:
        return tuple(getattr(reading, name) for name in self.value_fields)

    def history(self, database_url: str) -> dict[Key, Values]:
        with psycopg.connect(database_url) as connection:
            rows = connection.execute(self.history_sql).fetchall()
        return {(row[0], db_micros(row[1])): tuple(row[2:]) for row in rows}

    def status_rows(self, database_url: str) -> dict[str, tuple[int, Values, int]]:
        """entity → (read time, values, update time) straight from the hot table."""
        with psycopg.connect(database_url) as connection:
            rows = connection.execute(self.status_sql).fetchall()
        return {row[0]: (db_micros(row[1]), tuple(row[2:-1]), db_micros(row[-1])) for row in rows}

    def statuses(self, database_url: str) -> dict[str, Status]:
        return {
            entity: (read, values)
            for entity, (read, values, _) in self.status_rows(database_url).items()
        }

    def send(self, stub: Any, batches: Sequence[Sequence[Any]]) -> Any:
        requests = [self.batch(readings) for readings in batches]
        return stub.IngestReadings(iter(requests), timeout=CALL_TIMEOUT)


def _set(name: str, value: Any) -> Callable[[Any], None]:
    return lambda reading: setattr(reading, name, value)


def _clear_timestamp(reading: Any) -> None:
    reading.ClearField("timestamp")


def _future_timestamp(reading: Any) -> None:
    reading.timestamp.CopyFrom(ts(now_plus(600)))


def _meter_get(stub: Any, meter_id: str) -> Status:
    status = stub.GetChargerStatus(
        meter_service_pb2.GetChargerStatusRequest(meter_id=meter_id), timeout=CALL_TIMEOUT
    )
    assert status.meter_id == meter_id
    assert status.HasField("update_time")
    return ts_micros(status.timestamp), (status.kwh_consumed_ac, status.voltage)


def _meter_page(stub: Any, size: int, token: str) -> tuple[list[tuple[str, Status]], str]:
    response = stub.ListChargerStatuses(
        meter_service_pb2.ListChargerStatusesRequest(page_size=size, page_token=token),
        timeout=CALL_TIMEOUT,
    )
    rows = [
        (s.meter_id, (ts_micros(s.timestamp), (s.kwh_consumed_ac, s.voltage)))
        for s in response.charger_statuses
    ]
    return rows, response.next_page_token


def _vehicle_values(status: Any) -> Values:
    return (status.charger_id, status.soc, status.kwh_delivered_dc, status.battery_temp)


def _vehicle_get(stub: Any, vehicle_id: str) -> Status:
    status = stub.GetVehicleStatus(
        vehicle_service_pb2.GetVehicleStatusRequest(vehicle_id=vehicle_id), timeout=CALL_TIMEOUT
    )
    assert status.vehicle_id == vehicle_id
    assert status.HasField("update_time")
    return ts_micros(status.timestamp), _vehicle_values(status)


def _vehicle_page(stub: Any, size: int, token: str) -> tuple[list[tuple[str, Status]], str]:
    response = stub.ListVehicleStatuses(
        vehicle_service_pb2.ListVehicleStatusesRequest(page_size=size, page_token=token),
        timeout=CALL_TIMEOUT,
    )
    rows = [
        (s.vehicle_id, (ts_micros(s.timestamp), _vehicle_values(s)))
        for s in response.vehicle_statuses
    ]
    return rows, response.next_page_token


METER = Flavour(
    name="meter",
    id_field="meter_id",
    value_fields=("kwh_consumed_ac", "voltage"),
    make=lambda entity, micros, values: meter_pb2.MeterReading(
        meter_id=entity, kwh_consumed_ac=values[0], voltage=values[1], timestamp=ts(micros)
    ),
    random_values=lambda rng: (rng.uniform(0.0, 60.0), rng.uniform(100.0, 900.0)),
    corruptions=(
        ("kwh_consumed_ac", _set("kwh_consumed_ac", math.nan)),
        ("kwh_consumed_ac", _set("kwh_consumed_ac", -0.5)),
        ("voltage", _set("voltage", 0.0)),
        ("meter_id", _set("meter_id", "bad id")),
        ("timestamp", _clear_timestamp),
        ("timestamp", _future_timestamp),
    ),
    stub=meter_service_pb2_grpc.MeterServiceStub,
    batch=lambda readings: meter_service_pb2.IngestReadingsRequest(readings=readings),
    unary=lambda reading: meter_service_pb2.IngestReadingRequest(reading=reading),
    get_status=_meter_get,
    list_page=_meter_page,
    history_sql="SELECT meter_id, read_time, kwh_consumed_ac, voltage FROM meter.meter_readings",
    status_sql=(
        "SELECT meter_id, read_time, kwh_consumed_ac, voltage, update_time "
        "FROM meter.charger_status"
    ),
)

VEHICLE = Flavour(
    name="vehicle",
    id_field="vehicle_id",
    value_fields=("charger_id", "soc", "kwh_delivered_dc", "battery_temp"),
    make=lambda entity, micros, values: vehicle_pb2.VehicleReading(
        vehicle_id=entity,
        charger_id=values[0],
        soc=values[1],
        kwh_delivered_dc=values[2],
        battery_temp=values[3],
        timestamp=ts(micros),
    ),
    random_values=lambda rng: (
        f"CHG-{rng.randrange(50):03d}",
        rng.uniform(0.0, 100.0),
        rng.uniform(0.0, 40.0),
        rng.uniform(-20.0, 60.0),
    ),
    corruptions=(
        ("kwh_delivered_dc", _set("kwh_delivered_dc", math.nan)),
        ("kwh_delivered_dc", _set("kwh_delivered_dc", -2.0)),
        ("soc", _set("soc", 101.0)),
        ("battery_temp", _set("battery_temp", 121.0)),
        ("battery_temp", _set("battery_temp", -61.0)),
        ("vehicle_id", _set("vehicle_id", "bad id")),
        ("charger_id", _set("charger_id", "charger/7")),
        ("timestamp", _clear_timestamp),
        ("timestamp", _future_timestamp),
    ),
    stub=vehicle_service_pb2_grpc.VehicleServiceStub,
    batch=lambda readings: vehicle_service_pb2.IngestReadingsRequest(readings=readings),
    unary=lambda reading: vehicle_service_pb2.IngestReadingRequest(reading=reading),
    get_status=_vehicle_get,
    list_page=_vehicle_page,
    history_sql=(
        "SELECT vehicle_id, read_time, charger_id, soc, kwh_delivered_dc, battery_temp "
        "FROM vehicle.vehicle_readings"
    ),
    status_sql=(
        "SELECT vehicle_id, read_time, charger_id, soc, kwh_delivered_dc, battery_temp, "
        "update_time FROM vehicle.vehicle_status"
    ),
)


# --- generated data and its expected outcome ------------------------------------------------


def newest(stored: dict[Key, Values]) -> dict[str, Status]:
    """entity → its newest reading: what the hot table must hold."""
    result: dict[str, Status] = {}
    for (entity, micros), values in stored.items():
        if entity not in result or micros > result[entity][0]:
            result[entity] = (micros, values)
    return result


def copy_of(reading: Any) -> Any:
    duplicate = type(reading)()
    duplicate.CopyFrom(reading)
    return duplicate


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


@dataclass
class StreamPlan:
    """A stream of valid readings, exact resends of earlier ones and invalid readings."""

    readings: list[Any]
    batch_size: int
    stored: dict[Key, Values]  # what history must hold: first occurrence of each valid key
    rejected: dict[int, str]  # stream index → field the rejection must name
    duplicates: int
    same_batch_duplicates: int
    cross_batch_duplicates: int

    @property
    def valid(self) -> int:
        return len(self.readings) - len(self.rejected)

    def batches(self) -> list[Sequence[Any]]:
        return chunks(self.readings, self.batch_size)


def plan_stream(
    flavour: Flavour, seed: int, total: int, batch_size: int, entities: int
) -> StreamPlan:
    """`total` readings: exactly 1% invalid (every corruption in turn) and 5% exact resends of
    earlier valid readings, some from the same batch and some from earlier batches."""
    rng = random.Random(seed)
    ids = [f"{flavour.name.upper()}-{n:05d}" for n in range(entities)]
    invalid_at = set(rng.sample(range(total), total // 100))
    duplicate_at = set(
        rng.sample([i for i in range(10, total) if i not in invalid_at], total // 20)
    )
    readings: list[Any] = []
    originals: list[Any] = []  # first occurrences of valid readings, in stream order
    stored: dict[Key, Values] = {}
    rejected: dict[int, str] = {}
    same = cross = 0
    batch_start = 0  # index in `originals` of the current batch's first original
    for index in range(total):
        if index % batch_size == 0:
            batch_start = len(originals)
        if index in duplicate_at:
            in_batch = len(originals) - batch_start
            if in_batch and (batch_start == 0 or rng.random() < 0.5):
                source = originals[rng.randrange(batch_start, len(originals))]
                same += 1
            else:
                assert batch_start > 0, "a resend needs an earlier reading"
                source = originals[rng.randrange(batch_start)]
                cross += 1
            readings.append(copy_of(source))
        elif index in invalid_at:
            field, corrupt = flavour.corruptions[len(rejected) % len(flavour.corruptions)]
            # An id no valid reading uses: an invalid reading must not create a status either.
            reading = flavour.make(f"LONELY-{index}", BASE + index, flavour.random_values(rng))
            corrupt(reading)
            rejected[index] = field
            readings.append(reading)
        else:
            count = len(originals)
            micros = BASE + (count // entities) * MINUTE + rng.randrange(59 * MICROS)
            values = flavour.random_values(rng)
            reading = flavour.make(ids[count % entities], micros, values)
            originals.append(reading)
            stored[(ids[count % entities], micros)] = values
            readings.append(reading)
    assert len(stored) == total - len(invalid_at) - len(duplicate_at)
    return StreamPlan(readings, batch_size, stored, rejected, len(duplicate_at), same, cross)


def timeline(
    flavour: Flavour, rng: random.Random, ids: Sequence[str], steps: int
) -> dict[Key, Values]:
    """`steps` readings per entity, one a minute, at random microseconds within the minute."""
    return {
        (entity, BASE + step * MINUTE + rng.randrange(59 * MICROS)): flavour.random_values(rng)
        for entity in ids
        for step in range(steps)
    }


def readings_of(flavour: Flavour, stored: dict[Key, Values]) -> list[Any]:
    return [flavour.make(entity, micros, values) for (entity, micros), values in stored.items()]


def bad_request_fields(error: grpc.RpcError) -> list[str]:
    """The field violations of an INVALID_ARGUMENT, from its google.rpc.Status details."""
    status = rpc_status.from_call(error)
    assert status is not None, "INVALID_ARGUMENT must carry a google.rpc.Status"
    fields: list[str] = []
    for detail in status.details:
        assert detail.Is(error_details_pb2.BadRequest.DESCRIPTOR), detail.type_url
        bad_request = error_details_pb2.BadRequest()
        detail.Unpack(bad_request)
        fields += [violation.field for violation in bad_request.field_violations]
    assert fields, "a BadRequest needs at least one field violation"
    return fields


def check_stream_response(response: Any, plan: StreamPlan) -> None:
    assert response.accepted == len(plan.stored)
    assert response.duplicates == plan.duplicates
    assert response.rejected == len(plan.rejected)
    expected_listed = sorted(plan.rejected.items())[:REJECTIONS_LISTED]
    assert len(response.rejections) == min(len(plan.rejected), REJECTIONS_LISTED)
    assert [(r.index, r.field) for r in response.rejections] == expected_listed
    assert all(r.description for r in response.rejections)


# --- 1. counts of a big stream with invalid readings and resends -----------------------------


@pytest.mark.parametrize(
    ("flavour", "total", "entities"),
    [(METER, 50_000, 1000), (VEHICLE, 20_000, 400)],
    ids=["meter", "vehicle"],
)
def test_stream_counts_rejections_and_stores_each_valid_reading_once(
    request, flavour, total, entities
):
    """1% invalid and 5% resent readings in batches of 500: exact counts, the first 100
    rejections with stream-wide index and field, history and status tables exactly right."""
    server = request.getfixturevalue(f"{flavour.name}_server")
    plan = plan_stream(flavour, seed=total, total=total, batch_size=500, entities=entities)
    assert plan.same_batch_duplicates > 0 and plan.cross_batch_duplicates > 0
    assert {field for field, _ in flavour.corruptions} <= set(plan.rejected.values())

    with server.channel() as channel:
        response = flavour.send(flavour.stub(channel), plan.batches())

    check_stream_response(response, plan)
    # The listed rejections reach well past the first batch: indexes count across batches.
    assert response.rejections[-1].index >= plan.batch_size
    assert flavour.history(server.database_url) == plan.stored
    statuses = flavour.statuses(server.database_url)
    assert len(statuses) == len({entity for entity, _ in plan.stored})
    assert statuses == newest(plan.stored)


# --- 2. replays and first write wins ---------------------------------------------------------


@pytest.mark.parametrize(
    ("flavour", "total", "entities"),
    [(METER, 50_000, 1000), (VEHICLE, 20_000, 400)],
    ids=["meter", "vehicle"],
)
def test_replayed_stream_is_all_duplicates_and_adds_no_rows(request, flavour, total, entities):
    """The stream of test 1 replayed 3 times: accepted 0, every valid reading (resends
    included) a duplicate, invalid ones rejected again, history and statuses unchanged."""
    server = request.getfixturevalue(f"{flavour.name}_server")
    plan = plan_stream(flavour, seed=total, total=total, batch_size=500, entities=entities)
    with server.channel() as channel:
        stub = flavour.stub(channel)
        check_stream_response(flavour.send(stub, plan.batches()), plan)
        for _ in range(3):
            replay = flavour.send(stub, plan.batches())
            assert (replay.accepted, replay.duplicates, replay.rejected) == (
                0,
                plan.valid,
                len(plan.rejected),
            )
            assert [(r.index, r.field) for r in replay.rejections] == sorted(plan.rejected.items())[
                :REJECTIONS_LISTED
            ]
            assert flavour.history(server.database_url) == plan.stored
            assert flavour.statuses(server.database_url) == newest(plan.stored)


@pytest.mark.parametrize("flavour", [METER, VEHICLE], ids=["meter", "vehicle"])
def test_replay_leaves_status_rows_exactly_as_after_first_send(request, flavour):
    """Idempotency: a replay leaves the database exactly as after the first send, so a
    status row's update_time ("when the server stored the newest reading") does not move."""
    server = request.getfixturevalue(f"{flavour.name}_server")
    rng = random.Random(11)
    stored = timeline(flavour, rng, [f"R{n:03d}" for n in range(100)], steps=5)
    readings = readings_of(flavour, stored)
    with server.channel() as channel:
        stub = flavour.stub(channel)
        first = flavour.send(stub, chunks(readings, 100))
        assert (first.accepted, first.duplicates, first.rejected) == (len(stored), 0, 0)
        after_first = flavour.status_rows(server.database_url)
        replay = flavour.send(stub, chunks(readings, 100))
        assert (replay.accepted, replay.duplicates, replay.rejected) == (0, len(stored), 0)
    assert flavour.history(server.database_url) == stored
    assert flavour.status_rows(server.database_url) == after_first


@pytest.mark.parametrize("flavour", [METER, VEHICLE], ids=["meter", "vehicle"])
def test_resend_with_different_values_keeps_first_values(request, flavour):
    """Same entity and timestamp with other values (later stream, unary call, same batch) is a
    duplicate; history and status keep the first values (first write wins)."""
    server = request.getfixturevalue(f"{flavour.name}_server")
    rng = random.Random(8)
    stored = timeline(flavour, rng, [f"F{n:03d}" for n in range(100)], steps=10)
    expected = newest(stored)
    newest_keys = [(entity, micros) for entity, (micros, _) in expected.items()]
    older_keys = rng.sample(sorted(set(stored) - set(newest_keys)), 200)

    def changed(key: Key) -> Any:
        values = flavour.random_values(rng)
        assert values != stored.get(key)
        return flavour.make(*key, values)

    with server.channel() as channel:
        stub = flavour.stub(channel)
        first = flavour.send(stub, chunks(readings_of(flavour, stored), 250))
        assert (first.accepted, first.duplicates, first.rejected) == (len(stored), 0, 0)

        resent = [changed(key) for key in newest_keys[1:] + older_keys]
        rng.shuffle(resent)
        response = flavour.send(stub, chunks(resent, 100))
        # Other values under stored keys: conflicts, not retries; the first values stay.
        assert (response.accepted, response.duplicates, response.rejected) == (0, 0, 0)
        assert response.conflicts == len(resent)

        unary = stub.IngestReading(flavour.unary(changed(newest_keys[0])), timeout=CALL_TIMEOUT)
        assert unary.duplicate is False
        assert unary.outcome == 3  # INGEST_OUTCOME_CONFLICT, in both services

        # Both versions of a new reading in one batch: the first one is stored.
        key = ("SAME-BATCH", BASE)
        original = changed(key)
        stored[key] = flavour.values(original)
        expected["SAME-BATCH"] = (BASE, stored[key])
        response = flavour.send(stub, [[original, changed(key)]])
        assert (response.accepted, response.duplicates, response.rejected) == (1, 0, 0)
        assert response.conflicts == 1
        assert [c.index for c in response.conflicting_readings] == [1]

        served = {entity: flavour.get_status(stub, entity) for entity in expected}
    assert flavour.history(server.database_url) == stored
    assert flavour.statuses(server.database_url) == expected
    assert served == expected


# --- 3. statuses follow the newest reading, whatever the arrival order ------------------------


@pytest.mark.parametrize("flavour", [METER, VEHICLE], ids=["meter", "vehicle"])
def test_status_is_newest_reading_despite_shuffled_order_and_late_readings(request, flavour):
    """200 entities x 60 minutes sent shuffled over 6 concurrent streams: every status (Get and
    table) is the entity's newest reading; late older readings are stored but roll nothing back."""
    server = request.getfixturevalue(f"{flavour.name}_server")
    rng = random.Random(3)
    ids = [f"{flavour.name[0].upper()}{n:03d}" for n in range(200)]
    stored = timeline(flavour, rng, ids, steps=60)
    readings = readings_of(flavour, stored)
    rng.shuffle(readings)
    streams = chunks(readings, math.ceil(len(readings) / 6))
    expected = newest(stored)

    with server.channel() as channel:
        stub = flavour.stub(channel)
        with ThreadPoolExecutor(len(streams)) as pool:
            responses = list(pool.map(lambda part: flavour.send(stub, chunks(part, 250)), streams))
        for part, response in zip(streams, responses, strict=True):
            assert (response.accepted, response.duplicates, response.rejected) == (len(part), 0, 0)
        assert {entity: flavour.get_status(stub, entity) for entity in ids} == expected
        assert flavour.statuses(server.database_url) == expected
        assert flavour.history(server.database_url) == stored
        before = flavour.status_rows(server.database_url)

        # Late readings: new keys, older than each entity's newest, with other values.
        late: dict[Key, Values] = {}
        for entity, (micros, _) in expected.items():
            for older in (micros - 1, BASE - 24 * 60 * MINUTE):
                assert (entity, older) not in stored
                late[(entity, older)] = flavour.random_values(rng)
        late_readings = readings_of(flavour, late)
        rng.shuffle(late_readings)
        unary_late, stream_late = late_readings[0], late_readings[1:]
        response = flavour.send(stub, chunks(stream_late, 100))
        assert (response.accepted, response.duplicates, response.rejected) == (
            len(stream_late),
            0,
            0,
        )
        assert (
            stub.IngestReading(flavour.unary(unary_late), timeout=CALL_TIMEOUT).duplicate is False
        )

        assert {entity: flavour.get_status(stub, entity) for entity in ids} == expected
    assert flavour.status_rows(server.database_url) == before
    assert flavour.history(server.database_url) == {**stored, **late}


# --- 4. many concurrent clients, overlapping readings ----------------------------------------


def test_concurrent_streams_and_unary_calls_store_every_reading_exactly_once(meter_server):
    """50 streaming clients and 200 unary callers at once, with readings sent by two clients:
    accepted answers equal the rows stored, accepted + duplicates equal the valid readings."""
    rng = random.Random(4)
    meters = [f"M-{n:03d}" for n in range(500)]
    counter = iter(range(10**9))

    def fresh(count: int) -> dict[Key, Values]:
        result = {}
        for _ in range(count):
            k = next(counter)
            micros = BASE + (k // len(meters)) * MINUTE + rng.randrange(59 * MICROS)
            result[(meters[k % len(meters)], micros)] = METER.random_values(rng)
        return result

    stream_own = [fresh(1000) for _ in range(50)]
    unary_own = [fresh(3) for _ in range(200)]
    stream_sends: list[list[Any]] = []
    valid_sent = 0
    invalid_sent = 0
    for client in range(50):
        # 100 readings that the next client also sends as its own.
        shared = dict(rng.sample(sorted(stream_own[(client + 1) % 50].items()), 100))
        readings = readings_of(METER, {**stream_own[client], **shared})
        valid_sent += len(readings)
        for n in range(5):
            _, corrupt = METER.corruptions[n]
            bad = METER.make(meters[n], BASE + n, METER.random_values(rng))
            corrupt(bad)
            readings.append(bad)
            invalid_sent += 1
        rng.shuffle(readings)
        stream_sends.append(readings)
    unary_sends: list[list[Any]] = []
    for caller in range(200):
        other_unary = rng.choice(sorted(unary_own[(caller + 1) % 200].items()))
        from_stream = rng.choice(sorted(stream_own[caller % 50].items()))
        chosen = {**unary_own[caller], **dict([other_unary, from_stream])}
        readings = readings_of(METER, chosen)
        rng.shuffle(readings)
        unary_sends.append(readings)
        valid_sent += len(readings)
    expected: dict[Key, Values] = {}
    for part in [*stream_own, *unary_own]:
        expected.update(part)
    assert valid_sent > len(expected)

    start = threading.Barrier(len(stream_sends) + len(unary_sends), timeout=60)

    def stream_client(readings: list[Any]) -> Any:
        with meter_server.channel() as channel:
            stub = METER.stub(channel)
            start.wait()
            return METER.send(stub, chunks(readings, 100))

    def unary_caller(readings: list[Any]) -> list[bool]:
        with meter_server.channel() as channel:
            stub = METER.stub(channel)
            start.wait()
            return [
                stub.IngestReading(METER.unary(r), timeout=CALL_TIMEOUT).duplicate for r in readings
            ]

    with ThreadPoolExecutor(len(stream_sends) + len(unary_sends)) as pool:
        stream_futures = [pool.submit(stream_client, readings) for readings in stream_sends]
        unary_futures = [pool.submit(unary_caller, readings) for readings in unary_sends]
        stream_answers = [future.result() for future in stream_futures]
        unary_answers = [answer for future in unary_futures for answer in future.result()]

    accepted = sum(a.accepted for a in stream_answers) + unary_answers.count(False)
    duplicates = sum(a.duplicates for a in stream_answers) + unary_answers.count(True)
    history = METER.history(meter_server.database_url)
    assert accepted == len(history) == len(expected)
    assert accepted + duplicates == valid_sent
    assert sum(a.rejected for a in stream_answers) == invalid_sent
    assert history == expected
    assert METER.statuses(meter_server.database_url) == newest(expected)


# --- 5. paging through statuses ---------------------------------------------------------------


def list_all(flavour: Flavour, stub: Any, page_size: int) -> list[list[tuple[str, Status]]]:
    pages = []
    token = ""
    while True:
        rows, token = flavour.list_page(stub, page_size, token)
        pages.append(rows)
        if not token:
            return pages
        assert len(pages) < 1000, "paging does not end"


def encoded(text: str) -> str:
    """A token that decodes (base64 of JSON) but is not one the service issued."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def check_paging(flavour: Flavour, stub: Any, stored: dict[Key, Values]) -> None:
    expected = newest(stored)
    ordered = sorted(expected)  # ids are ASCII: code point order is the "C" collation order
    for page_size, limit in ((1000, 1000), (0, 1000), (20_000, 10_000)):
        pages = list_all(flavour, stub, page_size)
        assert len(pages) == math.ceil(len(ordered) / limit), page_size
        assert [len(page) for page in pages[:-1]] == [limit] * (len(pages) - 1)
        assert [entity for page in pages for entity, _ in page] == ordered
        assert dict(row for page in pages for row in page) == expected

    garbage = ["garbage", "!!!", "%%%", *(encoded(text) for text in ("[]", "{}", '{"after":5}'))]
    refused = [(-1, "", "page_size"), *((10, token, "page_token") for token in garbage)]
    for bad_size, bad_token, field in refused:
        with pytest.raises(grpc.RpcError) as caught:
            flavour.list_page(stub, bad_size, bad_token)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad_token
        assert bad_request_fields(caught.value) == [field]


def distinct_ids(rng: random.Random, count: int) -> list[str]:
    """Ids whose order mixes punctuation, digits, upper and lower case."""
    prefixes = ("A", "a", "Z", "m.", "M_", "0", "9:", "x-", "-", "B.c")
    ids: set[str] = set()
    while len(ids) < count:
        ids.add(f"{rng.choice(prefixes)}{rng.randrange(10**6)}")
    result = sorted(ids)
    rng.shuffle(result)
    return result


def test_list_charger_statuses_pages_through_25000_chargers(meter_server):
    """25,000 chargers: pages of 1000, 0 (→ 1000) and 20000 (→ 10000) list each id once, in
    order, the last page with an empty token; page_size -1 and garbage tokens are refused."""
    rng = random.Random(5)
    stored = {
        (meter_id, BASE + rng.randrange(60 * MINUTE)): METER.random_values(rng)
        for meter_id in distinct_ids(rng, 25_000)
    }
    with meter_server.channel() as channel:
        stub = METER.stub(channel)
        response = METER.send(stub, chunks(readings_of(METER, stored), 500))
        assert (response.accepted, response.duplicates, response.rejected) == (25_000, 0, 0)
        check_paging(METER, stub, stored)


def test_list_vehicle_statuses_pages_through_2500_vehicles(vehicle_server):
    """The same listing rules for ListVehicleStatuses, with 2,500 vehicles."""
    rng = random.Random(6)
    stored = timeline(VEHICLE, rng, distinct_ids(rng, 2_500), steps=2)
    with vehicle_server.channel() as channel:
        stub = VEHICLE.stub(channel)
        response = VEHICLE.send(stub, chunks(readings_of(VEHICLE, stored), 500))
        assert (response.accepted, response.duplicates, response.rejected) == (5_000, 0, 0)
        check_paging(VEHICLE, stub, stored)


# --- 6. unary IngestReading ---------------------------------------------------------------------


def meter(**changes: Any) -> meter_pb2.MeterReading:
    reading = meter_pb2.MeterReading(
        meter_id="CHG-001", kwh_consumed_ac=15.5, voltage=240.0, timestamp=ts(BASE)
    )
    for name, value in changes.items():
        if name == "timestamp" and value is None:
            reading.ClearField("timestamp")
        elif name == "timestamp":
            reading.timestamp.CopyFrom(ts(value))
        else:
            setattr(reading, name, value)
    return reading


def vehicle(**changes: Any) -> vehicle_pb2.VehicleReading:
    reading = vehicle_pb2.VehicleReading(
        vehicle_id="EV-001",
        charger_id="CHG-001",
        soc=55.0,
        kwh_delivered_dc=12.25,
        battery_temp=31.5,
        timestamp=ts(BASE),
    )
    for name, value in changes.items():
        if name == "timestamp" and value is None:
            reading.ClearField("timestamp")
        elif name == "timestamp":
            reading.timestamp.CopyFrom(ts(value))
        else:
            setattr(reading, name, value)
    return reading


@pytest.mark.parametrize(
    ("flavour", "make"), [(METER, meter), (VEHICLE, vehicle)], ids=["meter", "vehicle"]
)
def test_unary_same_reading_twice_is_duplicate_the_second_time(request, flavour, make):
    """IngestReading of one reading twice: duplicate false, then true; stored once."""
    server = request.getfixturevalue(f"{flavour.name}_server")
    reading = make()
    with server.channel() as channel:
        stub = flavour.stub(channel)
        first = stub.IngestReading(flavour.unary(reading), timeout=CALL_TIMEOUT)
        second = stub.IngestReading(flavour.unary(reading), timeout=CALL_TIMEOUT)
        assert (first.duplicate, second.duplicate) == (False, True)
        # What a JSON client (grpcurl) prints: never an empty {} for a stored reading.
        assert json_format.MessageToDict(first) == {"outcome": "INGEST_OUTCOME_ACCEPTED"}
        assert json_format.MessageToDict(second) == {
            "duplicate": True,
            "outcome": "INGEST_OUTCOME_DUPLICATE",
        }
        entity, micros = flavour.key(reading)
        assert flavour.get_status(stub, entity) == (micros, flavour.values(reading))
    assert flavour.history(server.database_url) == {(entity, micros): flavour.values(reading)}


METER_INVALID = [
    ("kwh NaN", {"kwh_consumed_ac": math.nan}, ["kwh_consumed_ac"]),
    ("kwh +inf", {"kwh_consumed_ac": math.inf}, ["kwh_consumed_ac"]),
    ("voltage -inf", {"voltage": -math.inf}, ["voltage"]),
    ("kwh negative", {"kwh_consumed_ac": -0.001}, ["kwh_consumed_ac"]),
    ("kwh above 1000", {"kwh_consumed_ac": 1000.5}, ["kwh_consumed_ac"]),
    ("voltage 0", {"voltage": 0.0}, ["voltage"]),
    ("voltage above 2000", {"voltage": 2000.5}, ["voltage"]),
    ("id of 65 chars", {"meter_id": "M" * 65}, ["meter_id"]),
    ("id with a space", {"meter_id": "CHG 001"}, ["meter_id"]),
    ("empty id", {"meter_id": ""}, ["meter_id"]),
    ("no timestamp", {"timestamp": None}, ["timestamp"]),
    ("10 min ahead", {"timestamp": "future"}, ["timestamp"]),
    ("before 2000", {"timestamp": BEFORE_2000}, ["timestamp"]),
    (
        "every problem listed",
        {"meter_id": "x y", "kwh_consumed_ac": math.nan, "voltage": 0.0},
        ["meter_id", "kwh_consumed_ac", "voltage"],
    ),
]

VEHICLE_INVALID = [
    ("soc NaN", {"soc": math.nan}, ["soc"]),
    ("battery_temp +inf", {"battery_temp": math.inf}, ["battery_temp"]),
    ("kwh -inf", {"kwh_delivered_dc": -math.inf}, ["kwh_delivered_dc"]),
    ("kwh negative", {"kwh_delivered_dc": -1.0}, ["kwh_delivered_dc"]),
    ("soc 101", {"soc": 101.0}, ["soc"]),
    ("soc negative", {"soc": -0.5}, ["soc"]),
    ("battery_temp 120.5", {"battery_temp": 120.5}, ["battery_temp"]),
    ("battery_temp -61", {"battery_temp": -61.0}, ["battery_temp"]),
    ("vehicle_id of 65 chars", {"vehicle_id": "V" * 65}, ["vehicle_id"]),
    ("vehicle_id with a space", {"vehicle_id": "EV 001"}, ["vehicle_id"]),
    ("charger_id with a space", {"charger_id": "CHG 001"}, ["charger_id"]),
    ("empty charger_id", {"charger_id": ""}, ["charger_id"]),
    ("no timestamp", {"timestamp": None}, ["timestamp"]),
    ("10 min ahead", {"timestamp": "future"}, ["timestamp"]),
    ("before 2000", {"timestamp": BEFORE_2000}, ["timestamp"]),
]


@pytest.mark.parametrize(
    ("flavour", "make", "cases"),
    [(METER, meter, METER_INVALID), (VEHICLE, vehicle, VEHICLE_INVALID)],
    ids=["meter", "vehicle"],
)
def test_unary_invalid_reading_is_invalid_argument_with_field_violations(
    request, flavour, make, cases
):
    """Each rule broken once: INVALID_ARGUMENT whose google.rpc.Status details unpack to a
    BadRequest naming reading.<field>; nothing is stored."""
    server = request.getfixturevalue(f"{flavour.name}_server")
    with server.channel() as channel:
        stub = flavour.stub(channel)
        for name, changes, fields in cases:
            future = {"timestamp": now_plus(600)} if changes.get("timestamp") == "future" else {}
            reading = make(**{**changes, **future})
            with pytest.raises(grpc.RpcError) as caught:
                stub.IngestReading(flavour.unary(reading), timeout=CALL_TIMEOUT)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
            assert sorted(bad_request_fields(caught.value)) == sorted(
                f"reading.{field}" for field in fields
            ), name
    assert flavour.history(server.database_url) == {}
    assert flavour.statuses(server.database_url) == {}


METER_BOUNDARIES = [
    {"kwh_consumed_ac": 0.0},
    {"kwh_consumed_ac": 1000.0},
    {"voltage": 2000.0},
    {"meter_id": "m" * 64},
    {"meter_id": "Az09._:-"},
    {"timestamp": "ahead"},
]

VEHICLE_BOUNDARIES = [
    {"soc": 0.0},
    {"soc": 100.0},
    {"battery_temp": -60.0},
    {"battery_temp": 120.0},
    {"kwh_delivered_dc": 0.0},
    {"kwh_delivered_dc": 1000.0},
    {"vehicle_id": "v" * 64},
    {"charger_id": "c" * 64},
    {"timestamp": "ahead"},
]


@pytest.mark.parametrize(
    ("flavour", "make", "cases"),
    [(METER, meter, METER_BOUNDARIES), (VEHICLE, vehicle, VEHICLE_BOUNDARIES)],
    ids=["meter", "vehicle"],
)
def test_unary_boundary_values_are_accepted(request, flavour, make, cases):
    """Values on the edge of every range (and a timestamp 4 minutes ahead) are stored."""
    server = request.getfixturevalue(f"{flavour.name}_server")
    expected: dict[Key, Values] = {}
    with server.channel() as channel:
        stub = flavour.stub(channel)
        for offset, changes in enumerate(cases):
            # A key of its own per case: each must be stored, none a duplicate.
            when = now_plus(240) if changes.get("timestamp") == "ahead" else BASE + offset
            reading = make(**{**changes, "timestamp": when})
            response = stub.IngestReading(flavour.unary(reading), timeout=CALL_TIMEOUT)
            assert response.duplicate is False, changes
            expected[flavour.key(reading)] = flavour.values(reading)
    assert flavour.history(server.database_url) == expected


# --- 7. invalid readings never lose their neighbours -----------------------------------------


@pytest.mark.parametrize("flavour", [METER, VEHICLE], ids=["meter", "vehicle"])
def test_stream_stores_valid_readings_around_invalid_ones(request, flavour):
    """Batches [valid, invalid, valid] and [invalid, valid]: 3 stored, rejections at 1 and 3."""
    server = request.getfixturevalue(f"{flavour.name}_server")
    rng = random.Random(9)
    stored = timeline(flavour, rng, ["ONE", "TWO", "THREE"], steps=1)
    valid = readings_of(flavour, stored)
    field, corrupt = flavour.corruptions[0]
    invalid = [flavour.make("ONE", BASE - n, flavour.random_values(rng)) for n in (1, 2)]
    for reading in invalid:
        corrupt(reading)
    with server.channel() as channel:
        response = flavour.send(
            flavour.stub(channel), [[valid[0], invalid[0], valid[1]], [invalid[1], valid[2]]]
        )
    assert (response.accepted, response.duplicates, response.rejected) == (3, 0, 2)
    assert [(r.index, r.field) for r in response.rejections] == [(1, field), (3, field)]
    assert flavour.history(server.database_url) == stored
    assert flavour.statuses(server.database_url) == newest(stored)


# --- 6. a status page is at most STATUS_PAGE_MAX_AGE_MS old ----------------------------------


def test_a_status_page_is_served_from_a_copy_no_older_than_its_bound(database_url):
    """With STATUS_PAGE_MAX_AGE_MS = 3,000: a page listed again at once is the same page, even
    after a newer reading was committed; once the bound has passed since the first listing
    began, the newer reading shows. GetChargerStatus is never served from a copy."""

    server = start_in_process("meter", database_url, status_page_max_age_ms=3000.0)
    try:
        with server.channel() as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)

            def ingest(seconds: int, kwh: float) -> None:
                reading = meter_pb2.MeterReading(
                    meter_id="CHG-PAGE",
                    kwh_consumed_ac=kwh,
                    voltage=230,
                    timestamp=Timestamp(seconds=seconds),
                )
                stub.IngestReading(
                    meter_service_pb2.IngestReadingRequest(reading=reading), timeout=CALL_TIMEOUT
                )

            def listed() -> float:
                page = stub.ListChargerStatuses(
                    meter_service_pb2.ListChargerStatusesRequest(page_size=10),
                    timeout=CALL_TIMEOUT,
                )
                return page.charger_statuses[0].kwh_consumed_ac

            now = int(time.time())
            ingest(now - 120, 1.0)
            started = time.monotonic()
            assert listed() == 1.0
            ingest(now - 60, 2.0)
            single = stub.GetChargerStatus(
                meter_service_pb2.GetChargerStatusRequest(meter_id="CHG-PAGE"),
                timeout=CALL_TIMEOUT,
            )
            assert single.kwh_consumed_ac == 2.0
            again = listed()
            if time.monotonic() - started < 2.9:  # a very slow machine may have passed the bound
                assert again == 1.0
            time.sleep(max(0.0, 3.1 - (time.monotonic() - started)))
            assert listed() == 2.0
    finally:
        server.running.shutdown(5)


def test_a_charger_that_does_not_report_its_voltage_is_stored_with_voltage_unknown(meter_server):
    """Voltage left out (unary and stream): the readings are stored, voltage NULL in history and
    status, and the status answers without a voltage; one reported later shows again. An
    explicit 0 is still refused, naming the bound."""
    with meter_server.channel() as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        unary = stub.IngestReading(
            meter_service_pb2.IngestReadingRequest(
                reading=meter_pb2.MeterReading(
                    meter_id="CHG-NOV", kwh_consumed_ac=0.5, timestamp=ts(BASE)
                )
            ),
            timeout=CALL_TIMEOUT,
        )
        assert unary.outcome == 1  # INGEST_OUTCOME_ACCEPTED
        streamed = stub.IngestReadings(
            iter(
                [
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[
                            meter_pb2.MeterReading(
                                meter_id="CHG-NOV",
                                kwh_consumed_ac_register=100.0,
                                timestamp=ts(BASE + MINUTE),
                            )
                        ]
                    )
                ]
            ),
            timeout=CALL_TIMEOUT,
        )
        assert (streamed.accepted, streamed.rejected) == (1, 0)
        status = stub.GetChargerStatus(
            meter_service_pb2.GetChargerStatusRequest(meter_id="CHG-NOV"), timeout=CALL_TIMEOUT
        )
        assert not status.HasField("voltage")
        assert status.kwh_consumed_ac_register == 100.0
        with pytest.raises(grpc.RpcError) as refused:
            stub.IngestReading(
                meter_service_pb2.IngestReadingRequest(
                    reading=meter_pb2.MeterReading(
                        meter_id="CHG-NOV", kwh_consumed_ac=0.5, voltage=0.0, timestamp=ts(BASE)
                    )
                ),
                timeout=CALL_TIMEOUT,
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "reading.voltage" in str(refused.value.details())
        stub.IngestReading(
            meter_service_pb2.IngestReadingRequest(
                reading=meter_pb2.MeterReading(
                    meter_id="CHG-NOV",
                    kwh_consumed_ac=0.5,
                    voltage=231.5,
                    timestamp=ts(BASE + 2 * MINUTE),
                )
            ),
            timeout=CALL_TIMEOUT,
        )
        status = stub.GetChargerStatus(
            meter_service_pb2.GetChargerStatusRequest(meter_id="CHG-NOV"), timeout=CALL_TIMEOUT
        )
        assert status.voltage == 231.5
    with psycopg.connect(meter_server.database_url) as connection:
        stored = connection.execute(
            "SELECT kwh_consumed_ac, kwh_consumed_ac_register, voltage FROM meter.meter_readings "
            "WHERE meter_id = 'CHG-NOV' ORDER BY read_time"
        ).fetchall()
    assert stored == [(0.5, None, None), (None, 100.0, None), (0.5, None, 231.5)]
