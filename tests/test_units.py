"""Fast unit tests of settings, paging and time conversion."""

from __future__ import annotations

import pytest

from services.common import paging
from services.common.config import Settings
from services.common.errors import ConfigError, InvalidArgument
from services.common.timeconv import micros_to_timestamp, timestamp_to_micros


def test_settings_read_from_environment():
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://u@h/db", "GRPC_MAX_WORKERS": "12", "WRITER_FLUSH_MS": "2.5"}
    )
    assert settings.grpc_max_workers == 12
    assert settings.writer_flush_ms == 2.5
    assert settings.service_database_url("meter") == "postgresql://u@h/db"
    assert settings.listen_addr("vehicle") == "[::]:50052"


def test_service_database_url_overrides_the_shared_one():
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://u@h/shared", "METER_DATABASE_URL": "postgresql://u@m/meter"}
    )
    assert settings.service_database_url("meter") == "postgresql://u@m/meter"
    assert settings.service_database_url("vehicle") == "postgresql://u@h/shared"


@pytest.mark.parametrize(
    "environ",
    [{"GRPC_MAX_WORKERS": "many"}, {"GRPC_MAX_WORKERS": "0"}, {"LOG_LEVEL": "chatty"}],
)
def test_bad_settings_are_refused(environ):
    with pytest.raises(ConfigError):
        Settings.from_env(environ)


def test_missing_database_is_a_clear_error():
    with pytest.raises(ConfigError, match="METER_DATABASE_URL or DATABASE_URL"):
        Settings.from_env({}).service_database_url("meter")


def test_page_limit_rules():
    assert paging.page_limit(0) == 1000
    assert paging.page_limit(50) == 50
    assert paging.page_limit(10**6) == 10000
    with pytest.raises(InvalidArgument):
        paging.page_limit(-1)


def test_page_tokens_round_trip_and_reject_garbage():
    assert paging.decode_token(paging.encode_token("CHG-é:1")) == "CHG-é:1"
    assert paging.decode_token("") is None
    for garbage in ("%%%", "bm90IGpzb24", paging.encode_token("x")[:-2] + "!!"):
        with pytest.raises(InvalidArgument):
            paging.decode_token(garbage)


def test_timestamp_micros_round_trip():
    for micros in (0, 1, 1_770_724_800_123_456, -1):
        assert timestamp_to_micros(micros_to_timestamp(micros)) == micros
