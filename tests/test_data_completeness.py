"""Data completeness end to end: ListReportingSummaries on MeterService and VehicleService over
a real PostgreSQL (real servers fed over gRPC), and AnalyticsService.GetDataCompleteness
composed from them, driven through grpc_testing. The fleet is small and every expected figure
is computed by hand in the docstring of `fleet`."""

from __future__ import annotations

import grpc
import grpc_testing
import pytest
from energy.analytics.v1 import analytics_service_pb2
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration

from services.analytics.component import AnalyticsComponent
from services.common.config import Settings
from services.common.paging import encode_token
from services.common.timeconv import timestamp_to_micros
from services.meter import component as meter_component
from services.vehicle import component as vehicle_component
from tests.test_analytics_servicers import (
    ANALYTICS,
    METER,
    T0,
    VEHICLE,
    at,
    ingest_meters,
    ingest_vehicles,
    unary,
    violations,
)

HOUR = Duration(seconds=3600)


def minute_of(timestamp) -> float:
    return (timestamp_to_micros(timestamp) / 1e6 - T0) / 60


def resend_meter(target: str, charger: str, minute: float, kwh: float) -> int:
    """Sends one reading again; returns the conflicts the answer counted."""
    with grpc.insecure_channel(target) as channel:
        response = meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
            iter(
                [
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[
                            meter_pb2.MeterReading(
                                meter_id=charger,
                                kwh_consumed_ac=kwh,
                                voltage=230,
                                timestamp=at(minute),
                            )
                        ]
                    )
                ]
            ),
            timeout=30,
        )
    return response.conflicts


@pytest.fixture
def fleet(meter_server, vehicle_server):
    """The window is minutes [0, 60).

    Chargers (a meter is expected to report all the time):
    - CHG-1 every minute 0-59: 60 of 60 expected (usual 60 s); no gap. Minute 5 resent with
      other energy twice (one distinct conflict) and once as stored (a duplicate, no conflict).
    - CHG-Q every 15 minutes (7, 22, 37, 52): usual 900 s, so gaps need more than 1800 s;
      expected 3600 / 900 = 4, received 4; no gap.
    - CHG-S minutes 0-19, then silent: 20 of 60; one gap, from minute 19 to 60.
    - CHG-Z minutes -30 to -21 only: its usual 60 s comes from before the window; 0 of 60,
      one gap, the whole window.
    Totals: 4 chargers, 1 silent, 184 expected, 84 received, 2 gaps, 1 conflict.

    Vehicles (only their stretches of readings are expected to hold readings):
    - VH-A on CHG-1 minutes 0-9, VH-B minutes 30-39: 10 of 10 each.
    - VH-C on "chg-q" (CHG-Q in the wrong case) minutes 10, 11, 13, 14: steps 60, 120, 60 s,
      usual 60 s, one stretch of 240 s: expected 240 / 60 + 1 = 5, received 4 (0.8).
    - VH-G on CHG-1 minutes 0-4 and 20-24: two stretches of 240 s: expected 4 + 1 + 4 + 1 = 10,
      received 10; one gap, minutes 4 to 20.
    - VH-D on CHG-1 minutes 40-49, and one reading naming CHG-S at minute 45.5: steps 60 s x 8
      and 30 s x 2, usual 60 s; one stretch of 540 s: expected 10, received 11 (1.1); it named
      CHG-1 and CHG-S at once at minute 45.5.
    Totals: 5 vehicles, none silent, 45 expected, 45 received, 1 gap, no conflict.
    """
    meter, vehicle = meter_server.target, vehicle_server.target
    ingest_meters(
        meter,
        [("CHG-1", m, 1.0) for m in range(60)]
        + [("CHG-Q", m, 3.0) for m in (7, 22, 37, 52)]
        + [("CHG-S", m, 1.0) for m in range(20)]
        + [("CHG-Z", m, 1.0) for m in range(-30, -20)],
    )
    assert resend_meter(meter, "CHG-1", 5, 2.0) == 1
    assert resend_meter(meter, "CHG-1", 5, 2.0) == 1
    assert resend_meter(meter, "CHG-1", 5, 1.0) == 0
    ingest_vehicles(
        vehicle,
        [("VH-A", "CHG-1", m, 0.5, 30.0) for m in range(10)]
        + [("VH-B", "CHG-1", m, 0.5, 30.0) for m in range(30, 40)]
        + [("VH-C", "chg-q", m, 0.5, 30.0) for m in (10, 11, 13, 14)]
        + [("VH-G", "CHG-1", m, 0.5, 30.0) for m in [*range(5), *range(20, 25)]]
        + [("VH-D", "CHG-1", m, 0.5, 30.0) for m in range(40, 50)]
        + [("VH-D", "CHG-S", 45.5, 0.5, 30.0)],
    )
    return meter_server, vehicle_server


