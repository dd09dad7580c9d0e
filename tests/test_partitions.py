"""The histories partitioned by day on real PostgreSQL: partitions made ahead and on demand,
backlogs and year-old readings stored, retention dropping exactly the expired days and refusing
older readings with its reason, the conversion migration keeping every row, and the embedded
PostgreSQL path."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc

from services.common import migrations
from services.common.embedded import EmbeddedPostgres
from services.common.maintenance import PARTITIONS_AHEAD_DAYS, Maintenance
from services.common.partitions import DAY_US, DailyPartitions, day_of
from services.common.timeconv import micros_to_timestamp as ts
from tests.conftest import start_in_process

MINUTE = 60_000_000
CALL_TIMEOUT = 30.0


def moment(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()) * 1_000_000


def partitions_of(url: str, table: str) -> dict[str, int]:
    """Each partition of `table` and its row count."""
    with psycopg.connect(url) as connection:
        names = [
            row[0]
            for row in connection.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass ORDER BY 1",
                (table,),
            )
        ]
        schema = table.split(".", maxsplit=1)[0]
        return {
            name: connection.execute(f"SELECT count(*) FROM {schema}.{name}").fetchone()[0]  # type: ignore[index]
            for name in names
        }


def relkind(url: str, table: str) -> str:
    """'p' for a partitioned table, 'r' for a plain one."""
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", (table,))
        return str(row.fetchone()[0])  # type: ignore[index]


def meter_reading(meter_id: str, micros: int, kwh: float = 0.25) -> meter_pb2.MeterReading:
    return meter_pb2.MeterReading(
        meter_id=meter_id, timestamp=ts(micros), kwh_consumed_ac=kwh, voltage=230.0
    )


def ingest_meters(target: str, readings: list[meter_pb2.MeterReading]) -> object:
    with grpc.insecure_channel(target) as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        return stub.IngestReadings(
            iter([meter_service_pb2.IngestReadingsRequest(readings=readings)]),
            timeout=CALL_TIMEOUT,
        )


def history_count(url: str, table: str) -> int:
    with psycopg.connect(url) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def test_after_migrate_both_histories_are_partitioned_by_day_with_no_default(database_url):
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT c.relnamespace::regnamespace::text || '.' || c.relname, p.partstrat, "
            "a.attname, p.partdefid "
            "FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] "
            "ORDER BY 1"
        ).fetchall()
    assert rows == [
        ("meter.meter_readings", "r", "read_time", 0),
        ("vehicle.vehicle_readings", "r", "read_time", 0),
    ]


def test_a_stream_spanning_three_days_lands_in_three_partitions(meter_server):
    """20:00 on 2026-03-01 to 04:00 on 2026-03-03, one reading every 2 hours: 17 readings; days
    1 (20:00, 22:00: 2), 2 (00:00 … 22:00: 12) and 3 (00:00 … 04:00: 3)."""
    start = moment(2026, 3, 1, 20)
    readings = [meter_reading("CHG-3D", start + k * 120 * MINUTE) for k in range(17)]
    response = ingest_meters(meter_server.target, readings)
    assert (response.accepted, response.rejected) == (17, 0)  # type: ignore[attr-defined]
    found = partitions_of(meter_server.database_url, "meter.meter_readings")
    assert {name: n for name, n in found.items() if n} == {
        "meter_readings_p20260301": 2,
        "meter_readings_p20260302": 12,
        "meter_readings_p20260303": 3,
    }


def test_a_reading_from_400_days_ago_and_a_backlog_are_stored(database_url):
    """No retention: a year-old import and a month-old backlog each get their day's partition,
    for both kinds."""
    now = time.time_ns() // 1000
    old = now - 400 * DAY_US
    backlog = [now - 30 * DAY_US + k * MINUTE for k in range(3)]
    meter = start_in_process("meter", database_url)
    vehicle = start_in_process("vehicle", database_url)
    try:
        response = ingest_meters(
            meter.target,
            [meter_reading("CHG-OLD", old), *(meter_reading("CHG-OLD", t) for t in backlog)],
        )
        assert (response.accepted, response.rejected) == (4, 0)  # type: ignore[attr-defined]
        with grpc.insecure_channel(vehicle.target) as channel:
            stub = vehicle_service_pb2_grpc.VehicleServiceStub(channel)
            answer = stub.IngestReading(
                vehicle_service_pb2.IngestReadingRequest(
                    reading=vehicle_pb2.VehicleReading(
                        vehicle_id="EV-OLD",
                        charger_id="CHG-OLD",
                        timestamp=ts(old),
                        kwh_delivered_dc=0.2,
                        soc=50.0,
                        battery_temp=20.0,
                    )
                ),
                timeout=CALL_TIMEOUT,
            )
            assert answer.outcome == vehicle_service_pb2.INGEST_OUTCOME_ACCEPTED
    finally:
        meter.running.shutdown(5)
        vehicle.running.shutdown(5)
    partitions = DailyPartitions("meter", "meter_readings")
    found = partitions_of(database_url, "meter.meter_readings")
    assert found[partitions.name(day_of(old))] == 1
    assert sum(found[partitions.name(day)] for day in {day_of(t) for t in backlog}) == 3
    vehicle_found = partitions_of(database_url, "vehicle.vehicle_readings")
    assert vehicle_found[DailyPartitions("vehicle", "vehicle_readings").name(day_of(old))] == 1


def test_the_service_makes_the_coming_days_at_start(database_url):
    """At start the maintenance loop makes yesterday, today and PARTITIONS_AHEAD_DAYS ahead."""
    today = day_of(time.time_ns() // 1000)
    meter = start_in_process("meter", database_url)
    try:
        partitions = DailyPartitions("meter", "meter_readings")
        wanted = {partitions.name(d) for d in range(today - 1, today + PARTITIONS_AHEAD_DAYS + 1)}
        deadline = time.monotonic() + 10
        while not wanted <= partitions_of(database_url, "meter.meter_readings").keys():
            assert time.monotonic() < deadline, "partitions ahead not made"
            time.sleep(0.05)
    finally:
        meter.running.shutdown(5)


def test_retention_refuses_older_readings_with_its_reason_and_keeps_the_rest(database_url):
    """RETENTION_DAYS=30: a reading 31 days old is rejected (index 1, naming the setting and
    the bound), the ones around it (now, 29 days old) are stored."""
    now = time.time_ns() // 1000
    meter = start_in_process("meter", database_url, retention_days=30)
    try:
        response = ingest_meters(
            meter.target,
            [
                meter_reading("CHG-RET", now - 29 * DAY_US),
                meter_reading("CHG-RET", now - 31 * DAY_US),
                meter_reading("CHG-RET", now - MINUTE),
            ],
        )
        with grpc.insecure_channel(meter.target) as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.IngestReading(
                    meter_service_pb2.IngestReadingRequest(
                        reading=meter_reading("CHG-RET", now - 31 * DAY_US)
                    ),
                    timeout=CALL_TIMEOUT,
                )
    finally:
        meter.running.shutdown(5)
    assert (response.accepted, response.rejected) == (2, 1)  # type: ignore[attr-defined]
    (rejection,) = response.rejections  # type: ignore[attr-defined]
    assert rejection.index == 1 and rejection.field == "timestamp"
    assert rejection.description.startswith(
        "must be at most 30 days old (RETENTION_DAYS: older readings are not kept), at or after "
    )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "RETENTION_DAYS" in str(refused.value.details())
    assert history_count(database_url, "meter.meter_readings") == 2


def test_retention_drops_exactly_the_expired_days(database_url, caplog):
    """Readings on 2026-01-01 … 2026-01-10 (one per day at noon); retention 5 days at
    2026-01-10T12:00Z: the cutoff is 2026-01-05T12:00Z, so whole days before 2026-01-05 (1 … 4)
    go, the 5th (partly inside) stays; a second run drops nothing. The run says so in its log
    line (at INFO, as the services log)."""
    caplog.set_level(logging.INFO, logger="services.common.maintenance")
    partitions = DailyPartitions("meter", "meter_readings")
    first = moment(2026, 1, 1, 12)
    with psycopg.connect(database_url, autocommit=True) as connection:
        partitions.ensure(connection, [day_of(first + k * DAY_US) for k in range(10)])
        for k in range(10):
            connection.execute(
                "INSERT INTO meter.meter_readings (meter_id, read_time, kwh_consumed_ac, voltage) "
                "VALUES ('CHG-R', timestamptz 'epoch' + %s * interval '1 microsecond', 1, 230)",
                (first + k * DAY_US,),
            )
            # A conflicting reading refused that day: it goes with the day's readings.
            connection.execute(
                "INSERT INTO meter.reading_conflicts (meter_id, read_time, sent) "
                "VALUES ('CHG-R', timestamptz 'epoch' + %s * interval '1 microsecond', '{}')",
                (first + k * DAY_US,),
            )
    maintenance = Maintenance(
        lambda: psycopg.connect(database_url),
        partitions,
        retention_days=5,
        interval_seconds=3600,
        name="meter",
    )
    run = maintenance.run_once(now_us=moment(2026, 1, 10, 12))
    assert run.dropped == [f"meter_readings_p2026010{d}" for d in range(1, 5)]
    assert run.created == [day_of(moment(2026, 1, d)) for d in range(11, 14)]
    (said,) = [r for r in caplog.records if r.getMessage() == "maintenance"]
    assert said.partitions_created == 3
    assert said.partitions_dropped == run.dropped
    assert maintenance.run_once(now_us=moment(2026, 1, 10, 12)).dropped == []
    with psycopg.connect(database_url) as connection:
        days = connection.execute(
            "SELECT to_char(read_time AT TIME ZONE 'UTC', 'DD') FROM meter.meter_readings "
            "ORDER BY read_time"
        ).fetchall()
    assert [d for (d,) in days] == ["05", "06", "07", "08", "09", "10"]
    with psycopg.connect(database_url) as connection:
        days = connection.execute(
            "SELECT to_char(read_time AT TIME ZONE 'UTC', 'DD') FROM meter.reading_conflicts "
            "ORDER BY read_time"
        ).fetchall()
    assert [d for (d,) in days] == ["05", "06", "07", "08", "09", "10"]


def test_a_second_replica_skips_a_maintenance_run_in_progress(database_url):
    partitions = DailyPartitions("meter", "meter_readings")
    maintenance = Maintenance(
        lambda: psycopg.connect(database_url),
        partitions,
        retention_days=0,
        interval_seconds=3600,
        name="meter",
    )
    import zlib

    key = zlib.crc32(b"maintenance meter.meter_readings")
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (key,))
        assert maintenance.run_once().ran is False
        other.execute("SELECT pg_advisory_unlock(%s)", (key,))
    assert maintenance.run_once().ran is True


def test_two_writers_making_the_same_day_at_once_make_it_once(database_url):
    """Eight threads (each its own connection and its own knowledge, as replicas) ensure the
    same 3 days at once: 3 partitions exist, made once each, and no thread failed."""
    days = [day_of(moment(2025, 6, d)) for d in (1, 2, 3)]
    created: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def make() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as connection:
                barrier.wait()
                created.extend(DailyPartitions("meter", "meter_readings").ensure(connection, days))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(created) == days
    names = partitions_of(database_url, "meter.meter_readings").keys()
    assert {
        "meter_readings_p20250601",
        "meter_readings_p20250602",
        "meter_readings_p20250603",
    } <= names


def test_a_day_dropped_behind_the_writers_back_is_made_again(meter_server):
    """A partition the service made and remembers is dropped by someone else (another replica's
    retention, an operator): the next reading of that day is still stored."""
    day = moment(2026, 4, 2)
    url = meter_server.database_url
    assert ingest_meters(meter_server.target, [meter_reading("CHG-D", day)]).accepted == 1  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            "ALTER TABLE meter.meter_readings DETACH PARTITION meter.meter_readings_p20260402"
        )
        connection.execute("DROP TABLE meter.meter_readings_p20260402")
    response = ingest_meters(meter_server.target, [meter_reading("CHG-D", day + MINUTE)])
    assert (response.accepted, response.rejected) == (1, 0)  # type: ignore[attr-defined]
    assert partitions_of(url, "meter.meter_readings")["meter_readings_p20260402"] == 1


@pytest.mark.parametrize(
    ("service", "before", "table", "insert"),
    [
        (
            "meter",
            "0004",
            "meter.meter_readings",
            "INSERT INTO meter.meter_readings (meter_id, read_time, kwh_consumed_ac, "
            "kwh_consumed_ac_register, voltage) VALUES (%s, %s, %s, NULL, 230)",
        ),
        (
            "vehicle",
            "0003",
            "vehicle.vehicle_readings",
            "INSERT INTO vehicle.vehicle_readings (vehicle_id, read_time, charger_id, soc, "
            "kwh_delivered_dc, battery_temp) VALUES (%s, %s, 'CHG-1', 50, %s, 20)",
        ),
    ],
)
def test_the_conversion_migration_keeps_every_row(
    empty_database_url, service, before, table, insert
):
    """An unpartitioned history of 3 ids x 3 days x 4 readings (36 rows, kWh k/4) is converted:
    3 partitions of 12 rows, the same 36 rows; downgraded, the same 36 rows in a plain table."""
    url = empty_database_url
    migrations.upgrade(service, url, before)
    rows = [
        (f"ID-{n}", datetime(2026, 5, 1 + d, 6 * h, tzinfo=UTC), (n * 12 + d * 4 + h) / 4)
        for n in range(3)
        for d in range(3)
        for h in range(4)
    ]
    with psycopg.connect(url) as connection:
        for row in rows:
            connection.execute(insert, row)
    key, energy = (
        ("meter_id", "kwh_consumed_ac")
        if service == "meter"
        else ("vehicle_id", "kwh_delivered_dc")
    )
    select = f"SELECT {key}, read_time, {energy} FROM {table} ORDER BY 1, 2"

    def stored() -> list[tuple[object, ...]]:
        with psycopg.connect(url) as connection:
            return connection.execute(select).fetchall()

    assert stored() == rows
    assert relkind(url, table) == "r"
    migrations.upgrade(service, url)
    assert relkind(url, table) == "p"
    name = table.split(".")[1]
    assert partitions_of(url, table) == {f"{name}_p2026050{d}": 12 for d in (1, 2, 3)}
    assert stored() == rows
    migrations.downgrade(service, url, before)
    assert relkind(url, table) == "r"  # a plain table again
    assert stored() == rows


def test_partitions_and_retention_on_the_embedded_postgresql(pg_dir: Path):
    """The same partition life cycle on the embedded server `make run` uses without a
    DATABASE_URL: migrate, make days on demand, drop them by retention (DETACH CONCURRENTLY)."""
    server = EmbeddedPostgres(pg_dir)
    url = server.start()
    try:
        migrations.upgrade("meter", url)
        partitions = DailyPartitions("meter", "meter_readings")
        with psycopg.connect(url, autocommit=True) as connection:
            made = partitions.ensure(connection, [day_of(moment(2026, 2, d)) for d in (1, 2)])
        assert made == [day_of(moment(2026, 2, 1)), day_of(moment(2026, 2, 2))]
        run = Maintenance(
            lambda: psycopg.connect(url),
            partitions,
            retention_days=1,
            interval_seconds=3600,
            name="meter",
        ).run_once(now_us=moment(2026, 2, 3, 12))
        assert run.dropped == ["meter_readings_p20260201"]
    finally:
        server.stop()
