"""Paging: page_size rules, page tokens (what decodes, what is refused, whatever the content)
and the keyset page cut. Malformed tokens are INVALID_ARGUMENT naming page_token: never an error
from the JSON parser (deep nesting), nor from PostgreSQL (NUL, lone surrogates) after decoding."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import paging
from services.common.errors import InvalidArgument


def wrap(raw: bytes) -> str:
    """base64url without padding, as the service writes its tokens."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def wrap_json(text: str) -> str:
    return wrap(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    ("page_size", "limit"),
    [
        (0, 1000),  # unset: the default
        (1, 1),
        (50, 50),
        (10_000, 10_000),  # the maximum itself
        (10_001, 10_000),  # clamped
        (10**6, 10_000),
    ],
)
def test_page_size_zero_is_the_default_and_large_ones_are_clamped(page_size, limit):
    assert paging.page_limit(page_size) == limit


@pytest.mark.parametrize("page_size", [-1, -(2**31)])
def test_negative_page_size_is_invalid_argument_naming_page_size(page_size):
    with pytest.raises(InvalidArgument) as refused:
        paging.page_limit(page_size)
    assert [field for field, _ in refused.value.violations] == ["page_size"]


def test_a_token_is_unpadded_base64url_json_naming_the_last_key():
    # base64 of '{"after":"CHG-1"}' (17 bytes) is "eyJhZnRlciI6IkNIRy0xIn0=", one "=" dropped.
    assert paging.encode_token("CHG-1") == "eyJhZnRlciI6IkNIRy0xIn0"
    assert paging.decode_token("eyJhZnRlciI6IkNIRy0xIn0") == "CHG-1"


def test_page_tokens_round_trip_and_reject_garbage():
    assert paging.decode_token(paging.encode_token("CHG-é:1")) == "CHG-é:1"
    assert paging.decode_token("") is None
    for garbage in ("%%%", "bm90IGpzb24", paging.encode_token("x")[:-2] + "!!"):
        with pytest.raises(InvalidArgument):
            paging.decode_token(garbage)


def test_keys_up_to_256_characters_decode_and_longer_ones_are_refused():
    assert paging.decode_token(wrap_json('{"after":"' + "k" * 256 + '"}')) == "k" * 256
    with pytest.raises(InvalidArgument) as refused:
        paging.decode_token(wrap_json('{"after":"' + "k" * 257 + '"}'))
    assert refused.value.violations == [("page_token", "is not a token this service issued")]


# Tokens that decode (base64, then JSON) yet were never issued, and the content that broke
# decoding or the database before: NUL, a lone surrogate, 100,000 nested brackets.
MALFORMED = [
    wrap_json('{"after":"CHG\\u0000-1"}'),
    wrap_json('{"after":"\\ud800"}'),
    wrap_json('{"after":"\\udfff x"}'),
    wrap_json("[" * 100_000),
    wrap_json('{"after":' + "[" * 100_000 + "]" * 100_000 + "}"),
    wrap_json('{"after":"' + "x" * 100_000 + '"}'),
    wrap_json('{"after":""}'),
    wrap_json('{"after":5}'),
    wrap_json('{"after":null}'),
    wrap_json('{"after":["x"]}'),
    wrap_json('{"after":"x","more":1}'),
    wrap_json('"after"'),
    wrap_json("[]"),
    wrap_json("{}"),
    wrap(b"\xff\xfe\x00"),
    "x" * 2_000_000,
    "\x00",
    "%%%",
]


@pytest.mark.parametrize("token", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        paging.decode_token(token)
    assert [field for field, _ in caught.value.violations] == ["page_token"]


def _json_values() -> st.SearchStrategy[object]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    )


tokens = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=300).map(wrap),
    _json_values().map(lambda value: wrap_json(json.dumps(value))),
    st.dictionaries(st.sampled_from(["after", "x"]), _json_values(), max_size=2).map(
        lambda value: wrap_json(json.dumps(value))
    ),
    st.text(max_size=80).map(lambda key: wrap_json(json.dumps({"after": key}))),
    st.integers(min_value=1, max_value=3000).map(lambda depth: wrap_json("[" * depth)),
)


@settings(max_examples=600, deadline=None)
@given(tokens)
def test_any_token_decodes_to_a_storable_key_or_is_invalid_argument(token: str) -> None:
    try:
        after = paging.decode_token(token)
    except InvalidArgument as error:
        assert [field for field, _ in error.violations] == ["page_token"]
        return
    if after is None:
        assert token == ""
        return
    # What the repositories compare against: a non-empty str PostgreSQL can hold.
    assert isinstance(after, str) and after and "\x00" not in after
    after.encode("utf-8")
    assert paging.decode_token(paging.encode_token(after)) == after


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=256).filter(lambda k: "\x00" not in k))
def test_issued_tokens_round_trip(key: str) -> None:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return
    assert paging.decode_token(paging.encode_token(key)) == key


class Rows:
    """A fetch over sorted keys that records what it was asked."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.asked: list[tuple[str | None, int]] = []

    def __call__(self, after: str | None, limit: int) -> list[str]:
        self.asked.append((after, limit))
        return [key for key in self.keys if after is None or key > after][:limit]


def test_a_full_page_asks_for_one_row_more_and_names_its_last_key():
    rows = Rows(["a", "b", "c"])
    page, token = paging.paginate(2, "", rows, key=str)
    assert page == ["a", "b"]
    assert rows.asked == [(None, 3)]  # page_size 2, plus the one that tells a page follows
    assert token == paging.encode_token("b")


def test_the_next_page_resumes_after_the_tokens_key_and_the_last_has_no_token():
    rows = Rows(["a", "b", "c"])
    page, token = paging.paginate(2, paging.encode_token("b"), rows, key=str)
    assert (page, token) == (["c"], "")
    assert rows.asked == [("b", 3)]


def test_a_page_exactly_full_with_nothing_after_is_the_last():
    rows = Rows(["a", "b"])
    assert paging.paginate(2, "", rows, key=str) == (["a", "b"], "")
