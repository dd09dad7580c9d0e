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
