"""ListChargerEfficiencies: every charger's efficiency over a window and the window before,
composed from the other two services by the correlation rule (gRPC only), and the outlier rule.

Per window, for chargers in batches (CHARGER_DAYS_PER_READ charger-days): every vehicle's
sessions on them (VehicleService.ListChargerSessions), kept from sharing time on each charger
as for a vehicle (back-to-back sessions cut, interleaving ones flagged CONCURRENT_SESSIONS), the
AC attributed to them (MeterService.AttributeConsumption, over each charger's occupied spans:
see occupied_spans; a charger's spans always in one call), and, by the same rule in a call of its
own, the AC of a span covering the whole window on each charger: all its plausible meter energy
inside the window, intervals cut by the window's edges in proportion to time. What the sessions
were not attributed of it is the charger's standby energy, so attributed + standby is the
meter's energy in the window, and an implausible interval (Wh sent as kWh) is in neither.

The outlier rule, robust to the fleet's own spread: among chargers with at least
`min_sessions` sessions and a known efficiency whose AC covers their sessions (not flagged
METER_DATA_PARTIAL or EFFICIENCY_OUT_OF_RANGE), the median efficiency and the median absolute
deviation (MAD) from it. A charger is BELOW_FLEET when its efficiency is below the median by
more than `mad_threshold` x 1.4826 x MAD (1.4826 x MAD estimates a standard deviation) and by at
least `min_points`; DROPPED when its efficiency fell from the previous window by at least
`drop_points` (both windows with at least `min_sessions` sessions)."""

from __future__ import annotations

import contextvars
import enum
import hashlib
import itertools
import logging
import statistics
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, replace

from services.analytics.correlation import (
    Consumption,
    Figures,
    Quality,
    Session,
    arrange,
    summed_figures,
)
from services.analytics.downstream import Downstream, per_read
from services.analytics.service import (
    DAY_US,
    downstream_budget,
    page_position_issued,
    window_bounds,
)
from services.common.errors import DeadlineExceeded, InvalidArgument
from services.common.paging import decode_token, encode_token, page_limit
from services.common.timeconv import MIN_TIMESTAMP_MICROS
from services.common.validation import id_problem

log = logging.getLogger(__name__)

# charger_ids a request may name (ListChargerSessions' own bound).
CHARGERS_PER_CALL = 1000
# Charger-days per ListChargerSessions and AttributeConsumption call: they read every reading of
# the chargers and their vehicles in the window, and a call must finish within
# DOWNSTREAM_TIMEOUT_SECONDS (1000 chargers of a day did not, on a 2-core machine; 100 take
# about a second unloaded). A batch whose call still runs out of time is split in two and read
# again, down to one charger, while the caller's deadline allows.
CHARGER_DAYS_PER_READ = 100
# AttributeConsumption takes at most this many sessions a call.
SESSIONS_PER_CALL = 10_000
# Below this share of the meter's energy, attributed and whole-window sums differ only by float
# rounding.
ROUNDING_KWH = 1e-9
# A charger whose efficiency carries these flags is not compared with the fleet (nor with its
# own window before): AC measured over part of its sessions only (a meter that stopped
# reporting reads as 150 % efficient), or an efficiency no charger can have.
UNCOMPARABLE = frozenset({Quality.METER_DATA_PARTIAL, Quality.EFFICIENCY_OUT_OF_RANGE})
# 1.4826 x MAD estimates the standard deviation of normally distributed values.
MAD_TO_SIGMA = 1.4826


class Outlier(enum.Enum):
    BELOW_FLEET = 1
    DROPPED = 2


@dataclass(frozen=True)
class OutlierRule:
    """The thresholds (AnalyticsService settings OUTLIER_*)."""

    min_sessions: int = 3
    mad_threshold: float = 3.5
    min_points: float = 0.02
    drop_points: float = 0.015


