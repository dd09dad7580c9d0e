"""PageCache: a page is read once per max_age whoever asks, one read at a time per page, a failed
read is never kept, and only the most recently used pages stay."""

from __future__ import annotations

import threading
import time

from services.common.paging import PageCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Reads:
    """A read that counts its calls and returns b"page-N" for the Nth."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> bytes:
        self.count += 1
        return f"page-{self.count}".encode()


def test_a_page_is_kept_for_max_age_then_read_again():
    clock, read = Clock(), Reads()
    cache = PageCache(1.0, clock=clock)
    assert cache.get((10, ""), read) == b"page-1"
    clock.now += 1.0  # exactly max_age old: still served
    assert cache.get((10, ""), read) == b"page-1"
    clock.now += 0.001
    assert cache.get((10, ""), read) == b"page-2"
    assert read.count == 2


def test_the_age_counts_from_before_the_read_began():
    """A read that takes 0.7 s leaves a page 0.7 s old: with max_age 1 s it serves 0.3 s more."""
    clock = Clock()
    cache = PageCache(1.0, clock=clock)

    def slow_read() -> bytes:
        clock.now += 0.7
        return b"slow"

    assert cache.get("k", slow_read) == b"slow"
    clock.now += 0.3
    assert cache.get("k", Reads()) == b"slow"
    clock.now += 0.01
    assert cache.get("k", Reads()) == b"page-1"


def test_other_requests_are_other_pages():
    read = Reads()
    cache = PageCache(1.0, clock=Clock())
    assert [cache.get(key, read) for key in [(10, ""), (20, ""), (10, "t"), (10, "")]] == [
        b"page-1",
        b"page-2",
        b"page-3",
        b"page-1",
    ]


def test_max_age_zero_reads_every_time():
    read = Reads()
    cache = PageCache(0, clock=Clock())
    assert [cache.get("k", read) for _ in range(3)] == [b"page-1", b"page-2", b"page-3"]


def test_only_the_most_recently_used_pages_stay():
    read = Reads()
    cache = PageCache(60, entries=2, clock=Clock())
    cache.get("a", read)  # page-1
    cache.get("b", read)  # page-2
    cache.get("a", read)  # kept: a is now the most recent
    cache.get("c", read)  # page-3: b goes
    assert cache.get("a", read) == b"page-1"
    assert cache.get("b", read) == b"page-4"
    assert read.count == 4


def test_callers_asking_during_a_read_wait_for_it_and_share_it():
    cache = PageCache(60, clock=Clock())
    started, release = threading.Event(), threading.Event()
    reads = []

    def blocking_read() -> bytes:
        reads.append(1)
        started.set()
        assert release.wait(10)
        return b"shared"

    results: list[bytes] = []
    first = threading.Thread(target=lambda: results.append(cache.get("k", blocking_read)))
    first.start()
    assert started.wait(10)
    others = [
        threading.Thread(target=lambda: results.append(cache.get("k", blocking_read)))
        for _ in range(5)
    ]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert results == [b"shared"] * 6
    assert len(reads) == 1


def test_a_failed_read_is_not_kept_and_a_waiter_makes_the_next_read():
    cache = PageCache(60, clock=Clock())
    started, release = threading.Event(), threading.Event()

    def failing_read() -> bytes:
        started.set()
        assert release.wait(10)
        raise ValueError("the database went away")

    errors: list[Exception] = []

    def first_caller() -> None:
        try:
            cache.get("k", failing_read)
        except ValueError as error:
            errors.append(error)

    first = threading.Thread(target=first_caller)
    first.start()
    assert started.wait(10)
    waiter_read = Reads()
    waited: list[bytes] = []
    waiter = threading.Thread(target=lambda: waited.append(cache.get("k", waiter_read)))
    waiter.start()
    release.set()
    first.join(10)
    waiter.join(10)
    assert [str(e) for e in errors] == ["the database went away"]
    assert waited == [b"page-1"] and waiter_read.count == 1
    # The waiter's read is the one kept: the next caller is served from it.
    later = Reads()
    assert cache.get("k", later) == b"page-1"
    assert later.count == 0


def test_a_read_slower_than_max_age_serves_those_who_asked_within_max_age_of_its_start():
    """max_age 1 s, a read of 3 s: a caller asking 0.5 s into it takes its page; one asking
    2 s into it (the page would miss 1 s of commits for it) waits and makes the next read, which
    a third caller, asking meanwhile, shares: two reads in all, not one per caller."""
    clock = Clock()
    cache = PageCache(1.0, clock=clock)
    gates = [threading.Event(), threading.Event()]
    began = [threading.Event(), threading.Event()]
    reads: list[int] = []

    def read() -> bytes:
        number = len(reads)
        reads.append(number)
        began[number].set()
        assert gates[number].wait(10)
        return f"read-{number}".encode()

    results: dict[str, bytes] = {}

    def caller(name: str) -> threading.Thread:
        thread = threading.Thread(target=lambda: results.__setitem__(name, cache.get("k", read)))
        thread.start()
        return thread

    first = caller("first")  # asks at 100.0, reads
    assert began[0].wait(10)
    clock.now = 100.5
    within = caller("within")
    clock.now = 102.0
    late = caller("late")
    time.sleep(0.1)  # both wait for the first read
    clock.now = 103.0
    gates[0].set()  # the first read ends: started at 100.0
    first.join(10)
    within.join(10)
    assert began[1].wait(10)  # "late" asked at 102.0 > 100.0 + 1: it reads again
    clock.now = 103.2
    third = caller("third")  # asks during the second read, which began at 103.0
    time.sleep(0.1)
    gates[1].set()
    late.join(10)
    third.join(10)
    assert results == {
        "first": b"read-0",
        "within": b"read-0",
        "late": b"read-1",
        "third": b"read-1",
    }
    assert reads == [0, 1]
