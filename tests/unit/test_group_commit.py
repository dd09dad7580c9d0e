"""Group commit without a database: what a call's Ticket waits for and what a failed commit tells
it, the writers' bounded queue (what blocks, what times out, what a close releases), and how
rows are routed to writers. Writers whose connection cannot be made stand for a failed commit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from services.common.errors import ResourceExhausted, Unavailable
from services.common.group_commit import (
    GroupCommitWriters,
    ReadingTable,
    Ticket,
    _BoundedQueue,
    _json_rows,
    _Part,
)

# Never executed: the writers of these tests fail to connect before any SQL.
TABLE = ReadingTable(staging_ddl="", copy_sql="", copy_types=(), write_sql="")


def in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Runs target in a daemon thread; the list receives its result or the exception it raised."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(target())
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def rows(count: int, entity: object = "CHG-1") -> list[tuple[object, ...]]:
    return [(entity, micros, 1.0, 230.0) for micros in range(count)]


# --- Ticket ---------------------------------------------------------------------------------


def test_a_ticket_without_parts_does_not_wait():
    ticket = Ticket()
    ticket.wait()
    assert (ticket.accepted, ticket.duplicates) == (0, 0)


def test_a_ticket_waits_for_every_part_and_sums_their_counts():
    ticket = Ticket()
    ticket._add_part()
    ticket._add_part()
    waiter, outcome = in_thread(ticket.wait)
    ticket._settle(3, 1)
    waiter.join(0.2)
    assert waiter.is_alive(), "answered before its second part was committed"
    ticket._settle(2, 0)
    waiter.join(5)
    assert not waiter.is_alive()
    assert outcome == [None]
    # 3 + 2 accepted, 1 + 0 duplicates
    assert (ticket.accepted, ticket.duplicates) == (5, 1)


def test_a_failed_part_is_raised_once_every_part_is_settled():
    ticket = Ticket()
    ticket._add_part()
    ticket._add_part()
    failure = Unavailable("database unavailable: gone")
    ticket._settle(0, 0, failure)
    waiter, outcome = in_thread(ticket.wait)
    waiter.join(0.2)
    assert waiter.is_alive(), "raised before the other part was settled"
    ticket._settle(4, 0)
    waiter.join(5)
    assert outcome == [failure]
    # What the other part committed stays counted: the caller may report it.
    assert ticket.accepted == 4


def test_the_first_failure_of_a_ticket_is_the_one_raised():
    ticket = Ticket()
    for _ in range(2):
        ticket._add_part()
    first, second = RuntimeError("first"), RuntimeError("second")
    ticket._settle(0, 0, first)
    ticket._settle(0, 0, second)
    with pytest.raises(RuntimeError) as raised:
        ticket.wait()
    assert raised.value is first
    # Raised once, then let go (no ticket -> error -> traceback -> frame -> ticket cycle).
    assert ticket.error is None


# --- the bounded queue ----------------------------------------------------------------------


def test_an_empty_queue_admits_a_part_larger_than_its_capacity():
    queue = _BoundedQueue(capacity=10)
    assert queue.put(_Part(rows(25), Ticket()), timeout=0)
    assert [len(part.rows) for part in queue.take_batch(100, linger=0)] == [25]


def test_a_put_beyond_capacity_times_out():
    queue = _BoundedQueue(capacity=10)
    assert queue.put(_Part(rows(8), Ticket()), timeout=0)
    started = time.monotonic()
    # 8 queued + 3 = 11 > 10: no room, refused once the timeout has passed
    assert not queue.put(_Part(rows(3), Ticket()), timeout=0.2)
    assert time.monotonic() - started >= 0.2
    # Exactly at capacity still fits: 8 + 2 = 10.
    assert queue.put(_Part(rows(2), Ticket()), timeout=0)


def test_a_blocked_put_goes_in_as_soon_as_a_batch_makes_room():
    queue = _BoundedQueue(capacity=10)
    assert queue.put(_Part(rows(8), Ticket()), timeout=0)
    putter, outcome = in_thread(lambda: queue.put(_Part(rows(5), Ticket()), timeout=10))
    putter.join(0.2)
    assert putter.is_alive(), "8 + 5 readings exceed a capacity of 10: the put must wait"
    assert [len(part.rows) for part in queue.take_batch(100, linger=0)] == [8]
    putter.join(5)
    assert outcome == [True]
    assert [len(part.rows) for part in queue.take_batch(100, linger=0)] == [5]


def test_closing_the_queue_releases_a_blocked_put_at_once_refused():
    queue = _BoundedQueue(capacity=10)
    assert queue.put(_Part(rows(10), Ticket()), timeout=0)
    putter, outcome = in_thread(lambda: queue.put(_Part(rows(1), Ticket()), timeout=30))
    putter.join(0.2)
    assert putter.is_alive()
    started = time.monotonic()
    queue.close()
    putter.join(5)
    assert outcome == [False]
    assert time.monotonic() - started < 2, "a close must not wait out the 30 s timeout"


def test_a_batch_takes_whole_parts_up_to_its_size_and_always_the_first():
    queue = _BoundedQueue(capacity=1000)
    for size in (6, 3, 2, 4):
        assert queue.put(_Part(rows(size), Ticket()), timeout=0)
    # 6 + 3 = 9 <= 10, 9 + 2 = 11 > 10: the batch stops before the third part.
    assert [len(part.rows) for part in queue.take_batch(10, linger=0)] == [6, 3]
    # A first part larger than the batch size still goes, alone: 2 > 1, and 2 + 4 > 1 stops.
    assert [len(part.rows) for part in queue.take_batch(1, linger=0)] == [2]
    assert [len(part.rows) for part in queue.take_batch(10, linger=0)] == [4]


def test_a_partial_batch_lingers_for_more_parts_then_goes():
    queue = _BoundedQueue(capacity=1000)
    assert queue.put(_Part(rows(1), Ticket()), timeout=0)
    taker, outcome = in_thread(lambda: queue.take_batch(10, linger=0.5))
    time.sleep(0.1)
    assert queue.put(_Part(rows(2), Ticket()), timeout=0)
    taker.join(5)
    [batch] = outcome
    assert [len(part.rows) for part in batch] == [1, 2]  # type: ignore[attr-defined]


def test_a_full_batch_does_not_wait_out_the_linger():
    queue = _BoundedQueue(capacity=1000)
    assert queue.put(_Part(rows(10), Ticket()), timeout=0)
    started = time.monotonic()
    assert [len(part.rows) for part in queue.take_batch(10, linger=30)] == [10]
    assert time.monotonic() - started < 2


def test_a_closed_queue_hands_out_what_it_holds_then_nothing():
    queue = _BoundedQueue(capacity=1000)
    assert queue.put(_Part(rows(3), Ticket()), timeout=0)
    queue.close()
    started = time.monotonic()
    assert [len(part.rows) for part in queue.take_batch(10, linger=30)] == [3]
    assert queue.take_batch(10, linger=30) == []
    assert time.monotonic() - started < 2, "a closed queue must not linger"


def test_a_closed_empty_queue_refuses_a_part():
    # Closed before the put: nothing would ever take the part, so it must not go in.
    queue = _BoundedQueue(capacity=1000)
    queue.close()
    assert not queue.put(_Part(rows(1), Ticket()), timeout=5)
    assert queue.take_batch(10, linger=0) == []


def test_a_writer_closed_between_the_check_and_the_put_is_unavailable():
    # The race of a call arriving during shutdown: the writers' closed check passes, then the
    # queue closes before the part is put. The call must be told, not left waiting forever.
    group = writers(no_connection)
    (writer,) = group._writers
    put = writer.queue.put

    def close_then_put(part: _Part, timeout: float) -> bool:
        writer.queue.close()
        return put(part, timeout)

    writer.queue.put = close_then_put  # type: ignore[method-assign]
    ticket = Ticket()
    with pytest.raises(Unavailable, match="shutting down"):
        group.submit(rows(1), ticket)
    waiter, outcome = in_thread(ticket.wait)
    waiter.join(5)
    assert outcome == [None]


# --- the writers ----------------------------------------------------------------------------


def writers(connect: Callable[[], psycopg.Connection], **overrides: float) -> GroupCommitWriters:
    settings: dict[str, float] = {
        "count": 1,
        "batch_size": 100,
        "flush_seconds": 0.001,
        "queue_readings": 1000,
        "enqueue_timeout": 5,
    }
    settings.update(overrides)
    return GroupCommitWriters(
        TABLE,
        connect,
        count=int(settings["count"]),
        batch_size=int(settings["batch_size"]),
        flush_seconds=settings["flush_seconds"],
        queue_readings=int(settings["queue_readings"]),
        enqueue_timeout=settings["enqueue_timeout"],
        name="unit",
    )


def no_connection() -> psycopg.Connection:
    raise AssertionError("these writers are never started")


def test_submitting_no_rows_adds_nothing_to_wait_for():
    ticket = Ticket()
    writers(no_connection).submit([], ticket)
    ticket.wait()
    assert ticket.accepted == 0


def test_rows_go_to_the_writer_their_entity_hashes_to():
    # hash(n) == n for small ints: with 2 writers, even entities go to writer 0, odd to 1.
    group = writers(no_connection, count=2)
    ticket = Ticket()
    group.submit([(0, 1), (1, 1), (2, 1), (1, 2)], ticket)
    first, second = (writer.queue.take_batch(100, linger=0) for writer in group._writers)
    assert [part.rows for part in first] == [[(0, 1), (2, 1)]]
    assert [part.rows for part in second] == [[(1, 1), (1, 2)]]
    assert first[0].ticket is second[0].ticket is ticket


def test_a_full_queue_past_the_enqueue_timeout_is_resource_exhausted_and_settles_the_part():
    group = writers(no_connection, queue_readings=2, enqueue_timeout=0.1)
    group.submit(rows(2), Ticket())
    late = Ticket()
    with pytest.raises(ResourceExhausted):
        group.submit(rows(1), late)
    # The refused part is settled (not left outstanding): waiting returns at once, no error.
    waiter, outcome = in_thread(late.wait)
    waiter.join(5)
    assert outcome == [None]


def test_submitting_to_a_closed_writer_is_unavailable():
    group = writers(no_connection)
    for writer in group._writers:
        writer.queue.close()
    ticket = Ticket()
    with pytest.raises(Unavailable, match="shutting down"):
        group.submit(rows(1), ticket)
    ticket.wait()  # nothing was handed over, nothing to wait for


@pytest.mark.parametrize(
    ("failure", "raised", "message"),
    [
        (RuntimeError("no database here"), RuntimeError, "no database here"),
        (
            psycopg.OperationalError("connection refused"),
            Unavailable,
            "database unavailable: connection refused",
        ),
    ],
    ids=["a bug", "database unavailable"],
)
def test_a_failed_commit_fails_every_ticket_of_its_batch(failure, raised, message):
    def connect() -> psycopg.Connection:
        raise failure

    # A long linger gathers both calls into one batch.
    group = writers(connect, flush_seconds=0.3)
    tickets = [Ticket(), Ticket()]
    group.start()
    try:
        group.submit(rows(3, "CHG-1"), tickets[0])
        group.submit(rows(2, "CHG-1"), tickets[1])
        waiters = [in_thread(ticket.wait) for ticket in tickets]
        for thread, _ in waiters:
            thread.join(10)
        for (_, outcome), ticket in zip(waiters, tickets, strict=True):
            [error] = outcome
            assert isinstance(error, raised)
            assert str(error) == message
            assert (ticket.accepted, ticket.duplicates) == (0, 0)
    finally:
        group.stop(5)


def test_a_lingering_batch_whose_parts_a_caller_took_waits_for_the_next_part():
    """A unary caller's commit_now may take every queued part while the writer lingers: the
    writer then waits for the next part instead of ending (an empty batch means closed)."""
    queue = _BoundedQueue(100)
    assert queue.put(_Part(rows(3), Ticket()), timeout=0)
    taker, outcome = in_thread(lambda: queue.take_batch(10, linger=0.3))
    time.sleep(0.05)
    assert [len(part.rows) for part in queue.take_ready(10)] == [3]  # the caller's commit_now
    time.sleep(0.5)  # the linger is over: the writer must still be waiting
    assert taker.is_alive() and outcome == []
    assert queue.put(_Part(rows(4), Ticket()), timeout=0)
    taker.join(5)
    (batch,) = outcome
    assert isinstance(batch, list) and [len(part.rows) for part in batch] == [4]


@pytest.mark.parametrize(
    ("values", "as_json"),
    [
        ((0.25, None, 230.0), b'[["CHG-1",60,0.25,null,230.0,0]]'),
        ((-0.01, -0.0001, -1e-05), b'[["CHG-1",60,-0.01,-0.0001,-1e-05,0]]'),
        ((-0.0, None, 230.0), None),
        ((0.25, None, -0.0), None),
    ],
    ids=["plain", "small negatives", "negative zero", "negative zero last"],
)
def test_a_batch_goes_as_json_unless_it_holds_a_negative_zero(values, as_json):
    assert _json_rows([("CHG-1", 60, *values, 0)]) == as_json