@dataclass(frozen=True)
class ChargerFigures:
    """A charger's figures over one window: the correlation's (AC attributed, DC, efficiency,
    loss, coverage, flags), standby AC (kWh, None when unknown), sessions and vehicles."""

    figures: Figures
    standby_kwh: float | None
    session_count: int
    vehicle_count: int


@dataclass(frozen=True)
class ChargerEfficiency:
    charger_id: str
    current: ChargerFigures
    previous: ChargerFigures
    change: float | None
    outliers: tuple[Outlier, ...]


@dataclass(frozen=True)
class EfficiencyPage:
    rows: list[ChargerEfficiency]
    next_page_token: str
    start_us: int
    end_us: int
    fleet_median: float | None
    fleet_mad: float | None
    total: int


def charger_figures(
    sessions: Sequence[Session], consumption: Sequence[Consumption], whole: Consumption
) -> ChargerFigures:
    """One charger's figures from its sessions (cut), the AC attributed to them (to each, or to
    their occupied spans: only the sums count), and the AC attributed to a span covering the
    whole window (`whole`). Standby is the latter less the
    former; unknown when no meter interval of known, plausible energy covers any of the
    window. IMPLAUSIBLE_METER_DATA when an interval anywhere in the window is."""
    attributed = sum(used.kwh_consumed_ac for used in consumption)
    totals = summed_figures(
        sessions,
        consumption,
        flags=[flag for session in sessions for flag in session.flags],
        # An implausible interval anywhere in the window flags the charger, in a session or not.
        implausible_elsewhere=whole.implausible_count,
    )
    # Both sums cut the same intervals the same way: the difference is never below 0 but by a
    # float's last bits, which are neither a negative standby nor a standby of 1e-13 kWh.
    standby = None
    if whole.covered_us > 0:
        standby = whole.kwh_consumed_ac - attributed
        if standby <= ROUNDING_KWH * max(1.0, whole.kwh_consumed_ac):
            standby = 0.0
    return ChargerFigures(
        figures=totals,
        standby_kwh=standby,
        session_count=len(sessions),
        vehicle_count=len({session.vehicle_id for session in sessions}),
    )


def outliers(
    current: dict[str, ChargerFigures],
    previous: dict[str, ChargerFigures],
    rule: OutlierRule,
) -> tuple[dict[str, tuple[Outlier, ...]], float | None, float | None]:
    """Each charger's outlier reasons, and the fleet's median efficiency and MAD (None when no
    charger qualifies)."""

    def qualified(item: ChargerFigures) -> float | None:
        if item.session_count < rule.min_sessions or UNCOMPARABLE & set(item.figures.flags):
            return None
        return item.figures.efficiency_ratio

    efficiencies = {c: e for c, item in current.items() if (e := qualified(item)) is not None}
    median = mad = None
    if efficiencies:
        median = statistics.median(efficiencies.values())
        mad = statistics.median(abs(e - median) for e in efficiencies.values())
    reasons: dict[str, tuple[Outlier, ...]] = {}
    for charger_id, efficiency in efficiencies.items():
        found = []
        assert median is not None and mad is not None
        below = median - efficiency
        if below > rule.mad_threshold * MAD_TO_SIGMA * mad and below >= rule.min_points:
            found.append(Outlier.BELOW_FLEET)
        before = previous.get(charger_id)
        earlier = qualified(before) if before is not None else None
        if earlier is not None and earlier - efficiency >= rule.drop_points:
            found.append(Outlier.DROPPED)
        if found:
            reasons[charger_id] = tuple(found)
    return reasons, median, mad


def sort_key(row: ChargerEfficiency) -> tuple[int, float, str]:
    """Worst efficiency first, unknown last, then by charger id."""
    efficiency = row.current.figures.efficiency_ratio
    return (0, efficiency, row.charger_id) if efficiency is not None else (1, 0.0, row.charger_id)