def servicer(service, component):
    return grpc_testing.server_from_dictionary(
        {service: component.servicer}, grpc_testing.strict_real_time()
    )


@pytest.fixture
def meter_servicer(fleet, database_url):
    built = meter_component.build(Settings(database_url=database_url))
    yield servicer(METER, built)
    built.engine.dispose()


@pytest.fixture
def vehicle_servicer(fleet, database_url):
    built = vehicle_component.build(Settings(database_url=database_url))
    yield servicer(VEHICLE, built)
    built.engine.dispose()


@pytest.fixture
def analytics_servicer(fleet):
    meter_server, vehicle_server = fleet
    built = AnalyticsComponent(
        Settings(meter_target=meter_server.target, vehicle_target=vehicle_server.target)
    )
    yield servicer(ANALYTICS, built)
    built.stop()


def summaries_request(module, **fields):
    return module.ListReportingSummariesRequest(
        start_time=fields.pop("start_time", at(0)),
        end_time=fields.pop("end_time", at(60)),
        **fields,
    )


def gaps_in_minutes(message) -> list[tuple[float, float]]:
    return [(minute_of(gap.start_time), minute_of(gap.end_time)) for gap in message.gaps]


def test_meter_reporting_summaries_count_gaps_and_conflicts(meter_servicer):
    response, _, code, details = unary(
        meter_servicer, METER, "ListReportingSummaries", summaries_request(meter_service_pb2)
    )
    assert code == grpc.StatusCode.OK, details
    by_id = {s.meter_id: s for s in response.reporting_summaries}
    assert list(by_id) == ["CHG-1", "CHG-Q", "CHG-S", "CHG-Z"]
    one, quarter, stopped, silent = by_id.values()
    assert (one.received_count, one.expected_count, one.conflict_count) == (60, 60, 1)
    assert one.usual_interval.seconds == 60 and gaps_in_minutes(one) == []
    assert (minute_of(one.first_reading_time), minute_of(one.last_reading_time)) == (0, 59)
    assert (quarter.received_count, quarter.expected_count, quarter.usual_interval.seconds) == (
        4,
        4,
        900,
    )
    assert gaps_in_minutes(quarter) == []
    assert (stopped.received_count, stopped.expected_count) == (20, 60)
    assert gaps_in_minutes(stopped) == [(19, 60)]
    assert (silent.received_count, silent.expected_count, silent.usual_interval.seconds) == (
        0,
        60,
        60,
    )
    assert gaps_in_minutes(silent) == [(0, 60)]
    assert not silent.HasField("first_reading_time")


def test_vehicle_reporting_summaries_name_chargers_and_overlaps(vehicle_servicer):
    from energy.vehicle.v1 import vehicle_service_pb2

    response, _, code, details = unary(
        vehicle_servicer,
        VEHICLE,
        "ListReportingSummaries",
        summaries_request(vehicle_service_pb2, page_size=3),
    )
    assert code == grpc.StatusCode.OK, details
    assert [s.vehicle_id for s in response.reporting_summaries] == ["VH-A", "VH-B", "VH-C"]
    assert response.next_page_token
    rest, _, code, _ = unary(
        vehicle_servicer,
        VEHICLE,
        "ListReportingSummaries",
        summaries_request(vehicle_service_pb2, page_size=3, page_token=response.next_page_token),
    )
    assert code == grpc.StatusCode.OK and not rest.next_page_token
    by_id = {s.vehicle_id: s for s in [*response.reporting_summaries, *rest.reporting_summaries]}
    misnamed, two, gapped = by_id["VH-C"], by_id["VH-D"], by_id["VH-G"]
    assert (misnamed.received_count, misnamed.expected_count) == (4, 5)
    assert list(misnamed.charger_ids) == ["chg-q"] and gaps_in_minutes(misnamed) == []
    assert (gapped.received_count, gapped.expected_count) == (10, 10)
    assert gaps_in_minutes(gapped) == [(4, 20)]
    assert (two.received_count, two.expected_count) == (11, 10)
    assert list(two.charger_ids) == ["CHG-1", "CHG-S"]
    [overlap] = two.charger_overlaps
    assert (overlap.vehicle_id, overlap.charger_id, overlap.other_charger_id) == (
        "VH-D",
        "CHG-1",
        "CHG-S",
    )
    assert (minute_of(overlap.start_time), minute_of(overlap.end_time)) == (45.5, 45.5)
    assert all(not by_id[v].charger_overlaps for v in ("VH-A", "VH-B", "VH-C", "VH-G"))


