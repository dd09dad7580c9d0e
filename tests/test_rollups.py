"""Hourly rollups of the meter readings on real PostgreSQL, against hand-computed sums: made by
the maintenance loop, equal to the readings under duplicates, conflicts, late and out-of-order
readings (a late register reading changes the next hour too), used by SummarizeConsumption for
whole hours (and the readings for the rest and for stale hours), kept ROLLUP_RETENTION_DAYS, and
made again when the reach changes. Energies are dyadic so sums compare exactly."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import grpc
import psycopg
import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc

from services.common.config import Settings
from services.common.maintenance import Maintenance, MaintenanceRun
from services.common.partitions import DailyPartitions
from services.common.timeconv import micros_to_timestamp as ts
from services.meter.component import rollups
from services.meter.kind import METER
from services.readings.repository import reading_table

MINUTE = 60_000_000
HOUR = 60 * MINUTE
H0 = int(datetime(2026, 2, 10, tzinfo=UTC).timestamp()) * 1_000_000  # 2026-02-10T00:00Z
LATER = H0 + 30 * 24 * HOUR  # "now" for the maintenance runs: every hour of the day settled


def at(hour: int, minute: int) -> int:
    return H0 + hour * HOUR + minute * MINUTE


def interval(meter_id: str, micros: int, kwh: float) -> meter_pb2.MeterReading:
    return meter_pb2.MeterReading(
        meter_id=meter_id, timestamp=ts(micros), kwh_consumed_ac=kwh, voltage=230.0
    )


def register(meter_id: str, micros: int, kwh: float) -> meter_pb2.MeterReading:
    return meter_pb2.MeterReading(
        meter_id=meter_id, timestamp=ts(micros), kwh_consumed_ac_register=kwh, voltage=230.0
    )


# M-R: interval energy. Hour 0: 0.25 + 0.5; hour 1: 0.25 (01:00) + 1.0; hour 2: 0.5.
INTERVALS = [
    interval("M-R", at(0, 30), 0.25),
    interval("M-R", at(0, 45), 0.5),
    interval("M-R", at(1, 0), 0.25),
    interval("M-R", at(1, 30), 1.0),
    interval("M-R", at(2, 15), 0.5),
]
# M-G: a register (reach 15 min). 00:50 100 has no previous: unknown. 01:05 110: 10; 01:20
# 111.5: 1.5; 01:35 1.0, a reset: 1.0; 02:40 3.0, 65 min after the previous: unknown.
REGISTERS = [
    register("M-G", at(1, 5), 110.0),  # sent out of order: the energies follow time, not arrival
    register("M-G", at(0, 50), 100.0),
    register("M-G", at(1, 20), 111.5),
    register("M-G", at(1, 35), 1.0),
    register("M-G", at(2, 40), 3.0),
]


def ingest(target: str, readings: list[meter_pb2.MeterReading]) -> object:
    with grpc.insecure_channel(target) as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        return stub.IngestReadings(
            iter([meter_service_pb2.IngestReadingsRequest(readings=readings)]), timeout=30
        )


def summarize(target: str, meter_id: str, start: int, end: int) -> tuple[float, int, int]:
    with grpc.insecure_channel(target) as channel:
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        answer = stub.SummarizeConsumption(
            meter_service_pb2.SummarizeConsumptionRequest(
                intervals=[{"charger_id": meter_id, "start_time": ts(start), "end_time": ts(end)}]
            ),
            timeout=30,
        )
    (found,) = answer.summaries
    return found.kwh_consumed_ac, found.reading_count, found.unknown_energy_count


def rollup_rows(url: str) -> dict[tuple[str, int], tuple[int, int, float]]:
    """(meter, hour index from H0) → (readings, unknown, kWh)."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT meter_id, round(date_part('epoch', hour) * 1000000)::int8, reading_count, "
            "unknown_energy_count, kwh_consumed_ac FROM meter.meter_rollups_hourly"
        ).fetchall()
    return {(m, (h - H0) // HOUR): (n, u, k) for m, h, n, u, k in rows}


def stale_hours(url: str) -> list[int]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT DISTINCT round(date_part('epoch', hour) * 1000000)::int8 FROM "
            "meter.rollup_invalidations ORDER BY 1"
        ).fetchall()
    return [(h - H0) // HOUR for (h,) in rows]


class SecondLoop(Maintenance):
    """A second maintenance loop on the same database, as another replica's would be; a run
    waits for the turn of the service's own loop (its run at start) to end."""

    def run_once(self, now_us: int | None = None) -> MaintenanceRun:
        deadline = time.monotonic() + 30
        while not (run := super().run_once(now_us)).ran:
            assert time.monotonic() < deadline, "the service's own maintenance run never ended"
            time.sleep(0.05)
        return run


def maintenance(url: str, **settings: object) -> Maintenance:
    configured = replace(Settings(database_url=url), **settings)  # type: ignore[arg-type]
    return SecondLoop(
        lambda: psycopg.connect(url),
        DailyPartitions("meter", "meter_readings"),
        rollups=rollups(configured),
        retention_days=configured.retention_days,
        interval_seconds=3600,
        name="meter",
    )


EXPECTED = {
    ("M-R", 0): (2, 0, 0.75),
    ("M-R", 1): (2, 0, 1.25),
    ("M-R", 2): (1, 0, 0.5),
    ("M-G", 0): (1, 1, 0.0),
    ("M-G", 1): (3, 0, 12.5),
    ("M-G", 2): (1, 1, 0.0),
}


def test_rollups_equal_the_readings_and_serve_whole_hours(meter_server):
    url, target = meter_server.database_url, meter_server.target
    ingest(target, INTERVALS + REGISTERS)
    run = maintenance(url).run_once(now_us=LATER)
    # Hours 0-2, and those a lookaround (30 min) before and after them: -1 and 3 (marked per
    # hour: a superset).
    assert run.rollups is not None and run.rollups.made_hours == 5
    assert rollup_rows(url) == EXPECTED
    assert stale_hours(url) == []
    # The whole day: every hour from the rollups. 00:40-02:50: 01:00-02:00 from them, 00:50
    # and 02:40 (both unknown) from the readings.
    assert summarize(target, "M-G", at(0, 0), at(3, 0)) == (12.5, 5, 2)
    assert summarize(target, "M-G", at(0, 40), at(2, 50)) == (12.5, 5, 2)
    assert summarize(target, "M-R", at(0, 0), at(3, 0)) == (2.5, 5, 0)
    # The rollups are what is read: a rollup changed by hand shows in the answer.
    with psycopg.connect(url) as connection:
        connection.execute(
            "UPDATE meter.meter_rollups_hourly SET kwh_consumed_ac = 1000 "
            "WHERE meter_id = 'M-R' AND hour = %s",
            (datetime.fromtimestamp(at(1, 0) / 1e6, UTC),),
        )
    assert summarize(target, "M-R", at(0, 0), at(3, 0)) == (1001.25, 5, 0)
    # An interval of no whole hour reads only the readings: 01:10-01:50 holds 01:30's 1.0.
    assert summarize(target, "M-R", at(1, 10), at(1, 50)) == (1.0, 1, 0)


def test_duplicates_and_conflicts_leave_the_rollups_alone(meter_server):
    url, target = meter_server.database_url, meter_server.target
    ingest(target, INTERVALS + REGISTERS)
    maintenance(url).run_once(now_us=LATER)
    resent = ingest(target, [INTERVALS[1], interval("M-R", at(1, 30), 2.0)])
    assert (resent.accepted, resent.duplicates, resent.conflicts) == (0, 1, 1)  # type: ignore[attr-defined]
    assert stale_hours(url) == []
    assert rollup_rows(url) == EXPECTED


def test_a_late_register_reading_changes_its_hour_and_the_next(meter_server):
    """00:58 105.0 arrives after the rollups were made: it takes 5.0 (from 00:50's 100) and
    leaves 01:05 only 5.0 (110 - 105). Hours 0 and 1 are marked stale, and hour -1 (a
    lookaround, 30 min, before hour 0: a reading's usual period is taken from the readings that
    near); until they are made again the answer comes from the readings, after it from the new
    rollups: hour 0 (2 readings, 1 unknown, 5.0), hour 1 (3, 0, 7.5)."""
    url, target = meter_server.database_url, meter_server.target
    ingest(target, INTERVALS + REGISTERS)
    loop = maintenance(url)
    loop.run_once(now_us=LATER)
    assert ingest(target, [register("M-G", at(0, 58), 105.0)]).accepted == 1  # type: ignore[attr-defined]
    assert stale_hours(url) == [-1, 0, 1]
    assert summarize(target, "M-G", at(0, 0), at(3, 0)) == (12.5, 6, 2)
    run = loop.run_once(now_us=LATER)
    assert run.rollups is not None and run.rollups.made_hours == 3
    assert stale_hours(url) == []
    rows = rollup_rows(url)
    assert rows[("M-G", 0)] == (2, 1, 5.0) and rows[("M-G", 1)] == (3, 0, 7.5)
    assert summarize(target, "M-G", at(0, 0), at(3, 0)) == (12.5, 6, 2)


def test_rollups_made_while_readings_keep_coming_miss_none(meter_server):
    """A thread sends 600 late interval readings (10 meters x 60 minutes of hours 0-9, 0.25 kWh
    each) in 60 messages while the maintenance loop runs again and again: once the readings
    are all in and one last run is done, every hour of every meter holds 6 readings and 1.5 kWh."""
    url, target = meter_server.database_url, meter_server.target
    loop = maintenance(url)
    sent = threading.Event()

    def send() -> None:
        for minute in range(0, 600, 10):
            ingest(
                target,
                [interval(f"M-C{m}", at(0, minute + m), 0.25) for m in range(10)],
            )
        sent.set()

    sender = threading.Thread(target=send)
    sender.start()
    while not sent.is_set():
        loop.run_once(now_us=LATER)
    sender.join()
    loop.run_once(now_us=LATER)
    rows = rollup_rows(url)
    assert {key: value for key, value in rows.items() if key[0].startswith("M-C")} == {
        (f"M-C{m}", hour): (6, 0, 1.5) for m in range(10) for hour in range(10)
    }


def test_rollups_older_than_their_retention_are_deleted_by_whole_days(meter_server):
    """Rollups of 2026-02-10 (3 hours of M-R) and 2026-02-11 (01:00); 400 days of rollup
    retention at 2027-03-18T12:00Z (400 days after 2026-02-11T12:00Z) cut at the start of
    2026-02-11, as the readings' partitions are cut: the 10th's 3 rollups go, the 11th's stays."""
    url, target = meter_server.database_url, meter_server.target
    ingest(target, [*INTERVALS, interval("M-R", at(25, 0), 0.25)])
    loop = maintenance(url, rollup_retention_days=400, retention_days=30)
    loop.run_once(now_us=LATER)
    assert len(rollup_rows(url)) == 4
    run = loop.run_once(now_us=at(36, 0) + 400 * 24 * HOUR)
    assert run.rollups is not None and run.rollups.expired_rows == 3
    assert set(rollup_rows(url)) == {("M-R", 25)}


def test_with_equal_retentions_every_kept_reading_is_counted(meter_server):
    """RETENTION_DAYS = ROLLUP_RETENTION_DAYS = 1 at 2026-02-12T05:30Z: the 10th's readings and
    rollups both go (whole days), the 11th's are all kept, its hours 00-03 included, and
    summed alike from either (1.0 kWh, 4 readings)."""
    url, target = meter_server.database_url, meter_server.target
    day_two = [interval("M-E", at(24 + k, 10), 0.25) for k in range(4)]
    ingest(target, [interval("M-E", at(1, 0), 0.25), *day_two])
    loop = maintenance(url)
    loop.run_once(now_us=LATER)
    SecondLoop(
        lambda: psycopg.connect(url),
        DailyPartitions("meter", "meter_readings"),
        rollups=rollups(
            replace(Settings(database_url=url), retention_days=1, rollup_retention_days=1)
        ),
        retention_days=1,
        interval_seconds=3600,
        name="meter",
    ).run_once(now_us=at(53, 30))
    assert summarize(target, "M-E", at(24, 0), at(48, 0)) == (1.0, 4, 0)
    assert summarize(target, "M-E", at(0, 0), at(48, 0)) == (1.0, 4, 0)


def test_a_new_reach_makes_every_rollup_again(meter_server):
    """With a reach of 90 minutes, 02:40's register is 65 minutes after 01:35's 1.0: 2.0."""
    url, target = meter_server.database_url, meter_server.target
    ingest(target, REGISTERS)
    maintenance(url).run_once(now_us=LATER)
    run = maintenance(url, max_reading_interval_seconds=5400.0).run_once(now_us=LATER)
    assert run.rollups is not None and run.rollups.reset
    assert rollup_rows(url)[("M-G", 2)] == (1, 0, 2.0)


@pytest.fixture
def meter_server(database_url):
    """MeterService whose own maintenance loop has run once (at start; the next is an hour
    away)."""
    from tests.conftest import start_in_process

    server = start_in_process("meter", database_url)
    deadline = time.monotonic() + 30
    with psycopg.connect(database_url, autocommit=True) as connection:
        # Its first run sets rolled_until (to an hour ago: every reading here is late).
        while connection.execute(
            "SELECT rolled_until IS NULL FROM meter.rollup_state"
        ).fetchone() != (False,):
            assert time.monotonic() < deadline, "the service's maintenance did not run at start"
            time.sleep(0.05)
    yield server
    server.running.shutdown(5)


def test_a_reading_written_while_its_hour_is_made_is_never_lost(meter_server):
    """The interleaving that would lose a reading, forced: hour 1 is marked; a write of 01:40
    (0.5 kWh) is in flight, not committed, when a run makes hour 1 without it. The write's own
    mark, committed after the run's delete, survives it; the next run makes hour 1 again: 01:00,
    01:10, 01:30 and 01:40, 1.75 kWh, and no mark left."""
    url, target = meter_server.database_url, meter_server.target
    ingest(target, INTERVALS)
    loop = maintenance(url)
    loop.run_once(now_us=LATER)
    # Marks hour 1, and the hours within the lookaround (30 min) on either side: 0 and 2.
    ingest(target, [interval("M-R", at(1, 10), 0.0)])
    assert stale_hours(url) == [0, 1, 2]
    table = reading_table(METER)
    row = ["M-R", at(1, 40), 0.5, None, 230.0, 0]
    rollups_of = rollups(Settings(database_url=url))
    with psycopg.connect(url) as writer:
        writer.execute(
            table.write_rows_sql.replace("$1", "%s").replace("$2", "%s"), (json.dumps([row]), 1)
        )
        made = threading.Thread(
            target=lambda: rollups_of.refresh(psycopg.connect(url, autocommit=True))
        )
        made.start()
        made.join(30)  # the run does not wait for the write: it made hour 1 without it
        assert not made.is_alive()
        assert rollup_rows(url)[("M-R", 1)] == (3, 0, 1.25)
        writer.commit()
    assert stale_hours(url) == [0, 1, 2]  # the write's marks, kept
    loop.run_once(now_us=LATER)
    assert stale_hours(url) == []
    assert rollup_rows(url)[("M-R", 1)] == (4, 0, 1.75)


def test_a_new_reach_keeps_the_rollups_of_days_whose_readings_are_gone(meter_server):
    """M-G's registers on 2026-02-10 and again on the 11th (02:40 → 26:40); the 10th's readings
    are dropped by retention at 2026-02-12T00:30Z (rollups kept 400 days). A new reach makes
    the 11th's rollups again (26:40 is now 65 min after 25:35: 2.0) and leaves the 10th's as
    they were (hour 1: 12.5; hour 2's 02:40 still unknown)."""
    url, target = meter_server.database_url, meter_server.target
    ingest(target, REGISTERS)
    ingest(
        target,
        [register("M-G", micros_of(r) + 24 * HOUR, r.kwh_consumed_ac_register) for r in REGISTERS],
    )
    settings = {"retention_days": 1, "rollup_retention_days": 400}
    maintenance(url, **settings).run_once(now_us=at(48, 30))
    assert rollup_rows(url)[("M-G", 1)] == (3, 0, 12.5)
    run = maintenance(url, max_reading_interval_seconds=5400.0, **settings).run_once(
        now_us=at(48, 30)
    )
    assert run.rollups is not None and run.rollups.reset
    rows = rollup_rows(url)
    assert rows[("M-G", 1)] == (3, 0, 12.5) and rows[("M-G", 2)] == (1, 1, 0.0)
    assert rows[("M-G", 26)] == (1, 0, 2.0)


def micros_of(reading: meter_pb2.MeterReading) -> int:
    return reading.timestamp.seconds * 1_000_000 + reading.timestamp.nanos // 1000
