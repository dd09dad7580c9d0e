"""AIP-158 paging: page_size rules and opaque page tokens."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
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


def decode_token(token: str) -> str | None:
    """The key to resume after, None for the first page; INVALID_ARGUMENT when malformed."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        after = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidArgument([("page_token", "is not a token this service issued")]) from None
    if not isinstance(after, str):
        raise InvalidArgument([("page_token", "is not a token this service issued")])
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
