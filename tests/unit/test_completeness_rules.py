"""The completeness rules as pure logic (no database): what a device's readings' times say
about how completely it reported, and how AnalyticsService ranks, totals and cross-checks the
devices."""

from __future__ import annotations

import pytest

from services.analytics.downstream import ChargerOverlap, DeviceReport
from services.analytics.reporting import (
    CompletenessKey,
    completeness_page,
    totals,
    unreported_chargers,
)
from services.common.errors import InvalidArgument
from services.common.paging import encode_token
from services.readings.reporting import summarize_reporting
from services.readings.repository import ReportingRow

S = 1_000_000
MINUTE = 60 * S
HOUR = 60 * MINUTE


def row(**fields) -> ReportingRow:
    base = dict(
        device_id="D",
        received=0,
        usual_interval_us=None,
        first_us=None,
        last_us=None,
        covered_us=0,
        stretches=0,
        gaps=[],
        conflicts=0,
    )
    return ReportingRow(**{**base, **fields})


def test_a_meter_is_expected_all_window_and_its_edges_are_gaps():
    # Readings every minute from minute 10 to 40 of an hour: 31 of 60; silent at both ends.
    summary = summarize_reporting(
        row(received=31, usual_interval_us=60.0 * S, first_us=10 * MINUTE, last_us=40 * MINUTE),
        0,
        HOUR,
        5 * MINUTE,
        continuous=True,
    )
    assert (summary.expected, summary.received) == (60, 31)
    assert summary.gaps == [(0, 10 * MINUTE), (40 * MINUTE, HOUR)]
    assert summary.threshold_us == 5 * MINUTE


def test_a_slow_meter_is_not_a_gap_at_every_reading():
    # A 15-minute meter: the threshold is twice its interval (30 min), not the 5-minute gap;
    # its first reading 20 minutes in is no gap, a silence of 40 minutes at the end is.
    summary = summarize_reporting(
        row(received=1, usual_interval_us=900.0 * S, first_us=20 * MINUTE, last_us=20 * MINUTE),
        0,
        HOUR,
        5 * MINUTE,
        continuous=True,
    )
    assert summary.threshold_us == 30 * MINUTE
    assert summary.expected == 4
    assert summary.gaps == [(20 * MINUTE, HOUR)]


def test_a_silent_device_of_unknown_interval_expects_nothing_it_cannot_know():
    meter = summarize_reporting(row(), 0, HOUR, 5 * MINUTE, continuous=True)
    assert (meter.expected, meter.usual_interval_us, meter.gaps) == (None, None, [(0, HOUR)])
    vehicle = summarize_reporting(row(), 0, HOUR, 5 * MINUTE, continuous=False)
    assert (vehicle.expected, vehicle.gaps) == (None, [])


def test_a_vehicle_is_expected_only_in_its_stretches():
    # Two stretches covering 4 and 9 minutes at one reading a minute: 4 + 1 + 9 + 1 = 15.
    summary = summarize_reporting(
        row(
            received=14,
            usual_interval_us=60.0 * S,
            first_us=0,
            last_us=50 * MINUTE,
            covered_us=13 * MINUTE,
            stretches=2,
            gaps=[(4 * MINUTE, 41 * MINUTE)],
        ),
        0,
        HOUR,
        5 * MINUTE,
        continuous=False,
    )
    assert (summary.expected, summary.received) == (15, 14)
    assert summary.gaps == [(4 * MINUTE, 41 * MINUTE)]


def report(device_id, received, expected, *, charger_ids=(), overlaps=(), gaps=(), conflicts=0):
    return DeviceReport(
        device_id=device_id,
        received=received,
        expected=expected,
        usual_interval_us=MINUTE,
        gaps=list(gaps),
        conflicts=conflicts,
        charger_ids=list(charger_ids),
        overlaps=list(overlaps),
    )


def test_unreported_chargers_come_with_their_case_near_matches():
    chargers = [report("CHG-7", 60, 60), report("chg-9", 60, 60), report("CHG-9", 1, 60)]
    vehicles = [
        report("VH-2", 10, 10, charger_ids=["chg-7", "CHG-7"]),
        report("VH-1", 10, 10, charger_ids=["chg-7"]),
        report("VH-3", 10, 10, charger_ids=["NEW-1", "Chg-9"]),
    ]
    found = unreported_chargers(chargers, vehicles)
    assert [(u.charger_id, u.near_matches, u.vehicle_ids) for u in found] == [
        ("Chg-9", ["CHG-9", "chg-9"], ["VH-3"]),
        ("NEW-1", [], ["VH-3"]),
        ("chg-7", ["CHG-7"], ["VH-1", "VH-2"]),
    ]


def test_pages_run_through_chargers_then_vehicles_least_complete_first():
    overlap = ChargerOverlap("VH-2", "A", "B", 5 * MINUTE, 5 * MINUTE)
    chargers = [
        report("C-1", 60, 60),
        report("C-2", 30, 60, gaps=[(0, 1)]),
        report("C-3", 0, None),  # reported once before, silent now: with the silent ones
        report("C-4", 5, None),  # interval unknown but readings came: unknown, last
    ]
    vehicles = [report("VH-1", 9, 10), report("VH-2", 5, 10, overlaps=[overlap], conflicts=2)]

    def page_after(after):
        return completeness_page(chargers, vehicles, 0, HOUR, page_size=2, after=after)

    def resumed(page):
        key = CompletenessKey.parse(page.next_page_token)
        assert key is not None and (key.end_us, key.window_us) == (HOUR, HOUR)
        return (key.vehicles, key.after)

    first = page_after(None)
    assert [c.device_id for c in first.chargers] == ["C-3", "C-2"] and first.vehicles == []
    second = page_after(resumed(first))
    assert [c.device_id for c in second.chargers] == ["C-1", "C-4"] and second.vehicles == []
    third = page_after(resumed(second))
    assert third.chargers == [] and [v.device_id for v in third.vehicles] == ["VH-2", "VH-1"]
    assert third.next_page_token == "" and third.overlaps == [overlap]
    summed = totals(vehicles)
    assert (summed.devices, summed.expected, summed.received, summed.conflicts) == (2, 20, 14, 2)
    # A device whose figures changed between two pages: the others are each listed once.
    chargers[1] = report("C-2", 60, 60)  # C-2 caught up after the first page
    second = page_after(resumed(first))
    assert [c.device_id for c in second.chargers] == ["C-1", "C-2"]


@pytest.mark.parametrize(
    "text",
    [
        "completeness|3600000000|3600000000|x|0|0.5|C-1",  # no such list
        "completeness|3600000000|3600000000|c|2|0.5|C-1",  # no such rank
        "completeness|3600000000|3600000000|c|0|nan|C-1",
        "completeness|3600000000|0|c|0|0.5|C-1",  # no window
        "completeness|1000000000000000000000000000000|3600000000|c|0|0.5|C-1",  # past year 9999
        "completeness|3600000000|3600000000|c|0|0.5|bad id",
        "other|3600000000|3600000000|c|0|0.5|C-1",
    ],
)
def test_a_token_not_issued_is_refused_naming_page_token(text):
    with pytest.raises(InvalidArgument) as refused:
        CompletenessKey.parse(encode_token(text))
    assert [field for field, _ in refused.value.violations] == ["page_token"]