def test_reporting_summaries_refuse_bad_windows_naming_the_field(meter_servicer):
    assert violations(
        meter_servicer,
        METER,
        "ListReportingSummaries",
        summaries_request(meter_service_pb2, start_time=at(60), end_time=at(0)),
    ) == ["end_time"]
    assert violations(
        meter_servicer,
        METER,
        "ListReportingSummaries",
        summaries_request(meter_service_pb2, end_time=at(32 * 24 * 60)),
    ) == ["end_time"]
    assert violations(
        meter_servicer,
        METER,
        "ListReportingSummaries",
        summaries_request(meter_service_pb2, gap=Duration(seconds=-1)),
    ) == ["gap"]
    assert violations(
        meter_servicer,
        METER,
        "ListReportingSummaries",
        meter_service_pb2.ListReportingSummariesRequest(end_time=at(60)),
    ) == ["start_time"]
    # A token of another listing (GetDataCompleteness' names more than a charger id).
    foreign = encode_token("completeness|3600000000|3600000000|c|0|0.5|CHG-1")
    assert violations(
        meter_servicer,
        METER,
        "ListReportingSummaries",
        summaries_request(meter_service_pb2, page_token=foreign),
    ) == ["page_token"]


def completeness(server, **fields):
    request = analytics_service_pb2.GetDataCompletenessRequest(
        end_time=at(60), window=HOUR, **fields
    )
    response, _, code, details = unary(server, ANALYTICS, "GetDataCompleteness", request)
    assert code == grpc.StatusCode.OK, details
    return response


def brief(device) -> tuple:
    return (
        device.id,
        device.expected_reading_count if device.HasField("expected_reading_count") else None,
        device.received_reading_count,
        round(device.completeness, 3) if device.HasField("completeness") else None,
        gaps_in_minutes(device),
        device.conflict_count,
    )


def test_data_completeness_of_a_fleet(analytics_servicer):
    page = completeness(analytics_servicer)
    assert (minute_of(page.start_time), minute_of(page.end_time)) == (0, 60)
    assert [brief(c) for c in page.chargers] == [
        ("CHG-Z", 60, 0, 0.0, [(0, 60)], 0),
        ("CHG-S", 60, 20, 0.333, [(19, 60)], 0),
        ("CHG-1", 60, 60, 1.0, [], 1),
        ("CHG-Q", 4, 4, 1.0, [], 0),
    ]
    assert [brief(v) for v in page.vehicles] == [
        ("VH-C", 5, 4, 0.8, [], 0),
        ("VH-A", 10, 10, 1.0, [], 0),
        ("VH-B", 10, 10, 1.0, [], 0),
        ("VH-G", 10, 10, 1.0, [(4, 20)], 0),
        ("VH-D", 10, 11, 1.1, [], 0),
    ]
    totals = page.charger_totals
    assert (
        totals.device_count,
        totals.silent_device_count,
        totals.expected_reading_count,
        totals.received_reading_count,
        totals.gap_count,
        totals.conflict_count,
    ) == (4, 1, 184, 84, 2, 1)
    totals = page.vehicle_totals
    assert (
        totals.device_count,
        totals.silent_device_count,
        totals.expected_reading_count,
        totals.received_reading_count,
        totals.gap_count,
        totals.conflict_count,
    ) == (5, 0, 45, 45, 1, 0)
    [unreported] = page.unreported_chargers
    assert unreported.charger_id == "chg-q"
    assert list(unreported.near_matches) == ["CHG-Q"]
    assert list(unreported.vehicle_ids) == ["VH-C"]
    [overlap] = page.charger_overlaps
    assert (overlap.vehicle_id, overlap.charger_id, overlap.other_charger_id) == (
        "VH-D",
        "CHG-1",
        "CHG-S",
    )
    assert minute_of(overlap.start_time) == 45.5
    assert page.next_page_token == ""


