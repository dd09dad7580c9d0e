"""How completely a device reported over a window (ListReportingSummaries), from what its
readings' times say: pure logic over a ReportingRow, shared by both reading kinds.

A meter is expected to report all the time: it should hold one reading per usual interval over
the whole window, and every silence longer than the gap threshold is a gap, from the window's
start to its first reading and from its last reading to the window's end included. A vehicle
reports only while it charges: its readings fall into stretches (consecutive readings no
further apart than the threshold), only the time inside them is expected to hold readings, and
its gaps are the silences between them. The threshold is the larger of the request's gap and
twice the device's usual interval, so a meter that reports every 15 minutes is not a gap every
15 minutes."""

from __future__ import annotations

from dataclasses import dataclass

from services.readings.repository import ReportingRow


@dataclass(frozen=True)
class ReportingSummary:
    """One device's reporting over a window; times in micros since the epoch.

    `usual_interval_us` and `expected` are None when the usual interval is unknown (fewer than
    two readings in the window and the 100 before it); `gaps` are (start, end) silences, oldest
    first; `threshold_us` the step beyond which readings are in separate stretches."""

    device_id: str
    received: int
    usual_interval_us: int | None
    expected: int | None
    gaps: list[tuple[int, int]]
    conflicts: int
    first_us: int | None
    last_us: int | None
    threshold_us: float


def summarize_reporting(
    row: ReportingRow, start_us: int, end_us: int, gap_us: int, *, continuous: bool
) -> ReportingSummary:
    """The summary of one device's row over [start_us, end_us); `continuous` for a device that
    should report all the time (see the module)."""
    period = None if row.usual_interval_us is None else round(row.usual_interval_us)
    # A period of 0 cannot happen (one reading per id and time), but would divide by zero.
    known = period is not None and period > 0
    threshold = max(float(gap_us), 2.0 * period) if known and period else float(gap_us)
    gaps = list(row.gaps)
    if continuous:
        expected = round((end_us - start_us) / period) if known and period else None
        if row.first_us is None or row.last_us is None:
            if end_us - start_us > threshold:
                gaps = [(start_us, end_us)]
        else:
            if row.first_us - start_us > threshold:
                gaps.insert(0, (start_us, row.first_us))
            if end_us - row.last_us > threshold:
                gaps.append((row.last_us, end_us))
    else:
        expected = round(row.covered_us / period) + row.stretches if known and period else None
    return ReportingSummary(
        device_id=row.device_id,
        received=row.received,
        usual_interval_us=period,
        expected=expected,
        gaps=gaps,
        conflicts=row.conflicts,
        first_us=row.first_us,
        last_us=row.last_us,
        threshold_us=threshold,
    )
