"""The two reading kinds' declarations: what the shared reading service derives from them, and
the bounds that the proto comments, the explanations and the fast path all take from one place."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from energy.meter.v1 import meter_pb2, meter_service_pb2
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2

from services.common.validation import Bounds, exact
from services.meter.kind import METER
from services.readings.kind import ReadingKind
from services.readings.repository import reading_table
from services.readings.servicer import status_filler
from services.vehicle.kind import VEHICLE

PROTOS = Path(__file__).resolve().parents[2] / "protos" / "energy"


def documented_range(proto: str, message: str, field: str) -> str:
    """The comment lines right above `field` in `message` of a proto file, joined."""
    text = (PROTOS / proto).read_text()
    body = re.search(rf"message {message} \{{(.*?)\n\}}", text, re.S)
    assert body is not None, f"{message} not in {proto}"
    found = re.search(rf"((?:\s*//[^\n]*\n)+)\s*(?:optional )?double {field} = \d+;", body.group(1))
    assert found is not None, f"{message}.{field} has no comment in {proto}"
    return " ".join(line.strip().removeprefix("// ") for line in found.group(1).splitlines())


def range_words(bounds: Bounds) -> str:
    # How the proto comments write a range: "0..1000", or "> 0 and <= 2000" for an open low end.
    if bounds.low_open:
        return f"> {exact(bounds.low)} and <= {exact(bounds.high)}"
    return f"{exact(bounds.low)}..{exact(bounds.high)}"


@pytest.mark.parametrize(
    ("kind", "proto", "message"),
    [
        (METER, "meter/v1/meter.proto", "MeterReading"),
        (VEHICLE, "vehicle/v1/vehicle.proto", "VehicleReading"),
    ],
)
def test_proto_comments_state_the_bounds_the_service_enforces(
    kind: ReadingKind, proto: str, message: str
) -> None:
    assert kind.rules.bounds, "a kind without bounds would make this test vacuous"
    for bounds in kind.rules.bounds:
        comment = documented_range(proto, message, bounds.field)
        assert range_words(bounds) in comment, (bounds, comment)


def test_the_documented_ranges_are_the_ones_written_by_hand() -> None:
    # Independent of Bounds: the figures a client reads in the contract.
    assert "0..1000" in documented_range("meter/v1/meter.proto", "MeterReading", "kwh_consumed_ac")
    assert "> 0 and <= 2000" in documented_range("meter/v1/meter.proto", "MeterReading", "voltage")
    assert "0..100" in documented_range("vehicle/v1/vehicle.proto", "VehicleReading", "soc")
    assert "-60..120" in documented_range(
        "vehicle/v1/vehicle.proto", "VehicleReading", "battery_temp"
    )


def test_the_contract_is_found_from_the_descriptors() -> None:
    meter, vehicle = METER.contract, VEHICLE.contract
    assert meter.service_name == "energy.meter.v1.MeterService"
    assert vehicle.service_name == "energy.vehicle.v1.VehicleService"
    assert meter.list_response is meter_service_pb2.ListChargerStatusesResponse
    assert meter.list_field == "charger_statuses"
    assert vehicle.list_response is vehicle_service_pb2.ListVehicleStatusesResponse
    assert vehicle.list_field == "vehicle_statuses"
    assert meter.rejection is meter_pb2.ReadingRejection
    assert vehicle.rejection is vehicle_pb2.ReadingRejection
    assert meter.ingest_response is meter_service_pb2.IngestReadingResponse
    assert meter.stream_response is meter_service_pb2.IngestReadingsResponse
    assert meter.outcomes == {"accepted": 1, "duplicate": 2, "conflict": 3}
    assert vehicle.outcomes == meter.outcomes
    assert meter.conflict is meter_pb2.ReadingConflict
    assert METER.id_field == "meter_id" and VEHICLE.id_field == "vehicle_id"


def test_a_status_row_fills_every_field_of_its_message() -> None:
    row = ("EV-1", "CH-7", 55.5, 0.25, None, 31.0, 1_700_000_000_250_000, 1_700_000_001_000_000)
    status = vehicle_pb2.VehicleStatus()
    status_filler(VEHICLE)(status, row)
    assert (status.vehicle_id, status.charger_id) == ("EV-1", "CH-7")
    assert (status.soc, status.kwh_delivered_dc, status.battery_temp) == (55.5, 0.25, 31.0)
    assert (status.timestamp.seconds, status.timestamp.nanos) == (1_700_000_000, 250_000_000)
    assert (status.update_time.seconds, status.update_time.nanos) == (1_700_000_001, 0)


def test_the_group_commit_sql_follows_the_declared_columns() -> None:
    meter, vehicle = reading_table(METER), reading_table(VEHICLE)
    assert meter.staging_ddl == (
        "CREATE TEMP TABLE IF NOT EXISTS meter_staging ("
        'meter_id text COLLATE "C", read_us int8, kwh_consumed_ac float8, '
        "kwh_consumed_ac_register float8, voltage float8, position int8)"
    )
    assert vehicle.copy_sql == (
        "COPY vehicle_staging (vehicle_id, read_us, charger_id, soc, kwh_delivered_dc, "
        "kwh_delivered_dc_register, battery_temp, position) FROM STDIN (FORMAT BINARY)"
    )
    assert vehicle.copy_types == (
        "text",
        "int8",
        "text",
        "float8",
        "float8",
        "float8",
        "float8",
        "int8",
    )
    assert "INSERT INTO vehicle.vehicle_readings" in vehicle.write_sql
    assert "INSERT INTO vehicle.vehicle_status AS current" in vehicle.write_sql
    assert "battery_temp = excluded.battery_temp" in vehicle.write_sql
    assert "INSERT INTO meter.charger_status AS current" in meter.write_sql


def test_a_service_without_the_shared_shape_is_refused_naming_what_lacks() -> None:
    from energy.analytics.v1 import analytics_service_pb2, analytics_service_pb2_grpc

    from services.readings.kind import ReadingContract

    with pytest.raises(ValueError, match="AnalyticsService lacks the reading service's shape"):
        ReadingContract(analytics_service_pb2, analytics_service_pb2_grpc, meter_pb2.ChargerStatus)


def test_a_kind_whose_columns_are_not_status_fields_is_refused_when_declared() -> None:
    from dataclasses import replace

    from services.readings.kind import Column

    with pytest.raises(ValueError, match=r"the status message has no field \['volts'\]"):
        replace(METER, columns=(Column("kwh_consumed_ac", "float8"), Column("volts", "float8")))


@pytest.mark.parametrize("name", ["from", "pass", "lambda"])
def test_the_status_filler_takes_field_names_that_are_python_keywords(name: str) -> None:
    from types import SimpleNamespace

    from google.protobuf.timestamp_pb2 import Timestamp

    kind = SimpleNamespace(service="demo", status_fields=("demo_id", name), columns=())
    fill = status_filler(kind)  # type: ignore[arg-type]
    status = SimpleNamespace(timestamp=Timestamp(), update_time=Timestamp())
    fill(status, ("D-1", 1.5, 1_000_000, 2_000_000))
    assert getattr(status, name) == 1.5
    assert (status.timestamp.seconds, status.update_time.seconds) == (1, 2)


def test_inline_seconds_writes_in_named_parameters_only():
    """The maintenance loop's statements carry the reach as literals: `:reach_s` is written in
    as a float8, `::float8` casts and longer names that start alike are left alone."""
    from services.readings.repository import inline_seconds

    sql = "SELECT x::float8 <= :reach_s, :reach_sx, :lookaround_s"
    assert inline_seconds(sql, reach_s=900, lookaround_s=1800.5) == (
        "SELECT x::float8 <= CAST(900.0 AS float8), :reach_sx, CAST(1800.5 AS float8)"
    )