@dataclass(frozen=True)
class PageKey:
    """What a page token holds: the request it belongs to (its window's end and length, and a
    digest of its charger_ids) and the sort key of the last charger it listed. The end is
    pinned, so a listing whose first request left end_time to "now" keeps its window."""

    end_us: int
    window_us: int
    chargers: str
    after: tuple[int, float, str]

    def token(self) -> str:
        rank, value, charger_id = self.after
        return encode_token(
            f"{self.end_us}|{self.window_us}|{self.chargers}|{rank}|{value!r}|{charger_id}"
        )

    @staticmethod
    def parse(token: str) -> PageKey | None:
        """None for the first page; INVALID_ARGUMENT naming page_token when not ours."""
        text = decode_token(token)
        if text is None:
            return None
        parts = text.split("|", 5)
        try:
            end_us, window_us, chargers, rank, value, charger_id = parts
            key = PageKey(
                int(end_us), int(window_us), chargers, (int(rank), float(value), charger_id)
            )
        except ValueError:
            raise _not_issued() from None
        issued = page_position_issued(key.end_us, key.window_us, rank, key.after[1], charger_id)
        if not issued or len(chargers) != DIGEST_CHARS:
            raise _not_issued()
        return key


DIGEST_CHARS = 16


def chargers_digest(charger_ids: Sequence[str]) -> str:
    """Which charger_ids a request named (order and repeats aside), for its page tokens."""
    joined = "\n".join(sorted(set(charger_ids)))
    return hashlib.sha256(joined.encode()).hexdigest()[:DIGEST_CHARS]


def _not_issued(why: str = "is not a token this service issued") -> InvalidArgument:
    return InvalidArgument([("page_token", why)])


