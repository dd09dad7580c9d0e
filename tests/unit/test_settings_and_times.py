"""Settings, time conversion and time ranges, server options, peer addresses."""

from __future__ import annotations

import pytest
from energy.meter.v1 import meter_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.config import Settings
from services.common.errors import ConfigError, InvalidArgument
from services.common.partitions import DailyPartitions, day_of
from services.common.timeconv import (
    duration_problem,
    micros_to_timestamp,
    timestamp_problem,
    timestamp_to_micros,
)
from services.common.validation import TimeWindow, require_times, timestamp_violations


def test_settings_read_from_environment():
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "GRPC_MAX_WORKERS": "2000",
            "WRITER_FLUSH_MS": "2.5",
        }
    )
    assert settings.grpc_max_workers == 2000
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
    [
        {"GRPC_MAX_WORKERS": "many"},
        {"GRPC_MAX_WORKERS": "-1"},
        # fewer threads than admitted calls: the excess would queue unanswered
        {"GRPC_MAX_WORKERS": "256", "GRPC_MAX_CONCURRENT_RPCS": "1024"},
        {"STREAM_IDLE_TIMEOUT_SECONDS": "0"},
        {"MAX_CALLS_PER_PRINCIPAL": "-1"},
        {"LOG_LEVEL": "chatty"},
        {"DATABASE_URL": "notaurl"},
        {"METER_DATABASE_URL": "mysql://root@localhost/db"},
        {"STATUS_PAGE_MAX_AGE_MS": "-1"},
        {"RETENTION_DAYS": "-1"},
        {"MAINTENANCE_INTERVAL_SECONDS": "0"},
        # rollups must outlive the raw history they summarise
        {"RETENTION_DAYS": "30", "ROLLUP_RETENTION_DAYS": "7"},
        {"ROLLUP_RETENTION_DAYS": "400"},
    ],
)
def test_bad_settings_are_refused(environ):
    with pytest.raises(ConfigError):
        Settings.from_env(environ)


@pytest.mark.parametrize("raw", ["inf", "nan", "1e400", "-inf"])
@pytest.mark.parametrize("name", ["STATUS_PAGE_MAX_AGE_MS", "MAX_READ_SECONDS"])
def test_a_float_setting_must_be_finite(name, raw):
    """nan passes every bound check and inf would keep a status page for ever."""
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({name: raw})
    assert str(refused.value) == f"{name} must be a finite number, got {raw!r}"


def test_a_database_url_of_another_kind_is_named_without_repeating_it():
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"DATABASE_URL": "mysql://root:secret@localhost/db"})
    assert str(refused.value) == (
        "DATABASE_URL must be a libpq URI, postgresql://user@host:port/database"
    )


def test_missing_database_is_a_clear_error():
    with pytest.raises(ConfigError, match="METER_DATABASE_URL or DATABASE_URL"):
        Settings.from_env({}).service_database_url("meter")


def test_timestamp_micros_round_trip():
    for micros in (0, 1, 1_770_724_800_123_456, -1):
        assert timestamp_to_micros(micros_to_timestamp(micros)) == micros


def test_timestamps_outside_the_types_range_are_explained_with_a_hint():
    # 2026-11-20T10:00:00Z as epoch seconds, then as milliseconds and microseconds.
    assert timestamp_problem(Timestamp(seconds=1_795_168_800)) is None
    assert timestamp_problem(Timestamp(seconds=1_795_168_800_000)) == (
        "must be within 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, "
        "got seconds=1795168800000 (epoch milliseconds given as seconds?)"
    )
    assert timestamp_problem(Timestamp(seconds=1_795_168_800_000_000)) == (
        "must be within 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, "
        "got seconds=1795168800000000 (epoch microseconds given as seconds?)"
    )
    # The ends themselves: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z.
    assert timestamp_problem(Timestamp(seconds=-62_135_596_800)) is None
    assert timestamp_problem(Timestamp(seconds=253_402_300_799, nanos=999_999_999)) is None
    assert "got seconds=-62135596801" in (
        timestamp_problem(Timestamp(seconds=-62_135_596_801)) or ""
    )
    assert "got seconds=253402300800" in (
        timestamp_problem(Timestamp(seconds=253_402_300_800)) or ""
    )
    assert timestamp_problem(Timestamp(seconds=0, nanos=-1)) == (
        "nanos must be within 0 and 999999999, got -1"
    )


def test_durations_outside_the_types_range_are_explained():
    assert duration_problem(Duration(seconds=315_576_000_000)) is None
    assert duration_problem(Duration(seconds=-315_576_000_000)) is None
    assert duration_problem(Duration(seconds=315_576_000_001)) == (
        "must be within ±315576000000 seconds (10,000 years), got seconds=315576000001"
    )
    assert duration_problem(Duration(seconds=-1, nanos=-5)) is None
    assert duration_problem(Duration(seconds=1, nanos=-5)) == (
        "nanos must be within -999999999 and 999999999 with the sign of seconds, "
        "got seconds=1 nanos=-5"
    )


def test_require_times_names_every_field_out_of_range():
    with pytest.raises(InvalidArgument) as refused:
        require_times(
            [
                ("start_time", Timestamp(seconds=1_795_168_800_000)),
                ("end_time", Timestamp(seconds=1_795_168_800)),
                ("session_gap", Duration(seconds=10**12)),
            ]
        )
    assert [field for field, _ in refused.value.violations] == ["start_time", "session_gap"]


