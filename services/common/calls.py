"""The gRPC call a worker thread is serving, so that the SQL layer can bound a read by the
call's deadline and cancel it when the call ends, without gRPC types in every signature.

translate_errors (errors.py) binds the servicer context for the duration of a handler; the
sync grpc.server runs one handler per worker thread, so a thread-local is exact."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class Call(Protocol):
    """What reads need of grpc.ServicerContext."""

    def is_active(self) -> bool: ...

    def time_remaining(self) -> float | None: ...

    def add_callback(self, callback: Callable[[], None]) -> bool: ...


_local = threading.local()


def current() -> Call | None:
    """The call this thread serves, None outside one (tools, the benchmark, direct use)."""
    return getattr(_local, "call", None)


@contextmanager
def serving(call: Call) -> Iterator[None]:
    previous = current()
    _local.call = call
    try:
        yield
    finally:
        _local.call = previous