class ChargerEfficiencyService:
    def __init__(
        self,
        downstream: Downstream,
        *,
        session_gap_us: int,
        reach_us: int,
        downstream_timeout: float,
        rule: OutlierRule,
    ) -> None:
        self._downstream = downstream
        self._gap_us = session_gap_us
        self._margin_us = 2 * reach_us
        self._timeout = downstream_timeout
        self._rule = rule

    def efficiencies(
        self,
        charger_ids: Sequence[str],
        end_us: int | None,
        window_us: int | None,
        *,
        page_size: int,
        page_token: str,
        time_remaining: Callable[[], float | None],
    ) -> EfficiencyPage:
        """The window of `window_us` (default a day) ending at `end_us` (default now, or the
        end the page token pinned) and the window before it."""
        limit = page_limit(page_size)
        resumed = PageKey.parse(page_token)
        digest = chargers_digest(charger_ids)
        if resumed is not None:
            if end_us is not None and end_us != resumed.end_us:
                raise _not_issued("was issued for another end_time")
            if (window_us or DAY_US) != resumed.window_us:
                raise _not_issued("was issued for another window")
            if digest != resumed.chargers:
                raise _not_issued("was issued for other charger_ids")
            end_us = resumed.end_us
        start_us, end_us = window_bounds(end_us, window_us)
        after = None if resumed is None else resumed.after
        chargers = self._chargers(charger_ids, time_remaining)
        window_us = end_us - start_us
        # The windows are read one after the other: reading both at once halved a fleet-wide
        # listing's time but took both of each service's expensive-read slots
        # (MAX_EXPENSIVE_READS), refusing the vehicle performance reads beside it.
        current = self._figures(chargers, start_us, end_us, time_remaining)
        if start_us - window_us >= MIN_TIMESTAMP_MICROS:
            previous = self._figures(chargers, start_us - window_us, start_us, time_remaining)
        else:  # no window before the year 1
            nothing = charger_figures([], [], Consumption(0.0, 0, 0, 0, 0))
            previous = dict.fromkeys(chargers, nothing)
        reasons, median, mad = outliers(current, previous, self._rule)
        rows = []
        for charger_id in chargers:
            now, before = current[charger_id], previous[charger_id]
            change = (
                now.figures.efficiency_ratio - before.figures.efficiency_ratio
                if now.figures.efficiency_ratio is not None
                and before.figures.efficiency_ratio is not None
                else None
            )
            rows.append(
                ChargerEfficiency(charger_id, now, before, change, reasons.get(charger_id, ()))
            )
        rows.sort(key=sort_key)
        rows_after = rows if after is None else [row for row in rows if sort_key(row) > after]
        page = rows_after[:limit]
        following = ""
        if len(rows_after) > limit:
            following = PageKey(end_us, end_us - start_us, digest, sort_key(page[-1])).token()
        return EfficiencyPage(
            rows=page,
            next_page_token=following,
            start_us=start_us,
            end_us=end_us,
            fleet_median=median,
            fleet_mad=mad,
            total=len(rows),
        )

    def _chargers(
        self, charger_ids: Sequence[str], time_remaining: Callable[[], float | None]
    ) -> list[str]:
        if len(charger_ids) > CHARGERS_PER_CALL:
            raise InvalidArgument(
                [("charger_ids", f"at most {CHARGERS_PER_CALL} per call, got {len(charger_ids)}")]
            )
        violations = []
        for index, charger_id in enumerate(charger_ids):
            problem = id_problem(charger_id)
            if problem is not None:
                violations.append((f"charger_ids[{index}]", problem))
        if violations:
            raise InvalidArgument(violations)
        if charger_ids:
            return sorted(set(charger_ids))
        return sorted(set(self._downstream.reported_chargers(self._budget(time_remaining))))

    def _figures(
        self,
        chargers: Sequence[str],
        start_us: int,
        end_us: int,
        time_remaining: Callable[[], float | None],
    ) -> dict[str, ChargerFigures]:
        result: dict[str, ChargerFigures] = {}
        per_read = chargers_per_read(end_us - start_us)
        pending = [chargers[i : i + per_read] for i in range(0, len(chargers), per_read)]
        while pending:
            batch = pending.pop(0)
            try:
                result.update(self._batch_figures(batch, start_us, end_us, time_remaining))
            except DeadlineExceeded:
                remaining = time_remaining()
                if len(batch) == 1 or (remaining is not None and remaining <= 0):
                    raise
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
                log.warning(
                    "a downstream read of %d chargers ran out of time; reading them in halves",
                    len(batch),
                )
        return result

    def _batch_figures(
        self,
        batch: Sequence[str],
        start_us: int,
        end_us: int,
        time_remaining: Callable[[], float | None],
    ) -> dict[str, ChargerFigures]:
        """The figures of one batch of chargers: their sessions, the AC attributed to them and
        the AC of a span covering the whole window on each. The latter needs no session: it is
        read from MeterService while VehicleService finds the sessions: one read at a time on
        each service (a listing does not hold both of a service's expensive-read slots), but
        for a meter read left to end on its own deadline when its batch's sessions read
        failed."""
        pool = futures.ThreadPoolExecutor(1, thread_name_prefix="whole-window")
        try:
            wholes_read = pool.submit(
                contextvars.copy_context().run,  # the call's trace context, in the other thread
                self._downstream.attribute,
                [_whole_window(charger_id, start_us, end_us) for charger_id in batch],
                [],
                start_us,
                end_us,
                self._budget(time_remaining),
            )
            found = self._downstream.charger_sessions(
                batch, [], "", (start_us, end_us, self._gap_us), self._budget(time_remaining)
            )
            wholes = wholes_read.result()
        finally:
            # A failed sessions read is reported at once, not after the meter read (which ends
            # within its own deadline, its answer unused).
            pool.shutdown(wait=False, cancel_futures=True)
        _, sessions = arrange([], found, self._margin_us)
        by_charger: dict[str, list[Session]] = {charger_id: [] for charger_id in batch}
        for session in sessions:
            by_charger[session.charger_id].append(session)
        consumption = self._attribute(by_charger, start_us, end_us, time_remaining)
        return {
            charger_id: charger_figures(by_charger[charger_id], consumption[charger_id], whole)
            for charger_id, whole in zip(batch, wholes, strict=True)
        }

    def _attribute(
        self,
        by_charger: dict[str, list[Session]],
        start_us: int,
        end_us: int,
        time_remaining: Callable[[], float | None],
    ) -> dict[str, list[Consumption]]:
        """The AC of each charger's sessions, attributed to its occupied spans (see
        occupied_spans), a charger's spans always in the same call."""
        spans = {
            charger_id: occupied_spans(sessions) for charger_id, sessions in by_charger.items()
        }
        consumption: dict[str, list[Consumption]] = {c: [] for c in spans}
        for group in _groups(spans.items(), SESSIONS_PER_CALL):
            sessions = [session for _, charger_sessions in group for session in charger_sessions]
            if not sessions:
                continue
            used = iter(
                self._downstream.attribute(
                    sessions, [], start_us, end_us, self._budget(time_remaining)
                )
            )
            for charger_id, charger_sessions in group:
                consumption[charger_id] = [next(used) for _ in charger_sessions]
        return consumption

    def _budget(self, time_remaining: Callable[[], float | None]) -> float:
        return downstream_budget(time_remaining, self._timeout)


