"""Group commit on a real PostgreSQL: the two forms of a batch's write (JSON rows to a
prepared statement up to PREPARED_BATCH_READINGS readings, COPY into the staging table above)
store and tell the same things, and a caller that will wait commits in its own thread when the
writer is idle, or queues for the writer's thread when a commit is running."""

from __future__ import annotations

import psycopg
import pytest

from services.common.database import connect
from services.common.group_commit import (
    PREPARED_BATCH_READINGS,
    GroupCommitWriters,
    Row,
    Ticket,
)
from services.meter.repository import READINGS_TABLE

BASE_US = 1_770_681_600_000_000  # 2026-02-10T00:00:00Z
MINUTE_US = 60_000_000


def meter_writers(database_url: str, *, batch_size: int = 50_000) -> GroupCommitWriters:
    return GroupCommitWriters(
        READINGS_TABLE,
        lambda: connect(database_url, connect_timeout=5, name="test-writer"),
        count=1,
        batch_size=batch_size,
        flush_seconds=0,
        queue_readings=200_000,
        enqueue_timeout=5,
        name="test",
    )


def meter_row(
    charger: str, minute: int, kwh: float | None, register: float | None, index: int
) -> Row:
    """(meter_id, micros, kwh_consumed_ac, kwh_consumed_ac_register, voltage, position): the
    meter kind's column order."""
    return (charger, BASE_US + minute * MINUTE_US, kwh, register, 230.0, index)


def history(database_url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT meter_id, read_time, kwh_consumed_ac, kwh_consumed_ac_register, voltage "
            "FROM meter.meter_readings ORDER BY meter_id, read_time"
        ).fetchall()


def statuses(database_url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT meter_id, read_time, kwh_consumed_ac, kwh_consumed_ac_register "
            "FROM meter.charger_status ORDER BY meter_id"
        ).fetchall()


def write(writers: GroupCommitWriters, rows: list[Row]) -> Ticket:
    ticket = Ticket()
    writers.submit(rows, ticket)
    ticket.wait()
    return ticket


@pytest.mark.parametrize("chargers", [3, 400], ids=["prepared", "copy"])
def test_both_write_forms_store_and_tell_the_same(database_url, chargers):
    """A first batch of 3 readings per charger; then a second batch with, per charger, one
    reading resent as it was (duplicate), one resent with another value (conflict), a new one
    sent twice with other values (the first stored, the second a conflict) and one with only
    a register (no interval energy: NULL). 3 chargers: 15 readings, the prepared statement; 400:
    2,000, COPY."""
    second_size = 5 * chargers
    assert (second_size <= PREPARED_BATCH_READINGS) == (chargers == 3)
    writers = meter_writers(database_url)
    writers.start()
    try:
        ids = [f"CHG-{n:03d}" for n in range(chargers)]
        first = [
            meter_row(charger, minute, 0.25, None, index)
            for index, (charger, minute) in enumerate(
                (charger, minute) for charger in ids for minute in range(3)
            )
        ]
        ticket = write(writers, first)
        assert (ticket.accepted, ticket.duplicates, ticket.conflict_count) == (3 * chargers, 0, 0)

        second: list[Row] = []
        for charger in ids:
            second += [
                meter_row(charger, 0, 0.25, None, len(second)),  # as stored: duplicate
                meter_row(charger, 1, 0.5, None, len(second) + 1),  # other value: conflict
                meter_row(charger, 10, 1.0, None, len(second) + 2),  # new: stored
                meter_row(charger, 10, 2.0, None, len(second) + 3),  # same key again: conflict
            ]
        register_only = [
            meter_row(charger, 11, None, 100.0 + n, len(second) + n)
            for n, charger in enumerate(ids)
        ]
        ticket = write(writers, second + register_only)
        assert (ticket.accepted, ticket.duplicates, ticket.conflict_count) == (
            2 * chargers,
            chargers,
            2 * chargers,
        )
        # Conflicts with stored readings are told first, then those within the batch; the
        # first 100 are listed: with 3 chargers all 6, with 400 only the first kind.
        against_stored = (
            "kwh_consumed_ac",
            "stored with other values, not stored (first write wins): "
            "kwh_consumed_ac stored 0.25, sent 0.5",
        )
        within_batch = (
            "kwh_consumed_ac",
            "stored with other values, not stored (first write wins): "
            "kwh_consumed_ac stored 1, sent 2",
        )
        listed = [(c.field, c.description) for c in ticket.conflicts]
        if chargers == 3:
            assert listed == [against_stored] * 3 + [within_batch] * 3
        else:
            assert listed == [against_stored] * 100
    finally:
        writers.stop()

    stored = history(database_url)
    assert len(stored) == 5 * chargers
    per_charger = [row[1:] for row in stored if row[0] == "CHG-000"]
    assert [(value, register) for _, value, register, _ in per_charger] == [
        (0.25, None),
        (0.25, None),
        (0.25, None),
        (1.0, None),
        (None, 100.0),
    ]
    newest = statuses(database_url)
    assert len(newest) == chargers
    assert newest[1][2:] == (None, 101.0)  # CHG-001's register-only reading at minute 11


