"""Refuse to acknowledge what a crash could lose: an ack is only a promise if the commit it
follows is flushed to disk, which `synchronous_commit = off` or `fsync = off` break."""

from __future__ import annotations

from collections.abc import Callable

from services.common.errors import Unavailable

UNSAFE = {"synchronous_commit": "off", "fsync": "off"}


def durability_problem(show: Callable[[str], str]) -> str | None:
    """Why acknowledged data could be lost on this connection, or None. `show(name)` returns a
    setting as SHOW prints it."""
    for setting, unsafe in UNSAFE.items():
        if show(setting).lower() == unsafe:
            return (
                f"PostgreSQL runs with {setting} = {unsafe}: a crash could lose readings that "
                "were already acknowledged. Turn it on, or set ALLOW_UNSAFE_COMMIT=1 to accept "
                "that."
            )
    return None


class UnsafeDatabase(Unavailable):
    """The writers refuse a database that could lose acknowledged readings."""