def test_data_completeness_pages_chargers_then_vehicles(analytics_servicer):
    seen: list[list[str]] = []
    token = ""
    while True:
        page = completeness(analytics_servicer, page_size=3, page_token=token)
        seen.append([c.id for c in page.chargers] + [v.id for v in page.vehicles])
        assert page.charger_totals.device_count == 4  # totals on every page
        token = page.next_page_token
        if not token:
            break
    assert seen == [
        ["CHG-Z", "CHG-S", "CHG-1"],
        ["CHG-Q", "VH-C", "VH-A"],
        ["VH-B", "VH-G", "VH-D"],
    ]
    first = completeness(analytics_servicer, page_size=3)
    request = analytics_service_pb2.GetDataCompletenessRequest(
        end_time=at(61), window=HOUR, page_size=3, page_token=first.next_page_token
    )
    assert violations(analytics_servicer, ANALYTICS, "GetDataCompleteness", request) == [
        "page_token"
    ]
    request = analytics_service_pb2.GetDataCompletenessRequest(page_token="not-a-token")
    assert violations(analytics_servicer, ANALYTICS, "GetDataCompleteness", request) == [
        "page_token"
    ]
    request = analytics_service_pb2.GetDataCompletenessRequest(window=Duration(seconds=-5))
    assert violations(analytics_servicer, ANALYTICS, "GetDataCompleteness", request) == ["window"]


def test_a_usual_interval_is_the_windows_own_pace_and_per_charger(
    meter_servicer, vehicle_servicer, fleet
):
    """CHG-J read every minute in minutes 60-119, then every 15 minutes from minute 120: over
    [120, 180) its pace is 900 s (3 steps of its own), so 4 of 4 and no gap, not 4 of 60.
    VH-3 reports every minute on CHG-A (130-140) and, between, on CHG-C (130.5-140.5): each
    charger's pace is 60 s. One stretch of 630 s: 630 / 60 = 10.5, rounded to 10, + 1 = 11
    expected; 22 received; and one overlap of the two chargers, 130.5 to 140."""
    from energy.vehicle.v1 import vehicle_service_pb2

    meter_server, vehicle_server = fleet
    ingest_meters(
        meter_server.target,
        [("CHG-J", m, 1.0) for m in range(60, 120)]
        + [("CHG-J", m, 15.0) for m in (120, 135, 150, 165)],
    )
    ingest_vehicles(
        vehicle_server.target,
        [("VH-3", "CHG-A", m, 0.5, 30.0) for m in range(130, 141)]
        + [("VH-3", "CHG-C", m + 0.5, 0.5, 30.0) for m in range(130, 141)],
    )
    window = {"start_time": at(120), "end_time": at(180)}
    response, _, code, details = unary(
        meter_servicer,
        METER,
        "ListReportingSummaries",
        summaries_request(meter_service_pb2, **window),
    )
    assert code == grpc.StatusCode.OK, details
    paced = {s.meter_id: s for s in response.reporting_summaries}["CHG-J"]
    assert (paced.received_count, paced.expected_count, paced.usual_interval.seconds) == (
        4,
        4,
        900,
    )
    assert gaps_in_minutes(paced) == []
    response, _, code, details = unary(
        vehicle_servicer,
        VEHICLE,
        "ListReportingSummaries",
        summaries_request(vehicle_service_pb2, **window),
    )
    assert code == grpc.StatusCode.OK, details
    both = {s.vehicle_id: s for s in response.reporting_summaries}["VH-3"]
    assert (both.received_count, both.expected_count, both.usual_interval.seconds) == (22, 11, 60)
    assert list(both.charger_ids) == ["CHG-A", "CHG-C"]
    [overlap] = both.charger_overlaps
    assert (minute_of(overlap.start_time), minute_of(overlap.end_time)) == (130.5, 140)


def test_an_empty_fleet_is_answered_not_an_internal_error(meter_server, vehicle_server):
    """No charger or vehicle ever reported: both fleet-wide calls answer an empty first page
    without a next token."""
    built = AnalyticsComponent(
        Settings(meter_target=meter_server.target, vehicle_target=vehicle_server.target)
    )
    try:
        server = servicer(ANALYTICS, built)
        page = completeness(server)
        assert (page.chargers, page.vehicles, page.next_page_token) == ([], [], "")
        assert page.charger_totals.device_count == 0
        request = analytics_service_pb2.ListChargerEfficienciesRequest(end_time=at(60))
        response, _, code, details = unary(server, ANALYTICS, "ListChargerEfficiencies", request)
        assert code == grpc.StatusCode.OK, details
        assert (list(response.charger_efficiencies), response.next_page_token) == ([], "")
        assert response.total_size == 0
    finally:
        built.stop()
