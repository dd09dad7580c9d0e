"""VehicleService use cases (the shared ones and ListChargingSessions); raises domain errors,
knows neither gRPC nor SQL."""

from __future__ import annotations

from services.common.errors import InvalidArgument, NotFound
from services.common.validation import id_problem, require_id
from services.readings.service import ReadingService
from services.vehicle.repository import SessionRow, VehicleRepository

# One call reads one vehicle's readings over end_time - start_time, with window functions:
# at most 31 days (AnalyticsService's largest window), 44,640 readings at one a minute.
DAY_US = 24 * 3600 * 1_000_000
MAX_SESSIONS_SPAN_DAYS = 31
# ListChargerSessions: the chargers one vehicle can use in a window, with a wide margin.
MAX_CHARGERS_PER_CALL = 1000


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

    def list_charger_sessions(
        self, charger_ids: list[str], start_us: int, end_us: int, gap_us: int
    ) -> list[SessionRow]:
        """Every vehicle's sessions on the chargers in [start_us, end_us); a charger no vehicle
        named has none (not an error: it may be a meter only)."""
        if len(charger_ids) > MAX_CHARGERS_PER_CALL:
            raise InvalidArgument(
                [
                    (
                        "charger_ids",
                        f"at most {MAX_CHARGERS_PER_CALL} per call, got {len(charger_ids)}",
                    )
                ]
            )
        violations = []
        seen: set[str] = set()
        for index, charger_id in enumerate(charger_ids):
            problem = id_problem(charger_id)
            if problem is None and charger_id in seen:
                problem = "repeated: each charger once"
            if problem is not None:
                violations.append((f"charger_ids[{index}]", problem))
            seen.add(charger_id)
        if violations:
            raise InvalidArgument(violations)
        _check_window(start_us, end_us, gap_us)
        if not charger_ids:
            return []
        return self._repository.list_charger_sessions(charger_ids, start_us, end_us, gap_us)


def _check_window(start_us: int, end_us: int, gap_us: int) -> None:
    if end_us < start_us:
        raise InvalidArgument([("end_time", "must not be before start_time")])
    if end_us - start_us > MAX_SESSIONS_SPAN_DAYS * DAY_US:
        raise InvalidArgument(
            [("end_time", f"must be at most {MAX_SESSIONS_SPAN_DAYS} days after start_time")]
        )
    if gap_us <= 0:
        raise InvalidArgument([("session_gap", "must be positive")])