def chargers_per_read(window_us: int) -> int:
    """Chargers per downstream read for a window of `window_us`: CHARGER_DAYS_PER_READ
    charger-days, at least one charger."""
    return per_read(CHARGER_DAYS_PER_READ, window_us)


def occupied_spans(sessions: Sequence[Session]) -> list[Session]:
    """One charger's sessions as the spans its meter is asked about: where no two of them share
    time (they were kept apart: back to back at most), runs of sessions that touch are one span,
    their DC summed; otherwise (sessions at the same time, which share intervals by their DC)
    the sessions themselves.

    The charger's totals are the same either way: a meter interval goes whole to the sessions
    overlapping it, so one overlapping two touching sessions (split between them) goes whole to
    their span, and the time each covers adds up to the time the span covers. But MeterService
    takes an hour of a span from its rollups only when no other span comes near it, so a
    charger shared back to back all day is one span, read from the rollups but for its
    edges, instead of a session every hour or two, each read from the readings."""
    ordered = sorted(sessions, key=lambda session: (session.start_us, session.end_us))
    if any(later.start_us < earlier.end_us for earlier, later in itertools.pairwise(ordered)):
        return list(sessions)
    spans: list[Session] = []
    for session in ordered:
        last = spans[-1] if spans else None
        if last is not None and session.start_us == last.end_us:
            spans[-1] = replace(
                last,
                end_us=session.end_us,
                kwh_delivered_dc=last.kwh_delivered_dc + session.kwh_delivered_dc,
            )
        else:
            spans.append(session)
    return spans


def _whole_window(charger_id: str, start_us: int, end_us: int) -> Session:
    """A span covering the whole window on the charger: attributed alone, it takes all of the
    charger's plausible meter energy in the window."""
    return Session(
        vehicle_id="",
        charger_id=charger_id,
        start_us=start_us,
        end_us=end_us,
        kwh_delivered_dc=0.0,
        reading_count=0,
        battery_temp_sum=0.0,
        battery_temp_count=0,
        first_reading_us=start_us,
        last_reading_us=end_us,
    )


def _groups(
    items: Iterable[tuple[str, list[Session]]], most: int
) -> list[list[tuple[str, list[Session]]]]:
    """Chargers with their sessions, in groups of at most `most` sessions (a charger with more
    alone in its group)."""
    groups: list[list[tuple[str, list[Session]]]] = [[]]
    size = 0
    for charger_id, sessions in items:
        if groups[-1] and size + len(sessions) > most:
            groups.append([])
            size = 0
        groups[-1].append((charger_id, sessions))
        size += len(sessions)
    return groups
