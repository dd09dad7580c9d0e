"""SQL of VehicleService: the only module that knows the vehicle schema's tables. The ingest and
status SQL is the shared one (services.readings.repository), made from the VEHICLE declaration."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text

from services.readings.repository import MICROS_SQL, StatusRepository, reading_table
from services.vehicle.kind import VEHICLE

READINGS_TABLE = reading_table(VEHICLE)


class VehicleRepository(StatusRepository):
    """The vehicle statuses, and the charging sessions of ListChargingSessions."""

    def list_sessions(
        self, vehicle_id: str, start_us: int, end_us: int, gap_us: int
    ) -> list[SessionRow]:
        """The vehicle's charging sessions made of its readings in [start_us, end_us)."""
        params = {
            "vehicle_id": vehicle_id,
            "start_us": start_us,
            "end_us": end_us,
            "gap_us": gap_us,
        }
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(_SESSIONS_SQL, params).all()
        return [SessionRow(*row) for row in rows]


class SessionRow(NamedTuple):
    charger_id: str
    start_micros: int
    end_micros: int
    kwh_delivered_dc: float
    reading_count: int
    battery_temp_sum: float
    battery_temp_count: int


# Gaps and islands in one statement: a reading opens a new session when it is the first, when
# its charger differs from the previous reading's, or when the gap to it exceeds session_gap;
# a running count of those openings numbers the sessions.
_SESSIONS_SQL = text(
    f"""
    WITH readings AS (
        SELECT charger_id, read_time, kwh_delivered_dc, battery_temp,
               lag(charger_id) OVER by_time AS previous_charger,
               lag(read_time) OVER by_time AS previous_time
        FROM vehicle.vehicle_readings
        WHERE vehicle_id = :vehicle_id
          AND read_time >= timestamptz 'epoch' + :start_us * interval '1 microsecond'
          AND read_time < timestamptz 'epoch' + :end_us * interval '1 microsecond'
        WINDOW by_time AS (ORDER BY read_time)
    ), numbered AS (
        SELECT *, count(*) FILTER (
                   WHERE previous_time IS NULL
                      OR previous_charger <> charger_id
                      OR read_time - previous_time > :gap_us * interval '1 microsecond'
               ) OVER (ORDER BY read_time) AS session
        FROM readings
    )
    SELECT charger_id,
           {MICROS_SQL.format(col="min(read_time)")},
           {MICROS_SQL.format(col="max(read_time)")},
           sum(kwh_delivered_dc), count(*), sum(battery_temp), count(battery_temp)
    FROM numbered
    GROUP BY session, charger_id
    ORDER BY session
    """
)