def test_pool_holds_every_admitted_call_plus_health_and_refusals():
    from services.common.admission import REFUSAL_WORKERS
    from services.common.server import worker_count

    settings = Settings.from_env({"GRPC_MAX_CONCURRENT_RPCS": "100", "GRPC_HEALTH_WORKERS": "4"})
    assert worker_count(settings) == 100 + 4 + REFUSAL_WORKERS
    bigger = Settings.from_env({"GRPC_MAX_CONCURRENT_RPCS": "100", "GRPC_MAX_WORKERS": "300"})
    assert worker_count(bigger) == 300 + bigger.grpc_health_workers + REFUSAL_WORKERS


def test_connection_limits_reach_grpc():
    from services.common.server import server_options

    options = dict(
        server_options(
            Settings.from_env(
                {
                    "GRPC_MAX_STREAMS_PER_CONNECTION": "7",
                    "GRPC_MAX_CONNECTION_IDLE_SECONDS": "1.5",
                    "GRPC_MAX_CONNECTION_AGE_SECONDS": "60",
                    "GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS": "5",
                    "GRPC_KEEPALIVE_TIME_SECONDS": "30",
                    "GRPC_KEEPALIVE_TIMEOUT_SECONDS": "10",
                    "GRPC_MIN_PING_INTERVAL_SECONDS": "4",
                    "GRPC_MAX_PING_STRIKES": "3",
                }
            )
        )
    )
    assert options["grpc.max_concurrent_streams"] == 7
    assert options["grpc.max_connection_idle_ms"] == 1500
    assert options["grpc.max_connection_age_ms"] == 60_000
    assert options["grpc.max_connection_age_grace_ms"] == 5000
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == 10_000
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 4000
    assert options["grpc.http2.max_ping_strikes"] == 3


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.7:51234", "ipv4:10.0.0.7"),
        ("ipv6:[::1]:51234", "ipv6:[::1]"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
    ],
)
def test_peer_is_counted_by_address_without_port(peer, host):
    from services.common.admission import peer_host

    assert peer_host(peer) == host


def test_expensive_reads_stay_below_the_read_pool():
    assert Settings.from_env({}).max_expensive_reads == 2
    with pytest.raises(ConfigError, match="MAX_EXPENSIVE_READS"):
        Settings.from_env({"DB_POOL_SIZE": "2", "MAX_EXPENSIVE_READS": "4"})


def test_retention_settings_that_keep_rollups_longer_are_accepted():
    settings = Settings.from_env({"RETENTION_DAYS": "30", "ROLLUP_RETENTION_DAYS": "400"})
    assert (settings.retention_days, settings.rollup_retention_days) == (30, 400)
    assert Settings.from_env({"RETENTION_DAYS": "30"}).rollup_retention_days == 0


def test_a_reading_older_than_retention_is_explained_with_the_setting_and_the_bound():
    """Now 2026-03-31T00:00Z, RETENTION_DAYS=30: the bound is 2026-03-01T00:00Z; a reading one
    second before it is refused, the bound itself is not."""
    now = 1_774_915_200 * 1_000_000  # 2026-03-31T00:00:00Z
    window = TimeWindow(now - 30 * 86_400_000_000, now, 300.0, 30)
    assert window.earliest == 1_772_323_200 * 1_000_000  # 2026-03-01T00:00:00Z

    def reading(seconds: int) -> meter_pb2.MeterReading:
        return meter_pb2.MeterReading(meter_id="M", timestamp=Timestamp(seconds=seconds))

    assert timestamp_violations(reading(1_772_323_200), window) == []
    assert timestamp_violations(reading(1_772_323_199), window) == [
        (
            "timestamp",
            "must be at most 30 days old (RETENTION_DAYS: older readings are not kept), at or "
            "after 2026-03-01T00:00:00Z, got 2026-02-28T23:59:59Z",
        )
    ]
    # Before 2000 the fixed bound is named, whatever the retention.
    assert timestamp_violations(reading(0), window)[0][1].startswith(
        "must be at or after 2000-01-01T00:00:00Z"
    )


def test_daily_partitions_are_named_by_their_utc_day():
    partitions = DailyPartitions("meter", "meter_readings")
    last_micro_of_day = 1_772_323_200 * 1_000_000 - 1  # 2026-02-28T23:59:59.999999Z
    assert partitions.name(day_of(last_micro_of_day)) == "meter_readings_p20260228"
    assert partitions.name(day_of(last_micro_of_day + 1)) == "meter_readings_p20260301"
    assert day_of(-1) == -1  # 1969-12-31: floor division, not truncation
    assert partitions.name(-1) == "meter_readings_p19691231"


def test_stale_hours_are_made_in_runs_of_contiguous_hours_at_most_a_day_long():
    from services.common.rollups import HOUR_US, _runs

    hours = [h * HOUR_US for h in (0, 1, 2, 5, *range(10, 40))]
    assert _runs(hours) == [
        (0, 3 * HOUR_US),
        (5 * HOUR_US, 6 * HOUR_US),
        (10 * HOUR_US, 34 * HOUR_US),  # 24 hours, then the rest
        (34 * HOUR_US, 40 * HOUR_US),
    ]
    assert _runs([]) == []


@pytest.mark.parametrize("value", ["9464", ":9464", "localhost", "127.0.0.1:abc", "h:70000"])
def test_metrics_addr_must_be_host_and_port(value):
    """A bare port would bind every interface unasked; a bad port would crash the start."""
    with pytest.raises(ConfigError, match="METRICS_ADDR must be host:port"):
        Settings.from_env({"METRICS_ADDR": value})
    assert Settings.from_env({"METRICS_ADDR": "127.0.0.1:0"}).metrics_addr == "127.0.0.1:0"
    assert Settings.from_env({"METRICS_ADDR": "[::]:9464"}).metrics_addr == "[::]:9464"
