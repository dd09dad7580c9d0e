"""Malformed page tokens of any content are INVALID_ARGUMENT naming page_token: never an error
from the JSON parser (deep nesting), nor from PostgreSQL (NUL, lone surrogates) after decoding."""

from __future__ import annotations

import base64
import json

import grpc
import pytest
from energy.meter.v1 import meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_service_pb2, vehicle_service_pb2_grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common import paging
from services.common.errors import InvalidArgument
from tests.conftest import InProcessServer


def wrap(raw: bytes) -> str:
    """base64url without padding, as the service writes its tokens."""
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def wrap_json(text: str) -> str:
    return wrap(text.encode("utf-8", "surrogatepass"))


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


E2E_TOKENS = MALFORMED[:6]


@pytest.mark.e2e
def test_malformed_tokens_are_invalid_argument_end_to_end(
    meter_server: InProcessServer, vehicle_server: InProcessServer
) -> None:
    with meter_server.channel() as meter_channel, vehicle_server.channel() as vehicle_channel:
        meter_stub = meter_service_pb2_grpc.MeterServiceStub(meter_channel)
        vehicle_stub = vehicle_service_pb2_grpc.VehicleServiceStub(vehicle_channel)
        calls = []
        for token in E2E_TOKENS:
            calls.append(
                lambda token=token: meter_stub.ListChargerStatuses(
                    meter_service_pb2.ListChargerStatusesRequest(page_token=token), timeout=30
                )
            )
            calls.append(
                lambda token=token: vehicle_stub.ListVehicleStatuses(
                    vehicle_service_pb2.ListVehicleStatusesRequest(page_token=token), timeout=30
                )
            )
        for index, call in enumerate(calls):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, index
            assert "page_token" in (caught.value.details() or ""), index
        # And the servers still answer a well-formed token.
        token = paging.encode_token("CHG-000")
        listed = meter_stub.ListChargerStatuses(
            meter_service_pb2.ListChargerStatusesRequest(page_token=token), timeout=30
        )
        assert list(listed.charger_statuses) == []
