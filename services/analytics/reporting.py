"""GetDataCompleteness: how completely the fleet reported over a window, composed from the
reporting summaries of MeterService and VehicleService (gRPC only).

Per device: the readings expected at its usual interval against those received, its gaps and
its conflicting readings, as the device's own service summarizes them (a meter is expected to
report all the time, a vehicle only in its stretches of charging). Across services: the
chargers that vehicles named but that never reported a meter reading, with the reported
chargers whose ids differ only in case (a gateway that changes the case of ids, so that no
energy of those vehicles can be correlated), and the vehicles that named two chargers at once.

Devices are paged chargers first, then vehicles, each the least complete first (unknown last,
then by id). A page token pins the first page's window and names the last device listed; every
page is computed from the whole fleet, as the ranking needs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.analytics.downstream import ChargerOverlap, DeviceReport, Downstream
from services.analytics.service import (
    DAY_US,
    downstream_budget,
    page_position_issued,
    window_bounds,
)
from services.common.errors import InvalidArgument
from services.common.paging import decode_token, encode_token, page_limit


@dataclass(frozen=True)
class Totals:
    devices: int
    silent: int
    expected: int
    received: int
    gaps: int
    conflicts: int


@dataclass(frozen=True)
class UnreportedCharger:
    charger_id: str
    near_matches: list[str]
    vehicle_ids: list[str]


@dataclass(frozen=True)
class CompletenessPage:
    start_us: int
    end_us: int
    chargers: list[DeviceReport]
    vehicles: list[DeviceReport]
    charger_totals: Totals
    vehicle_totals: Totals
    unreported: list[UnreportedCharger]
    overlaps: list[ChargerOverlap]
    next_page_token: str


def totals(reports: Sequence[DeviceReport]) -> Totals:
    return Totals(
        devices=len(reports),
        silent=sum(1 for report in reports if report.received == 0),
        expected=sum(report.expected or 0 for report in reports),
        received=sum(report.received for report in reports),
        gaps=sum(len(report.gaps) for report in reports),
        conflicts=sum(report.conflicts for report in reports),
    )


def unreported_chargers(
    chargers: Sequence[DeviceReport], vehicles: Sequence[DeviceReport]
) -> list[UnreportedCharger]:
    """The chargers vehicles named that are not among the chargers that ever reported, in id
    order, with the reported ids equal to each but for case."""
    reported = {report.device_id for report in chargers}
    by_folded: dict[str, list[str]] = {}
    for charger_id in sorted(reported):
        by_folded.setdefault(charger_id.casefold(), []).append(charger_id)
    naming: dict[str, list[str]] = {}
    for vehicle in vehicles:
        for charger_id in vehicle.charger_ids:
            if charger_id not in reported:
                naming.setdefault(charger_id, []).append(vehicle.device_id)
    return [
        UnreportedCharger(
            charger_id=charger_id,
            near_matches=by_folded.get(charger_id.casefold(), []),
            vehicle_ids=sorted(naming[charger_id]),
        )
        for charger_id in sorted(naming)
    ]


SortKey = tuple[int, float, str]


def completeness_order(report: DeviceReport) -> SortKey:
    """The least complete first, then by id. A device that sent nothing and whose interval is
    unknown (it reported at most once before) ranks with the silent ones, at 0; one whose
    completeness is otherwise unknown (a vehicle that did not charge) ranks last."""
    value = report.completeness
    if value is None and report.expected is None and report.received == 0:
        value = 0.0
    return (0, value, report.device_id) if value is not None else (1, 0.0, report.device_id)


@dataclass(frozen=True)
class CompletenessKey:
    """A page token: the window's end and length, and the last device listed (its list,
    "chargers" or "vehicles", and its sort key). The next page lists what sorts after it, so a
    device whose figures change between two pages is listed at most where it now belongs, the
    others once each."""

    end_us: int
    window_us: int
    vehicles: bool
    after: SortKey

    def token(self) -> str:
        rank, value, device_id = self.after
        listing = "v" if self.vehicles else "c"
        return encode_token(
            f"completeness|{self.end_us}|{self.window_us}|{listing}|{rank}|{value!r}|{device_id}"
        )

    @staticmethod
    def parse(token: str) -> CompletenessKey | None:
        """None for the first page; INVALID_ARGUMENT naming page_token when not ours."""
        text = decode_token(token)
        if text is None:
            return None
        try:
            tag, end_us, window_us, listing, rank, value, device_id = text.split("|", 6)
            key = CompletenessKey(
                int(end_us),
                int(window_us),
                listing == "v",
                (int(rank), float(value), device_id),
            )
        except ValueError:
            raise _not_issued() from None
        issued = page_position_issued(key.end_us, key.window_us, rank, key.after[1], device_id)
        if not issued or tag != "completeness" or listing not in ("c", "v"):
            raise _not_issued()
        return key


def _not_issued(why: str = "is not a token this service issued") -> InvalidArgument:
    return InvalidArgument([("page_token", why)])


def completeness_page(
    chargers: Sequence[DeviceReport],
    vehicles: Sequence[DeviceReport],
    start_us: int,
    end_us: int,
    *,
    page_size: int,
    after: tuple[bool, SortKey] | None,
) -> CompletenessPage:
    """The page of `page_size` devices (chargers, then vehicles) after `after` (the list it
    was in, vehicles or not, and its sort key; None for the first page)."""
    limit = page_limit(page_size)
    ranked_chargers = sorted(chargers, key=completeness_order)
    ranked_vehicles = sorted(vehicles, key=completeness_order)
    if after is not None:
        in_vehicles, key = after
        if in_vehicles:
            ranked_chargers = []
            ranked_vehicles = [v for v in ranked_vehicles if completeness_order(v) > key]
        else:
            ranked_chargers = [c for c in ranked_chargers if completeness_order(c) > key]
    page_chargers = ranked_chargers[:limit]
    page_vehicles = ranked_vehicles[: limit - len(page_chargers)]
    following = ""
    if len(ranked_chargers) + len(ranked_vehicles) > limit:
        last, in_vehicles = (
            (page_vehicles[-1], True) if page_vehicles else (page_chargers[-1], False)
        )
        following = CompletenessKey(
            end_us, end_us - start_us, in_vehicles, completeness_order(last)
        ).token()
    overlaps = sorted(
        (overlap for vehicle in vehicles for overlap in vehicle.overlaps),
        key=lambda o: (o.start_us, o.vehicle_id, o.charger_id, o.other_charger_id),
    )
    return CompletenessPage(
        start_us=start_us,
        end_us=end_us,
        chargers=page_chargers,
        vehicles=page_vehicles,
        charger_totals=totals(chargers),
        vehicle_totals=totals(vehicles),
        unreported=unreported_chargers(chargers, vehicles),
        overlaps=overlaps,
        next_page_token=following,
    )


class CompletenessService:
    def __init__(
        self, downstream: Downstream, *, session_gap_us: int, downstream_timeout: float
    ) -> None:
        self._downstream = downstream
        self._gap_us = session_gap_us
        self._timeout = downstream_timeout

    def completeness(
        self,
        end_us: int | None,
        window_us: int | None,
        *,
        page_size: int,
        page_token: str,
        time_remaining: Callable[[], float | None],
    ) -> CompletenessPage:
        """The window of `window_us` (default a day) ending at `end_us` (default now, or the
        end the page token pinned)."""
        page_limit(page_size)  # a negative page_size is refused before anything is read
        resumed = CompletenessKey.parse(page_token)
        if resumed is not None:
            if end_us is not None and end_us != resumed.end_us:
                raise _not_issued("was issued for another end_time")
            if (window_us or DAY_US) != resumed.window_us:
                raise _not_issued("was issued for another window")
            end_us = resumed.end_us
        start_us, end_us = window_bounds(end_us, window_us)

        def budget() -> float:
            return downstream_budget(time_remaining, self._timeout)

        chargers = self._downstream.reporting(False, start_us, end_us, self._gap_us, budget)
        vehicles = self._downstream.reporting(True, start_us, end_us, self._gap_us, budget)
        after = None if resumed is None else (resumed.vehicles, resumed.after)
        return completeness_page(
            chargers, vehicles, start_us, end_us, page_size=page_size, after=after
        )
