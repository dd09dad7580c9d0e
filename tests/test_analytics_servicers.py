"""Servicer tier for the correlation RPCs, driven through grpc_testing: SummarizeConsumption,
AttributeConsumption, ListChargingSessions and ListChargerSessions over a real PostgreSQL,
GetVehiclePerformance over real downstream servers. Expected figures are computed by hand from
the rule (README, "How correlation works"): a reading covers the interval ending at its
timestamp, back to its entity's previous reading within the reach, else one usual period (here
always a minute)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import grpc
import grpc_testing
import pytest
from energy.analytics.v1 import analytics_pb2, analytics_service_pb2
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.analytics.component import AnalyticsComponent
from services.common.config import Settings
from services.meter import component as meter_component
from services.vehicle import component as vehicle_component

METER = meter_service_pb2.DESCRIPTOR.services_by_name["MeterService"]
VEHICLE = vehicle_service_pb2.DESCRIPTOR.services_by_name["VehicleService"]
ANALYTICS = analytics_service_pb2.DESCRIPTOR.services_by_name["AnalyticsService"]
T0 = 1_770_681_600  # 2026-02-10T00:00:00Z


def at(minute: float) -> Timestamp:
    return Timestamp(seconds=T0 + round(minute * 60))


def seed(meter_target: str, vehicle_target: str) -> None:
    """CHG-1 draws 1.0 kWh a minute for 60 minutes; VH-A charges on it in minutes 0-9 (0.5 kWh
    DC each, 30 °C), VH-B in minutes 30-39 (0.75 kWh, 20 °C)."""
    with grpc.insecure_channel(meter_target) as channel:
        meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
            iter(
                [
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[
                            meter_pb2.MeterReading(
                                meter_id="CHG-1", kwh_consumed_ac=1.0, voltage=230, timestamp=at(m)
                            )
                            for m in range(60)
                        ]
                    )
                ]
            ),
            timeout=30,
        )
    readings = [
        vehicle_pb2.VehicleReading(
            vehicle_id=vehicle,
            charger_id="CHG-1",
            soc=50,
            kwh_delivered_dc=dc,
            battery_temp=temp,
            timestamp=at(m),
        )
        for vehicle, minutes, dc, temp in (
            ("VH-A", range(10), 0.5, 30.0),
            ("VH-B", range(30, 40), 0.75, 20.0),
        )
        for m in minutes
    ]
    with grpc.insecure_channel(vehicle_target) as channel:
        vehicle_service_pb2_grpc.VehicleServiceStub(channel).IngestReadings(
            iter([vehicle_service_pb2.IngestReadingsRequest(readings=readings)]), timeout=30
        )


def unary(server, service, method: str, request, timeout: float | None = None):
    rpc = server.invoke_unary_unary(service.methods_by_name[method], (), request, timeout)
    return rpc.termination()


def violations(server, service, method: str, request) -> list[str]:
    """The fields an INVALID_ARGUMENT names. grpc_testing's abort drops the trailing metadata
    that carries the google.rpc.BadRequest (the e2e tests read that), so they are read from the
    details, which list them as "field: why; field: why"."""
    _, _, code, details = unary(server, service, method, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    return [violation.split(": ", 1)[0] for violation in details.split("; ")]


def ingest_vehicles(target: str, readings: Sequence[tuple[str, str, float, float, float]]) -> None:
    """(vehicle, charger, minute, DC kWh, battery °C) readings, through VehicleService."""
    with grpc.insecure_channel(target) as channel:
        response = vehicle_service_pb2_grpc.VehicleServiceStub(channel).IngestReadings(
            iter(
                [
                    vehicle_service_pb2.IngestReadingsRequest(
                        readings=[
                            vehicle_pb2.VehicleReading(
                                vehicle_id=vehicle,
                                charger_id=charger,
                                soc=50,
                                kwh_delivered_dc=dc,
                                battery_temp=temp,
                                timestamp=at(minute),
                            )
                            for vehicle, charger, minute, dc, temp in readings
                        ]
                    )
                ]
            ),
            timeout=30,
        )
    assert (response.accepted, response.rejected) == (len(readings), 0)


@pytest.fixture
def seeded(meter_server, vehicle_server):
    seed(meter_server.target, vehicle_server.target)
    return meter_server, vehicle_server


@pytest.fixture
def meter_servicer(seeded, database_url):
    built = meter_component.build(Settings(database_url=database_url))
    yield grpc_testing.server_from_dictionary(
        {METER: built.servicer}, grpc_testing.strict_real_time()
    )
    built.engine.dispose()


@pytest.fixture
def vehicle_servicer(seeded, database_url):
    built = vehicle_component.build(Settings(database_url=database_url))
    yield grpc_testing.server_from_dictionary(
        {VEHICLE: built.servicer}, grpc_testing.strict_real_time()
    )
    built.engine.dispose()


@pytest.fixture
def analytics_servicer(seeded):
    meter_server, vehicle_server = seeded
    built = AnalyticsComponent(
        Settings(meter_target=meter_server.target, vehicle_target=vehicle_server.target)
    )
    yield grpc_testing.server_from_dictionary(
        {ANALYTICS: built.servicer}, grpc_testing.strict_real_time()
    )
    built.stop()


def test_summarize_consumption_sums_each_interval_in_order(meter_servicer):
    request = meter_service_pb2.SummarizeConsumptionRequest(
        intervals=[
            meter_pb2.ConsumptionInterval(charger_id="CHG-1", start_time=at(10), end_time=at(20)),
            meter_pb2.ConsumptionInterval(charger_id="CHG-9", start_time=at(0), end_time=at(60)),
            meter_pb2.ConsumptionInterval(charger_id="CHG-1", start_time=at(0), end_time=at(0.5)),
        ]
    )
    response, _, code, _ = unary(meter_servicer, METER, "SummarizeConsumption", request)
    assert code == grpc.StatusCode.OK
    # [10, 20) holds minutes 10..19: 10 readings of 1.0; CHG-9 never reported; [0, 0.5) minute 0.
    assert [(s.charger_id, s.kwh_consumed_ac, s.reading_count) for s in response.summaries] == [
        ("CHG-1", 10.0, 10),
        ("CHG-9", 0.0, 0),
        ("CHG-1", 1.0, 1),
    ]
    assert response.summaries[0].start_time == at(10)


def test_summarize_consumption_rejects_an_end_before_its_start(meter_servicer):
    request = meter_service_pb2.SummarizeConsumptionRequest(
        intervals=[
            meter_pb2.ConsumptionInterval(charger_id="CHG-1", start_time=at(5), end_time=at(4))
        ]
    )
    _, _, code, details = unary(meter_servicer, METER, "SummarizeConsumption", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "intervals[0].end_time" in details


def test_list_charging_sessions(vehicle_servicer):
    request = vehicle_service_pb2.ListChargingSessionsRequest(
        vehicle_id="VH-A", start_time=at(-60), end_time=at(120), session_gap=Duration(seconds=300)
    )
    response, _, code, _ = unary(vehicle_servicer, VEHICLE, "ListChargingSessions", request)
    assert code == grpc.StatusCode.OK
    [session] = response.sessions
    # Readings at minutes 0..9, a minute apart (usual period 60 s): the first covers minute -1..0,
    # so the span is -1..9; DC 10 x 0.5 = 5.0; temperatures 10 x 30 = 300.
    assert (session.charger_id, session.start_time, session.end_time) == ("CHG-1", at(-1), at(9))
    assert (session.reading_count, session.kwh_delivered_dc) == (10, 5.0)
    assert (session.battery_temp_sum, session.battery_temp_count) == (300.0, 10)
    assert (session.vehicle_id, session.first_reading_time, session.last_reading_time) == (
        "VH-A",
        at(0),
        at(9),
    )

    request.vehicle_id = "VH-404"
    _, _, code, _ = unary(vehicle_servicer, VEHICLE, "ListChargingSessions", request)
    assert code == grpc.StatusCode.NOT_FOUND


def _charger_sessions_request(charger_ids, start=-60.0, end=120.0):
    return vehicle_service_pb2.ListChargerSessionsRequest(
        charger_ids=charger_ids, start_time=at(start), end_time=at(end)
    )


def test_list_charger_sessions_gives_every_vehicle_by_charger_then_start(seeded, vehicle_servicer):
    # Besides VH-A (minutes 0..9) and VH-B (30..39) on CHG-1: VH-C on CHG-2 at minutes 5..7
    # (0.25 kWh, 40 °C), VH-A on CHG-2 at 40, 41 (1.0 kWh, 10 °C), VH-D on CHG-3 at 10.
    _, vehicle_server = seeded
    ingest_vehicles(
        vehicle_server.target,
        [("VH-C", "CHG-2", m, 0.25, 40.0) for m in (5, 6, 7)]
        + [("VH-A", "CHG-2", m, 1.0, 10.0) for m in (40, 41)]
        + [("VH-D", "CHG-3", 10, 0.5, 20.0)],
    )
    # CHG-9 was never named by a vehicle: no sessions, not an error; CHG-3 is not asked for.
    request = _charger_sessions_request(["CHG-2", "CHG-9", "CHG-1"])
    response, _, code, _ = unary(vehicle_servicer, VEHICLE, "ListChargerSessions", request)
    assert code == grpc.StatusCode.OK
    # Every reading covers the minute before it (a vehicle's previous reading on the same
    # charger a minute earlier, or none: one usual minute). (charger, vehicle, start, end, DC,
    # readings, temperature sum and count, first and last reading):
    # VH-A on CHG-1: -1..9, 10 x 0.5 = 5.0, 10 x 30 = 300; VH-B: 29..39, 10 x 0.75 = 7.5, 200;
    # VH-C on CHG-2: 4..7, 3 x 0.25 = 0.75, 120; VH-A on CHG-2: 39..41, 2 x 1.0 = 2.0, 20.
    assert [
        (
            s.charger_id,
            s.vehicle_id,
            s.start_time,
            s.end_time,
            s.kwh_delivered_dc,
            s.reading_count,
            s.battery_temp_sum,
            s.battery_temp_count,
            s.first_reading_time,
            s.last_reading_time,
        )
        for s in response.sessions
    ] == [
        ("CHG-1", "VH-A", at(-1), at(9), 5.0, 10, 300.0, 10, at(0), at(9)),
        ("CHG-1", "VH-B", at(29), at(39), 7.5, 10, 200.0, 10, at(30), at(39)),
        ("CHG-2", "VH-C", at(4), at(7), 0.75, 3, 120.0, 3, at(5), at(7)),
        ("CHG-2", "VH-A", at(39), at(41), 2.0, 2, 20.0, 2, at(40), at(41)),
    ]


def test_list_charger_sessions_rejects_repeated_malformed_and_too_many_ids(vehicle_servicer):
    def fields(charger_ids):
        request = _charger_sessions_request(charger_ids)
        return violations(vehicle_servicer, VEHICLE, "ListChargerSessions", request)

    assert fields(["CHG-1", "CHG-2", "CHG-1"]) == ["charger_ids[2]"]
    assert fields(["CHG-1", "bad id"]) == ["charger_ids[1]"]
    assert fields([f"CHG-{i}" for i in range(1001)]) == ["charger_ids"]
    # 1000 distinct ids are accepted.
    request = _charger_sessions_request([f"CHG-{i}" for i in range(1000)])
    response, _, code, _ = unary(vehicle_servicer, VEHICLE, "ListChargerSessions", request)
    assert code == grpc.StatusCode.OK
    assert len(response.sessions) == 2  # VH-A and VH-B on CHG-1


def _range(charger_id, start, end):
    return vehicle_service_pb2.ChargerTimeRange(
        charger_id=charger_id, start_time=at(start), end_time=at(end)
    )


def _brief(response):
    return [
        (s.charger_id, s.vehicle_id, s.start_time, s.end_time, s.kwh_delivered_dc)
        for s in response.sessions
    ]


def test_list_charger_sessions_around_ranges_finds_the_vehicles_read_there(
    seeded, vehicle_servicer
):
    # As above: VH-A on CHG-1 at minutes 0..9 and on CHG-2 at 40, 41; VH-B on CHG-1 at 30..39;
    # VH-C on CHG-2 at 5..7.
    _, vehicle_server = seeded
    ingest_vehicles(
        vehicle_server.target,
        [("VH-C", "CHG-2", m, 0.25, 40.0) for m in (5, 6, 7)]
        + [("VH-A", "CHG-2", m, 1.0, 10.0) for m in (40, 41)],
    )
    request = _charger_sessions_request([])
    # CHG-1 from minute 20 to 45 holds VH-B's readings, not VH-A's; CHG-2 from 0 to 10 holds
    # VH-C's, not VH-A's (40, 41). Each found vehicle's sessions on that charger are what the
    # whole window gives them.
    request.ranges.extend([_range("CHG-1", 20, 45), _range("CHG-2", 0, 10)])
    response, _, code, _ = unary(vehicle_servicer, VEHICLE, "ListChargerSessions", request)
    assert code == grpc.StatusCode.OK
    assert _brief(response) == [
        ("CHG-1", "VH-B", at(29), at(39), 7.5),
        ("CHG-2", "VH-C", at(4), at(7), 0.75),
    ]
    # The range's ends count (inclusive): CHG-2 from 7 to 40 finds VH-C by its reading at 7 and
    # VH-A by its reading at 40, read from 30 minutes before (minute 10: its reading at 9 on
    # CHG-1 is not read), its first interval one usual minute long as over the whole window.
    del request.ranges[:]
    request.ranges.append(_range("CHG-2", 7, 40))
    response, _, code, _ = unary(vehicle_servicer, VEHICLE, "ListChargerSessions", request)
    assert _brief(response) == [
        ("CHG-2", "VH-C", at(4), at(7), 0.75),
        ("CHG-2", "VH-A", at(39), at(41), 2.0),
    ]
    # The caller's own vehicle left out.
    request.excluded_vehicle_id = "VH-A"
    response, _, code, _ = unary(vehicle_servicer, VEHICLE, "ListChargerSessions", request)
    assert _brief(response) == [("CHG-2", "VH-C", at(4), at(7), 0.75)]


def test_list_charger_sessions_rejects_malformed_ranges_and_excluded_vehicle(vehicle_servicer):
    def fields(ranges, excluded=""):
        request = _charger_sessions_request([])
        request.ranges.extend(ranges)
        request.excluded_vehicle_id = excluded
        return violations(vehicle_servicer, VEHICLE, "ListChargerSessions", request)

    assert fields([_range("CHG-1", 0, 10), _range("bad id", 0, 10)]) == ["ranges[1].charger_id"]
    assert fields([_range("CHG-1", 10, 9)]) == ["ranges[0].end_time"]
    unset = vehicle_service_pb2.ChargerTimeRange(charger_id="CHG-1", end_time=at(5))
    assert fields([unset]) == ["ranges[0].start_time"]
    outside = _range("CHG-1", 0, 10)
    outside.end_time.seconds = 253402300800  # 10000-01-01: past the Timestamp range
    assert fields([outside]) == ["ranges[0].end_time"]
    assert fields([_range("CHG-1", 0, 10)], excluded="VH A") == ["excluded_vehicle_id"]
    assert fields([_range(f"CHG-{i}", 0, 10) for i in range(10_001)]) == ["ranges"]


def _span(start, end, dc=1.0, charger_id="CHG-1"):
    return meter_pb2.SessionSpan(
        charger_id=charger_id, start_time=at(start), end_time=at(end), kwh_delivered_dc=dc
    )


def _attribute_request(sessions, others=(), start=0.0, end=60.0):
    return meter_service_pb2.AttributeConsumptionRequest(
        sessions=sessions, other_sessions=others, start_time=at(start), end_time=at(end)
    )


def _attributed(meter_servicer, request):
    response, _, code, details = unary(meter_servicer, METER, "AttributeConsumption", request)
    assert code == grpc.StatusCode.OK, details
    return [
        (
            c.charger_id,
            c.start_time,
            c.end_time,
            c.kwh_consumed_ac,
            c.reading_count,
            c.covered_duration.seconds,
        )
        for c in response.consumptions
    ]


def test_attribute_consumption_splits_a_meter_interval_by_overlap(meter_servicer):
    # CHG-1's meter reads 1.0 kWh at minutes 0..59, a minute apart: reading m covers m-1..m.
    # Back-to-back sessions 10..20.25 and 20.25..30: the interval 20..21 overlaps the first by
    # 15 s and the second by 45 s: 0.25 and 0.75. First: intervals ending 11..20 (10.0) + 0.25 =
    # 10.25 from 11 readings, covering 10 min 15 s = 615 s; second: 0.75 + intervals ending
    # 22..30 (9.0) = 9.75 from 10 readings, covering 45 + 540 = 585 s. Together 20.0, the meter's
    # minutes 11..30, none twice.
    first, second = _span(10, 20.25, 2.0), _span(20.25, 30, 3.0)
    assert _attributed(meter_servicer, _attribute_request([first, second])) == [
        ("CHG-1", at(10), at(20.25), 10.25, 11, 615),
        ("CHG-1", at(20.25), at(30), 9.75, 10, 585),
    ]
    # The second as another vehicle's session: it still takes its share; only the first is
    # answered.
    assert _attributed(meter_servicer, _attribute_request([first], [second])) == [
        ("CHG-1", at(10), at(20.25), 10.25, 11, 615),
    ]
    # Alone, the first takes all of the interval 20..21: 11.0.
    assert _attributed(meter_servicer, _attribute_request([first])) == [
        ("CHG-1", at(10), at(20.25), 11.0, 11, 615),
    ]
    # The window's start cuts an interval by time: in [10.5, 60), the session 10.5..12 gets
    # the half of 10..11 inside (0.5) and 11..12 (1.0): 1.5 from 2 readings, covering 90 s.
    assert _attributed(
        meter_servicer, _attribute_request([_span(10.5, 12)], start=10.5, end=60)
    ) == [("CHG-1", at(10.5), at(12), 1.5, 2, 90)]
    # No session: nothing to answer.
    assert _attributed(meter_servicer, _attribute_request([])) == []


def test_attribute_consumption_rejects_bad_spans_naming_the_field(meter_servicer):
    def fields(request):
        return violations(meter_servicer, METER, "AttributeConsumption", request)

    good = _span(10, 20)
    assert fields(_attribute_request([good, _span(20, 30, -0.5)])) == [
        "sessions[1].kwh_delivered_dc"
    ]
    assert fields(_attribute_request([_span(10, 20, math.nan)])) == ["sessions[0].kwh_delivered_dc"]
    assert fields(_attribute_request([good], [_span(20, 30, math.inf)])) == [
        "other_sessions[0].kwh_delivered_dc"
    ]
    # A span starting before the window [0, 60).
    assert fields(_attribute_request([_span(-1, 5)])) == ["sessions[0].start_time"]
    # A span ending before it starts.
    assert fields(_attribute_request([good, _span(30, 20)])) == ["sessions[1].end_time"]
    # Unset times: of a span, of the window.
    unset = meter_pb2.SessionSpan(charger_id="CHG-1", start_time=at(10), kwh_delivered_dc=1.0)
    assert fields(_attribute_request([good, unset])) == ["sessions[1].end_time"]
    request = _attribute_request([good])
    request.ClearField("start_time")
    assert fields(request) == ["start_time"]


def test_get_vehicle_performance_splits_a_shared_charger(analytics_servicer):
    request = analytics_service_pb2.GetVehiclePerformanceRequest(
        vehicle_id="VH-B", end_time=at(24 * 60)
    )
    performance, _, code, _ = unary(
        analytics_servicer, ANALYTICS, "GetVehiclePerformance", request, timeout=10
    )
    assert code == grpc.StatusCode.OK
    # VH-B: readings at minutes 30..39, span 29..39 (the first covers the minute before it);
    # the meter intervals ending 30..39 overlap it (29..30 .. 38..39), VH-A's session (-1..9)
    # none of them: 10 x 1.0 kWh AC; DC = 10 x 0.75 = 7.5; efficiency 0.75; loss 2.5.
    assert performance.total_energy_consumed_ac == 10.0
    assert performance.total_energy_delivered_dc == 7.5
    assert performance.efficiency_ratio == 0.75
    assert performance.energy_loss_kwh == 2.5
    assert performance.avg_battery_temperature == 20.0
    assert (performance.data_points, performance.meter_data_points) == (10, 10)
    assert [s.charger_id for s in performance.sessions] == ["CHG-1"]


@pytest.mark.parametrize(
    ("start", "end"), [(-1800, 600), (-60, 1200)], ids=["across the epoch", "just after it"]
)
def test_sessions_of_a_window_near_1970_are_read_not_overflowed(vehicle_servicer, start, end):
    # Times near the epoch are small numbers of microseconds: the bounds read around the window
    # (30 minutes and the session gap on either side) must not overflow 32-bit arithmetic.
    for method, request in (
        (
            "ListChargingSessions",
            vehicle_service_pb2.ListChargingSessionsRequest(
                vehicle_id="VH-A",
                start_time=Timestamp(seconds=start),
                end_time=Timestamp(seconds=end),
            ),
        ),
        (
            "ListChargerSessions",
            vehicle_service_pb2.ListChargerSessionsRequest(
                charger_ids=["CHG-1"],
                ranges=[
                    vehicle_service_pb2.ChargerTimeRange(
                        charger_id="CHG-1",
                        start_time=Timestamp(seconds=start),
                        end_time=Timestamp(seconds=end),
                    )
                ],
                start_time=Timestamp(seconds=start),
                end_time=Timestamp(seconds=end),
            ),
        ),
    ):
        response, _, code, details = unary(vehicle_servicer, VEHICLE, method, request)
        assert code == grpc.StatusCode.OK, details
        assert list(response.sessions) == []  # VH-A and VH-B charged in 2026


def test_get_vehicle_performance_rejects_a_window_over_31_days(analytics_servicer):
    request = analytics_service_pb2.GetVehiclePerformanceRequest(
        vehicle_id="VH-A", window=Duration(seconds=31 * 86400 + 1)
    )
    _, _, code, details = unary(analytics_servicer, ANALYTICS, "GetVehiclePerformance", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "window" in details


def _efficiencies(server, **fields):
    request = analytics_service_pb2.ListChargerEfficienciesRequest(
        end_time=at(120), window=Duration(seconds=3 * 3600), **fields
    )
    return unary(server, ANALYTICS, "ListChargerEfficiencies", request)


def test_list_charger_efficiencies_ranks_chargers_with_their_figures(analytics_servicer, seeded):
    # Besides the seed's CHG-1: CHG-2 reads 0.25 kWh at minutes 0..3 and no vehicle uses it.
    meter_server, _ = seeded
    with grpc.insecure_channel(meter_server.target) as channel:
        meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
            iter(
                [
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[
                            meter_pb2.MeterReading(
                                meter_id="CHG-2", kwh_consumed_ac=0.25, voltage=230, timestamp=at(m)
                            )
                            for m in range(4)
                        ]
                    )
                ]
            ),
            timeout=30,
        )
    response, _, code, details = _efficiencies(analytics_servicer)
    assert code == grpc.StatusCode.OK, details
    assert [row.charger_id for row in response.charger_efficiencies] == ["CHG-1", "CHG-2"]
    assert (response.start_time, response.end_time, response.total_size) == (at(-60), at(120), 2)
    busy, idle = response.charger_efficiencies
    # CHG-1: VH-A's session -1..9 takes the meter intervals ending at minutes 0..9 (10.0 kWh
    # AC, 5.0 DC), VH-B's 29..39 those ending at 30..39 (10.0 AC, 7.5 DC): AC 20.0, DC 12.5,
    # efficiency 0.625, loss 7.5, all covered; the meter read 60.0 in the window, so 40.0 is
    # standby. The window before (3 hours earlier) holds nothing.
    now = busy.current
    assert (now.energy_consumed_ac, now.energy_delivered_dc) == (20.0, 12.5)
    assert (now.efficiency_ratio, now.energy_loss_kwh, now.standby_energy_kwh) == (0.625, 7.5, 40.0)
    assert (now.session_count, now.vehicle_count, now.ac_coverage) == (2, 2, 1.0)
    assert list(now.quality_flags) == []
    before = busy.previous
    assert (before.session_count, before.energy_delivered_dc) == (0, 0.0)
    assert not before.HasField("efficiency_ratio") and not before.HasField("standby_energy_kwh")
    assert not busy.HasField("efficiency_change") and list(busy.outlier_reasons) == []
    # CHG-2: no session, all of its 1.0 kWh standby, efficiency unknown (listed last).
    assert (idle.current.session_count, idle.current.standby_energy_kwh) == (0, 1.0)
    assert not idle.current.HasField("efficiency_ratio")
    # Too few sessions (fewer than OUTLIER_MIN_SESSIONS) for a fleet median.
    assert not response.HasField("fleet_median_efficiency")


def test_list_charger_efficiencies_pages_and_filters(analytics_servicer, seeded):
    meter_server, _ = seeded
    with grpc.insecure_channel(meter_server.target) as channel:
        meter_service_pb2_grpc.MeterServiceStub(channel).IngestReading(
            meter_service_pb2.IngestReadingRequest(
                reading=meter_pb2.MeterReading(
                    meter_id="CHG-2", kwh_consumed_ac=0.25, voltage=230, timestamp=at(1)
                )
            ),
            timeout=30,
        )
    first, _, code, _ = _efficiencies(analytics_servicer, page_size=1)
    assert code == grpc.StatusCode.OK
    assert [r.charger_id for r in first.charger_efficiencies] == ["CHG-1"]
    assert first.next_page_token and first.total_size == 2
    second, _, code, _ = _efficiencies(
        analytics_servicer, page_size=1, page_token=first.next_page_token
    )
    assert code == grpc.StatusCode.OK
    assert [r.charger_id for r in second.charger_efficiencies] == ["CHG-2"]
    assert second.next_page_token == ""
    # The window is pinned by the first page: without end_time the second page keeps the
    # first's "now"; a token is refused with another window or other charger_ids.
    now_first, _, _, _ = unary(
        analytics_servicer,
        ANALYTICS,
        "ListChargerEfficiencies",
        analytics_service_pb2.ListChargerEfficienciesRequest(page_size=1),
    )
    time.sleep(1.1)
    now_second, _, code, _ = unary(
        analytics_servicer,
        ANALYTICS,
        "ListChargerEfficiencies",
        analytics_service_pb2.ListChargerEfficienciesRequest(
            page_size=1, page_token=now_first.next_page_token
        ),
    )
    assert code == grpc.StatusCode.OK
    assert now_second.end_time == now_first.end_time
    for other in (
        {"window": Duration(seconds=3600)},
        {"end_time": at(121)},
        {"charger_ids": ["CHG-1"]},
    ):
        assert violations(
            analytics_servicer,
            ANALYTICS,
            "ListChargerEfficiencies",
            analytics_service_pb2.ListChargerEfficienciesRequest(
                page_size=1, page_token=first.next_page_token, **other
            ),
        ) == ["page_token"], other
    # Only the chargers asked for: one no meter ever reported is listed, with unknown AC.
    only, _, code, _ = _efficiencies(analytics_servicer, charger_ids=["CHG-9", "CHG-1"])
    assert code == grpc.StatusCode.OK
    assert [r.charger_id for r in only.charger_efficiencies] == ["CHG-1", "CHG-9"]
    assert not only.charger_efficiencies[1].current.HasField("standby_energy_kwh")
    assert violations(
        analytics_servicer,
        ANALYTICS,
        "ListChargerEfficiencies",
        analytics_service_pb2.ListChargerEfficienciesRequest(charger_ids=["ok-1", "bad id"]),
    ) == ["charger_ids[1]"]
    assert violations(
        analytics_servicer,
        ANALYTICS,
        "ListChargerEfficiencies",
        analytics_service_pb2.ListChargerEfficienciesRequest(page_token="forged"),
    ) == ["page_token"]
    assert violations(
        analytics_servicer,
        ANALYTICS,
        "ListChargerEfficiencies",
        analytics_service_pb2.ListChargerEfficienciesRequest(window=Duration(seconds=-1)),
    ) == ["window"]


def ingest_meters(target: str, readings: Sequence[tuple[str, float, float]]) -> None:
    """(charger, minute, kWh AC) readings, through MeterService."""
    with grpc.insecure_channel(target) as channel:
        response = meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings(
            iter(
                [
                    meter_service_pb2.IngestReadingsRequest(
                        readings=[
                            meter_pb2.MeterReading(
                                meter_id=charger, kwh_consumed_ac=kwh, voltage=230, timestamp=at(m)
                            )
                            for charger, m, kwh in readings
                        ]
                    )
                ]
            ),
            timeout=30,
        )
    assert (response.accepted, response.rejected) == (len(readings), 0)


def test_standby_is_the_meters_energy_in_the_window_no_session_took(analytics_servicer, seeded):
    """Standby and attributed AC cut the same intervals the same way at the window's edges,
    and an implausible interval is in neither."""
    meter_server, vehicle_server = seeded
    # CHG-E: a 15-minute meter (readings at minutes 7, 22, 37, 52 of 3.0 kWh, 67 of 30.0);
    # VH-E charges on it from minute 55 to 65, across the window's end at minute 60.
    # CHG-W: 1.0 kWh a minute 0..29, but 1000.0 at minute 20 (Wh sent as kWh); VH-W charges
    # on it at minutes 10..19.
    ingest_meters(
        meter_server.target,
        [("CHG-E", m, 3.0) for m in (7, 22, 37, 52)]
        + [("CHG-E", 67, 30.0)]
        + [("CHG-W", m, 1000.0 if m == 20 else 1.0) for m in range(30)],
    )
    ingest_vehicles(
        vehicle_server.target,
        [("VH-E", "CHG-E", m, 0.4, 25.0) for m in range(55, 66)]
        + [("VH-W", "CHG-W", m, 0.9, 25.0) for m in range(10, 20)],
    )
    request = analytics_service_pb2.ListChargerEfficienciesRequest(
        end_time=at(60), window=Duration(seconds=3600), charger_ids=["CHG-E", "CHG-W"]
    )
    response, _, code, details = unary(
        analytics_servicer, ANALYTICS, "ListChargerEfficiencies", request
    )
    assert code == grpc.StatusCode.OK, details
    figures = {row.charger_id: row.current for row in response.charger_efficiencies}
    # CHG-E in [0, 60): the first interval [-8, 7] has 7/15 of its 3.0 inside (1.4), then
    # 3 x 3.0, and [52, 67] 8/15 of its 30.0 (16.0), all of which the session (54..60 inside)
    # takes: attributed 16.0, standby 1.4 + 9.0 = 10.4; together the meter's 26.4.
    edge = figures["CHG-E"]
    assert edge.energy_consumed_ac == pytest.approx(16.0)
    assert edge.standby_energy_kwh == pytest.approx(10.4)
    # CHG-W: the session 9..19 takes the intervals ending at 10..19 (10.0); the one ending at
    # 20 implies 60,000 kW and is excluded from both, and flags the charger; standby is the
    # intervals ending at 1..9 and 21..29 (the one ending at 0, the window's start, belongs to
    # the window before): 18.0.
    wasted = figures["CHG-W"]
    assert (wasted.energy_consumed_ac, wasted.standby_energy_kwh) == (10.0, 18.0)
    assert analytics_pb2.QUALITY_FLAG_IMPLAUSIBLE_METER_DATA in wasted.quality_flags
