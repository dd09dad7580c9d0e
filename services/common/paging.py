"""AIP-158 paging: page_size rules, opaque page tokens, and the short-lived cache of pages."""

from __future__ import annotations

import base64
import binascii
import collections
import json
import threading
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

from services.common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10000

Row = TypeVar("Row")


def page_limit(page_size: int) -> int:
    """0 → the default, above the maximum → clamped, negative → INVALID_ARGUMENT."""
    if page_size < 0:
        raise InvalidArgument([("page_size", "must not be negative")])
    if page_size == 0:
        return DEFAULT_PAGE_SIZE
    return min(page_size, MAX_PAGE_SIZE)


def encode_token(last_key: str) -> str:
    """The token names the last key of the page; clients must treat it as opaque."""
    payload = json.dumps({"after": last_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


# A token this service issues names one key (an id of at most 64 characters; keys of up to
# MAX_KEY_CHARS are honoured): anything longer than the longest token such a key can make was not
# issued here, and is refused before it is decoded. JSON writes a character in at most 12 ASCII
# characters (a surrogate pair, \ud83d\ude00), base64 makes 4 of every 3.
MAX_KEY_CHARS = 256
MAX_TOKEN_CHARS = 4 * -(-(12 * MAX_KEY_CHARS + len('{"after":""}')) // 3)
_NOT_ISSUED = "is not a token this service issued"


def _refuse() -> InvalidArgument:
    return InvalidArgument([("page_token", _NOT_ISSUED)])


def decode_token(token: str) -> str | None:
    """The key to resume after, None for the first page; INVALID_ARGUMENT when malformed.

    Whatever the content (deep nesting, NUL, lone surrogates, non-string keys, any size), a token
    is either a key the repositories can compare against or INVALID_ARGUMENT: never an error
    from the JSON parser or the database driver."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS:
        raise _refuse()
    try:
        padded = token + "=" * (-len(token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, RecursionError):
        # ValueError covers JSONDecodeError and Unicode{En,De}codeError.
        raise _refuse() from None
    if not isinstance(decoded, dict) or set(decoded) != {"after"}:
        raise _refuse()
    after = decoded["after"]
    if not isinstance(after, str) or not after or len(after) > MAX_KEY_CHARS or "\0" in after:
        raise _refuse()
    try:
        after.encode("utf-8")  # a lone surrogate has no UTF-8 form: PostgreSQL cannot take it
    except UnicodeEncodeError:
        raise _refuse() from None
    return after


def paginate(
    page_size: int,
    page_token: str,
    fetch: Callable[[str | None, int], list[Row]],
    key: Callable[[Row], str],
) -> tuple[list[Row], str]:
    """One keyset page and the token of the next (empty on the last page).

    fetch(after, limit) returns up to `limit` rows ordered by key, all after `after`.
    """
    limit = page_limit(page_size)
    # One extra row tells whether another page follows without a second query.
    rows = fetch(decode_token(page_token), limit + 1)
    if len(rows) <= limit:
        return rows, ""
    page = rows[:limit]
    return page, encode_token(key(page[-1]))


class PageCache:
    """Serialized pages of a listing, each kept at most `max_age` seconds (0: never kept),
    keyed by the request's (page_size, page_token); the `entries` most recently used are kept.

    One caller reads a page while the others asking for it wait for that read (single flight):
    ten dashboards polling all 10,000 statuses every second cost one read a second. A page's
    age counts from before its read began, so what it shows was committed at most `max_age`
    before it is served. A failed read is not kept; those who waited for it read themselves."""

    def __init__(
        self, max_age: float, entries: int = 32, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_age = max_age
        self._entries = entries
        self._clock = clock
        self._lock = threading.Lock()
        self._pages: collections.OrderedDict[Hashable, tuple[float, bytes]] = (
            collections.OrderedDict()
        )
        self._reads: dict[Hashable, threading.Event] = {}

    def get(self, key: Hashable, read: Callable[[], bytes]) -> bytes:
        """The page of `key`: kept, or read by `read` (its errors are raised). A page serves a
        call if its read began at most `max_age` before the call asked; a caller that waited
        for a read that failed, or that began too long before it asked (a read slower than
        `max_age`), waits for or makes the next one."""
        if self._max_age <= 0:
            return read()
        asked = self._clock()
        while True:
            with self._lock:
                kept = self._pages.get(key)
                if kept is not None and asked - kept[0] <= self._max_age:
                    self._pages.move_to_end(key)
                    return kept[1]
                running = self._reads.get(key)
                if running is None:
                    self._reads[key] = threading.Event()
                    break
            running.wait()
        started = self._clock()
        try:
            page = read()
            with self._lock:
                self._pages[key] = (started, page)
                self._pages.move_to_end(key)
                while len(self._pages) > self._entries:
                    self._pages.popitem(last=False)
            return page
        finally:
            with self._lock:
                self._reads.pop(key).set()
