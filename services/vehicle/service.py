"""VehicleService use cases (the shared ones and ListChargingSessions); raises domain errors,
knows neither gRPC nor SQL."""

from __future__ import annotations

from services.common.errors import InvalidArgument, NotFound
from services.common.timeconv import DAY_US
from services.common.validation import id_problem, require_id
from services.readings.reporting import ReportingSummary
from services.readings.service import ReadingService
from services.vehicle.repository import (
    ChargerRange,
    ChargerReports,
    SessionRow,
    VehicleRepository,
)

# One call reads one vehicle's readings over end_time - start_time, with window functions:
# at most 31 days (AnalyticsService's largest window), 44,640 readings at one a minute.
MAX_SESSIONS_SPAN_DAYS = 31
# ListChargerSessions: the chargers one vehicle can use in a window, with a wide margin; and
# the ranges around its sessions (one per session at most, as many as MeterService attributes
# in one call).
MAX_CHARGERS_PER_CALL = 1000
MAX_RANGES_PER_CALL = 10_000


class VehicleReadings(ReadingService[VehicleRepository]):
    """The shared ingest and status use cases, and ListChargingSessions."""

    def list_sessions(
        self, vehicle_id: str, start_us: int, end_us: int, gap_us: int
    ) -> list[SessionRow]:
        """Sessions whose readings' intervals reach into [start_us, end_us); NOT_FOUND for a
        vehicle never seen."""
        require_id("vehicle_id", vehicle_id)
        _check_window(start_us, end_us, gap_us)
        sessions = self._repository.list_sessions(vehicle_id, start_us, end_us, gap_us)
        if not sessions and not self._repository.exists(vehicle_id):
            raise NotFound(f"vehicle {vehicle_id} has never reported")
        return sessions

    def charger_reports(
        self, summaries: list[ReportingSummary], start_us: int, end_us: int
    ) -> dict[str, ChargerReports]:
        """The chargers each summarized vehicle named in [start_us, end_us), and the times it
        named two at once (stretches cut as its summary's)."""
        thresholds = {s.device_id: s.threshold_us for s in summaries if s.received}
        return self._repository.charger_reports(thresholds, start_us, end_us)

    def list_charger_sessions(
        self,
        charger_ids: list[str],
        ranges: list[ChargerRange],
        *,
        excluded_vehicle_id: str,
        start_us: int,
        end_us: int,
        gap_us: int,
    ) -> list[SessionRow]:
        """Every vehicle's (but `excluded_vehicle_id`'s) sessions in [start_us, end_us) on the
        chargers, and on each range's charger around the range (see the repository); a charger
        no vehicle named has none (not an error: it may be a meter only)."""
        violations = []
        for field, count, most in (
            ("charger_ids", len(charger_ids), MAX_CHARGERS_PER_CALL),
            ("ranges", len(ranges), MAX_RANGES_PER_CALL),
        ):
            if count > most:
                violations.append((field, f"at most {most} per call, got {count}"))
        if violations:
            raise InvalidArgument(violations)
        seen: set[str] = set()
        for index, charger_id in enumerate(charger_ids):
            problem = id_problem(charger_id)
            if problem is None and charger_id in seen:
                problem = "repeated: each charger once"
            if problem is not None:
                violations.append((f"charger_ids[{index}]", problem))
            seen.add(charger_id)
        for index, wanted in enumerate(ranges):
            problem = id_problem(wanted.charger_id)
            if problem is not None:
                violations.append((f"ranges[{index}].charger_id", problem))
            if wanted.end_us < wanted.start_us:
                violations.append((f"ranges[{index}].end_time", "must not be before start_time"))
        if excluded_vehicle_id:
            problem = id_problem(excluded_vehicle_id)
            if problem is not None:
                violations.append(("excluded_vehicle_id", problem))
        if violations:
            raise InvalidArgument(violations)
        _check_window(start_us, end_us, gap_us)
        if not charger_ids and not ranges:
            return []
        return self._repository.list_charger_sessions(
            charger_ids,
            ranges,
            excluded_vehicle_id=excluded_vehicle_id,
            start_us=start_us,
            end_us=end_us,
            gap_us=gap_us,
        )


def _check_window(start_us: int, end_us: int, gap_us: int) -> None:
    if end_us < start_us:
        raise InvalidArgument([("end_time", "must not be before start_time")])
    if end_us - start_us > MAX_SESSIONS_SPAN_DAYS * DAY_US:
        raise InvalidArgument(
            [("end_time", f"must be at most {MAX_SESSIONS_SPAN_DAYS} days after start_time")]
        )
    if gap_us <= 0:
        raise InvalidArgument([("session_gap", "must be positive")])