def test_a_waiting_caller_commits_in_its_own_thread_when_the_writer_is_idle(database_url):
    """The writers' thread is never started: a caller that leads (a unary call) still gets its
    reading committed, in its own thread."""
    writers = meter_writers(database_url)
    ticket = Ticket()
    writers.submit([meter_row("CHG-LEAD", 1, 0.5, None, 0)], ticket, lead=True)
    ticket.wait()
    assert (ticket.accepted, ticket.duplicates) == (1, 0)
    assert [row[0] for row in history(database_url)] == ["CHG-LEAD"]
    writers.stop()


def test_a_waiting_caller_queues_while_a_commit_runs_and_the_writer_commits_it(database_url):
    """While a commit holds the writer, a leading caller's reading queues (nothing stored yet);
    once the commit is over, the writer's thread commits it with what else queued."""
    writers = meter_writers(database_url)
    writer = writers._writers[0]
    first, second = Ticket(), Ticket()
    with writer._committing:  # a commit is running
        writers.submit([meter_row("CHG-Q", 1, 0.5, None, 0)], first, lead=True)
        writers.submit([meter_row("CHG-Q", 2, 0.5, None, 0)], second, lead=True)
        assert history(database_url) == []
        writers.start()
    first.wait()
    second.wait()
    assert (first.accepted, second.accepted) == (1, 1)
    assert len(history(database_url)) == 2
    writers.stop()


EXTREMES = [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1 + 0.2, -0.0001]


@pytest.mark.parametrize(
    ("chargers", "values"),
    [(1, EXTREMES), (1, [*EXTREMES, -0.0]), (300, [*EXTREMES, -0.0])],
    ids=["prepared", "small-with-negative-zero", "copy"],
)
def test_both_write_forms_store_every_float_exactly_as_sent(database_url, chargers, values):
    """Subnormals, the largest double and sums keep their bits in either form; -0.0 keeps its
    sign (jsonb's numeric has none: a small batch holding it goes by COPY). 300 chargers x 6
    readings = 1,800: COPY."""
    writers = meter_writers(database_url)
    writers.start()
    try:
        sent = [
            meter_row(f"CHG-F{n:03d}", minute, value, None, len(values) * n + minute)
            for n in range(chargers)
            for minute, value in enumerate(values)
        ]
        assert (len(sent) <= PREPARED_BATCH_READINGS) == (chargers == 1)
        assert write(writers, sent).accepted == len(sent)
    finally:
        writers.stop()
    stored = [row[2] for row in history(database_url) if row[0] == "CHG-F000"]
    assert [float(str(value)).hex() for value in stored] == [value.hex() for value in values]
