"""The correlation rule as pure functions: where each session's AC energy is summed (widened by
the tolerance, clipped to the window, never shared between two sessions of one charger), the
figures of a session and of the window, and how AnalyticsService cuts its MeterService calls."""

from __future__ import annotations

import pytest

from services.analytics.correlation import (
    Consumption,
    Figures,
    Interval,
    Session,
    attribution_intervals,
    compose,
    figures,
)


def session(
    charger: str,
    start: int,
    end: int,
    *,
    dc: float = 0.0,
    readings: int = 0,
    temp_sum: float = 0.0,
    temp_count: int = 0,
) -> Session:
    return Session(charger, start, end, dc, readings, temp_sum, temp_count)


@pytest.mark.parametrize(
    ("sessions", "window", "tolerance", "intervals"),
    [
        pytest.param(
            [session("A", 1000, 2000)],
            (0, 10_000),
            100,
            # [1000 - 100, 2000 + 100)
            [Interval("A", 900, 2100)],
            id="widened by the tolerance on both sides",
        ),
        pytest.param(
            [session("A", 1000, 2000)],
            (0, 10_000),
            0,
            [Interval("A", 1000, 2000)],
            id="no tolerance: the session itself",
        ),
        pytest.param(
            [session("A", 50, 9_950)],
            (0, 10_000),
            100,
            # 50 - 100 = -50 clipped to 0; 9,950 + 100 = 10,050 clipped to 10,000
            [Interval("A", 0, 10_000)],
            id="clipped to the window",
        ),
        pytest.param(
            [session("A", 1000, 2000), session("A", 2150, 3000)],
            (0, 10_000),
            100,
            # the second would start at 2,150 - 100 = 2,050, inside the first's [900, 2,100)
            [Interval("A", 900, 2100), Interval("A", 2100, 3100)],
            id="a later session on the same charger starts where the previous one ended",
        ),
        pytest.param(
            [session("A", 1000, 2000), session("B", 2050, 3000)],
            (0, 10_000),
            100,
            # other chargers' meters: overlapping in time is fine
            [Interval("A", 900, 2100), Interval("B", 1950, 3100)],
            id="sessions on other chargers may overlap in time",
        ),
        pytest.param(
            [session("A", 1000, 2000), session("B", 2000, 2500), session("A", 2150, 3000)],
            (0, 10_000),
            100,
            # A's second interval is cut at A's last end (2,100), not B's (2,600)
            [Interval("A", 900, 2100), Interval("B", 1900, 2600), Interval("A", 2100, 3100)],
            id="the previous end is remembered per charger",
        ),
        pytest.param(
            [session("A", 1000, 5000), session("A", 5100, 5200)],
            (0, 5_500),
            1000,
            # first: [0, min(6,000, 5,500)) = [0, 5,500); second: start max(4,100, 5,500) =
            # 5,500, end min(6,200, 5,500) = 5,500: empty, never negative
            [Interval("A", 0, 5500), Interval("A", 5500, 5500)],
            id="a session whose energy the previous one took gets an empty interval",
        ),
        pytest.param([], (0, 10_000), 100, [], id="no sessions, no intervals"),
    ],
)
def test_attribution_intervals(sessions, window, tolerance, intervals):
    assert attribution_intervals(sessions, window[0], window[1], tolerance) == intervals


def test_figures_of_a_session_with_energy_and_temperatures():
    assert figures(
        ac=10.0, dc=9.0, temp_sum=75.0, temp_count=3, data_points=4, meter_points=6
    ) == Figures(
        energy_consumed_ac=10.0,
        energy_delivered_dc=9.0,
        efficiency_ratio=0.9,  # 9 / 10
        energy_loss_kwh=1.0,  # 10 - 9
        avg_battery_temperature=25.0,  # 75 / 3
        data_points=4,
        meter_data_points=6,
    )


def test_without_ac_energy_efficiency_is_unset_and_the_loss_negative():
    result = figures(ac=0.0, dc=4.0, temp_sum=0.0, temp_count=0, data_points=2, meter_points=0)
    assert result.efficiency_ratio is None
    assert result.energy_loss_kwh == -4.0  # 0 - 4
    assert result.avg_battery_temperature is None  # no temperature readings


def test_compose_reports_each_session_and_totals_over_all_readings():
    first = session("A", 0, 100, dc=9.0, readings=3, temp_sum=60.0, temp_count=3)
    second = session("B", 200, 300, dc=18.0, readings=2, temp_sum=100.0, temp_count=2)
    used = [Consumption(10.0, 5), Consumption(20.0, 4)]
    performance = compose("VH-1", 0, 1000, [first, second], used)
    assert (performance.vehicle_id, performance.start_us, performance.end_us) == ("VH-1", 0, 1000)
    assert [p.session for p in performance.sessions] == [first, second]
    assert [p.figures.efficiency_ratio for p in performance.sessions] == [0.9, 0.9]  # 9/10, 18/20
    assert [p.figures.avg_battery_temperature for p in performance.sessions] == [20.0, 50.0]
    assert [p.figures.meter_data_points for p in performance.sessions] == [5, 4]
    assert performance.totals == Figures(
        energy_consumed_ac=30.0,  # 10 + 20
        energy_delivered_dc=27.0,  # 9 + 18
        efficiency_ratio=0.9,  # 27 / 30
        energy_loss_kwh=3.0,  # 30 - 27
        # (60 + 100) / (3 + 2) = 32, not the mean of the averages (20 + 50) / 2 = 35
        avg_battery_temperature=32.0,
        data_points=5,  # 3 + 2
        meter_data_points=9,  # 5 + 4
    )


def test_compose_without_sessions_is_all_zeros_and_unset_ratios():
    performance = compose("VH-1", 0, 1000, [], [])
    assert performance.sessions == []
    assert performance.totals == Figures(0.0, 0.0, None, 0.0, None, 0, 0)


def test_compose_refuses_a_consumption_per_session_mismatch():
    with pytest.raises(ValueError):
        compose("VH-1", 0, 1000, [session("A", 0, 100)], [])


def test_analytics_cuts_its_intervals_within_meter_service_bounds():
    """5,000 intervals or 31 interval-days per call, in order; a 31-day window of sessions
    (each widened by the tolerance) needs at most two calls."""
    from services.analytics.downstream import INTERVALS_PER_CALL, SPAN_PER_CALL_US, _calls
    from services.meter.service import DAY_US, MAX_INTERVAL_DAYS, MAX_INTERVALS

    assert INTERVALS_PER_CALL <= MAX_INTERVALS
    assert 2 * SPAN_PER_CALL_US <= MAX_INTERVAL_DAYS * DAY_US
    minute = 60 * 1_000_000
    # A 31-day window of 1-minute sessions every 2 minutes, each widened by 30 s either side.
    window = [
        Interval("CHG-1", 2 * k * minute - minute // 2, 2 * k * minute + 3 * minute // 2)
        for k in range(31 * 24 * 30)
    ]
    calls = _calls(window)
    assert [interval for call in calls for interval in call] == window
    for call in calls:
        assert len(call) <= INTERVALS_PER_CALL
        assert sum(i.end_us - i.start_us for i in call) <= SPAN_PER_CALL_US
    assert _calls([]) == []
    whole = [Interval("CHG-1", 0, 31 * DAY_US), Interval("CHG-2", 0, 31 * DAY_US)]
    assert _calls(whole) == [whole[:1], whole[1:]]
