"""ListChargerEfficiencies' pure parts: a charger's figures from its sessions and the AC
attributed to them, the spans its meter is asked about, the outlier rule (median and MAD over
the fleet, the drop against the window before), and the order and page keys. Expected values
computed by hand."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.analytics.chargers import (
    ChargerEfficiency,
    ChargerFigures,
    Outlier,
    OutlierRule,
    PageKey,
    charger_figures,
    chargers_digest,
    occupied_spans,
    outliers,
    sort_key,
)
from services.analytics.correlation import Consumption, Quality, Session, figures
from services.common.errors import InvalidArgument
from services.common.paging import encode_token

MINUTE = 60_000_000


def session(vehicle: str, start_min: int, end_min: int, dc: float) -> Session:
    return Session(
        vehicle_id=vehicle,
        charger_id="CHG-1",
        start_us=start_min * MINUTE,
        end_us=end_min * MINUTE,
        kwh_delivered_dc=dc,
        reading_count=end_min - start_min,
        battery_temp_sum=0.0,
        battery_temp_count=0,
        first_reading_us=(start_min + 1) * MINUTE,
        last_reading_us=end_min * MINUTE,
    )


def used(ac: float, covered_min: int, readings: int) -> Consumption:
    return Consumption(
        kwh_consumed_ac=ac,
        reading_count=readings,
        covered_us=covered_min * MINUTE,
        implausible_count=0,
        unknown_energy_count=0,
    )


def test_a_chargers_figures_sum_its_sessions_and_standby_is_the_rest_of_its_ac() -> None:
    # VH-A 0..10 (DC 4.5, AC 5.0, fully covered), VH-B 20..40 (DC 9.0, AC 10.0, 15 of 20
    # minutes covered) and VH-A again 50..60 (DC 1.0, AC 1.0): the meter's intervals in the
    # window (a span over all of it) hold 25.0 kWh.
    sessions = [session("VH-A", 0, 10, 4.5), session("VH-B", 20, 40, 9.0)]
    sessions.append(session("VH-A", 50, 60, 1.0))
    consumption = [used(5.0, 10, 10), used(10.0, 15, 15), used(1.0, 10, 10)]
    item = charger_figures(sessions, consumption, used(25.0, 60, 60))
    # AC 16.0, DC 14.5, efficiency 14.5 / 16 = 0.90625, loss 1.5; covered 35 of 40 minutes
    # (0.875: METER_DATA_PARTIAL); standby 25.0 - 16.0 = 9.0; 3 sessions of 2 vehicles.
    assert item.figures.energy_consumed_ac == 16.0
    assert item.figures.energy_delivered_dc == 14.5
    assert item.figures.efficiency_ratio == 0.90625
    assert item.figures.energy_loss_kwh == 1.5
    assert item.figures.ac_coverage == 0.875
    assert item.figures.flags == (Quality.METER_DATA_PARTIAL,)
    assert (item.standby_kwh, item.session_count, item.vehicle_count) == (9.0, 3, 2)


def test_a_charger_without_sessions_has_only_standby_and_one_without_meter_has_none() -> None:
    idle = charger_figures([], [], used(3.5, 15, 15))
    assert idle.figures.energy_consumed_ac == 0.0  # nothing to attribute: exactly 0
    assert idle.figures.efficiency_ratio is None
    assert (idle.standby_kwh, idle.session_count, idle.vehicle_count) == (3.5, 0, 0)
    # No interval of known, plausible energy covers any of the window (registers of unknown
    # energy, or an implausible reading): standby cannot be known.
    unknown = charger_figures([], [], used(0.0, 0, 0))
    assert unknown.standby_kwh is None
    # Sessions, but the charger never reported: AC unknown, flagged.
    missing = charger_figures([session("VH-A", 0, 10, 4.5)], [used(0.0, 0, 0)], used(0.0, 0, 0))
    assert missing.figures.energy_consumed_ac is None
    assert missing.figures.efficiency_ratio is None
    assert Quality.METER_DATA_MISSING in missing.figures.flags
    assert missing.standby_kwh is None


def with_efficiency(efficiency: float | None, sessions: int = 5) -> ChargerFigures:
    ac = 100.0
    dc = ac * efficiency if efficiency is not None else 0.0
    made = figures(
        ac=ac if efficiency is not None else 0.0,
        covered_us=MINUTE if efficiency is not None else 0,
        span_us=MINUTE,
        dc=dc,
        temp_sum=0.0,
        temp_count=0,
        data_points=sessions,
        meter_points=sessions,
        meter_readings_seen=sessions if efficiency is not None else 0,
        implausible=0,
        flags=(),
    )
    return ChargerFigures(made, 0.0, sessions, sessions)


RULE = OutlierRule(min_sessions=3, mad_threshold=3.5, min_points=0.02, drop_points=0.015)


def test_the_fleet_rule_finds_the_charger_far_below_the_median_and_the_drop() -> None:
    current = {
        "C1": with_efficiency(0.90),
        "C2": with_efficiency(0.91),
        "C3": with_efficiency(0.92),
        "C4": with_efficiency(0.93),
        "C5": with_efficiency(0.89),
        "C6": with_efficiency(0.90),
        "C7": with_efficiency(0.70),
        "C8": with_efficiency(0.50, sessions=2),  # too few sessions to be compared
        "C9": with_efficiency(None),  # unknown
    }
    previous = {**current, "C3": with_efficiency(0.94), "C1": with_efficiency(0.91)}
    reasons, median, mad = outliers(current, previous, RULE)
    # C1..C7: median 0.90; deviations 0, .01, .02, .03, .01, 0, .20 → MAD 0.01, so the bar is
    # max(3.5 x 1.4826 x 0.01 = 0.0519, 0.02): only C7 (0.20 below) is below the fleet.
    assert median == pytest.approx(0.90)
    assert mad == pytest.approx(0.01)
    # C3 fell 0.94 → 0.92 (0.02 ≥ 0.015); C1 0.91 → 0.90 (0.01) did not.
    assert reasons == {"C7": (Outlier.BELOW_FLEET,), "C3": (Outlier.DROPPED,)}


def test_a_healthy_fleet_has_no_outlier_and_an_empty_one_no_median() -> None:
    healthy = {f"C{i}": with_efficiency(0.85 + 0.01 * i) for i in range(10)}
    assert outliers(healthy, healthy, RULE)[0] == {}
    assert outliers({}, {}, RULE) == ({}, None, None)
    assert outliers({"C1": with_efficiency(0.9, sessions=1)}, {}, RULE) == ({}, None, None)


def row(charger_id: str, efficiency: float | None) -> ChargerEfficiency:
    figures_of = with_efficiency(efficiency)
    return ChargerEfficiency(charger_id, figures_of, figures_of, None, ())


def test_worst_first_unknown_last_and_page_keys_round_trip() -> None:
    rows = [row("B", 0.9), row("A", None), row("C", 0.8), row("D", 0.9)]
    assert [r.charger_id for r in sorted(rows, key=sort_key)] == ["C", "B", "D", "A"]
    digest = chargers_digest(["CHG-2", "CHG-1", "CHG-2"])
    assert digest == chargers_digest(["CHG-1", "CHG-2"]) != chargers_digest(["CHG-1"])
    for item in rows:
        key = PageKey(1_770_768_000_000_000, 86_400_000_000, digest, sort_key(item))
        assert PageKey.parse(key.token()) == key
    assert PageKey.parse("") is None
    good = f"1|2|{digest}"
    for forged in (
        f"{good}|2|0.5|C",  # no such rank
        f"{good}|0|x|C",
        f"{good}|0|nan|C",
        f"{good}|0|inf|C",
        f"{good}|0|-0.5|C",
        f"{good}|1|0.5|C",  # unknown efficiency carries no value
        f"{good}|0|0.8|C2|x",  # not an id
        f"{good}|0|0.8|",
        f"1|0|{digest}|0|0.8|C",  # no window
        "1|2|short|0|0.8|C",
        "nothing",
    ):
        with pytest.raises(InvalidArgument):
            PageKey.parse(encode_token(forged))


def test_a_charger_whose_meter_covers_part_of_its_sessions_is_not_compared() -> None:
    """C8's meter stopped halfway: its AC covers half its sessions and it reads as 1.6
    efficient (METER_DATA_PARTIAL, EFFICIENCY_OUT_OF_RANGE). It neither moves the median nor
    is called an outlier; nor is C9, whose window before was partial, said to have dropped."""
    partial = with_efficiency(1.6)
    partial = ChargerFigures(
        replace(
            partial.figures, flags=(Quality.METER_DATA_PARTIAL, Quality.EFFICIENCY_OUT_OF_RANGE)
        ),
        0.0,
        5,
        5,
    )
    current = {f"C{i}": with_efficiency(0.90 + 0.01 * i) for i in range(5)}
    current["C8"] = partial
    current["C9"] = with_efficiency(0.90)
    previous = {**current, "C9": partial}
    reasons, median, _ = outliers(current, previous, RULE)
    # C0..C4 and C9: 0.90, 0.91, 0.92, 0.93, 0.94, 0.90 → median 0.915 (with C8 it would be 0.92).
    assert median == pytest.approx(0.915)
    assert reasons == {}


def spans(found: list[Session]) -> list[tuple[int, int, float]]:
    return [(s.start_us // MINUTE, s.end_us // MINUTE, s.kwh_delivered_dc) for s in found]


def test_sessions_back_to_back_are_one_occupied_span_with_their_dc_summed() -> None:
    # A 0-10 and B 10-25 touch, C starts a minute after; given out of order.
    found = [session("C", 26, 40, 3.0), session("A", 0, 10, 1.0), session("B", 10, 25, 2.0)]
    assert spans(occupied_spans(found)) == [(0, 25, 3.0), (26, 40, 3.0)]
    # A session of no length (one reading of unknown energy) where two others meet joins them.
    found = [session("A", 0, 10, 1.0), session("Z", 10, 10, 0.0), session("B", 10, 25, 2.0)]
    assert spans(occupied_spans(found)) == [(0, 25, 3.0)]
    assert occupied_spans([]) == []


def test_sessions_sharing_time_are_asked_about_as_they_are() -> None:
    # B starts before A ends (concurrent: they share the meter by their DC): no span is made,
    # not even of the sessions that only touch.
    found = [session("A", 0, 10, 1.0), session("B", 5, 25, 2.0), session("C", 25, 30, 0.5)]
    assert occupied_spans(found) == found
