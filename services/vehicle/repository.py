"""SQL of VehicleService: the only module that knows the vehicle schema's tables. The ingest and
status SQL is the shared one (services.readings.repository), made from the VEHICLE declaration."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text

from services.readings.repository import (
    MICROS_SQL,
    TIMESTAMPTZ_SQL,
    StatusRepository,
    reading_table,
    register_energy_sql,
)
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
            "reach_us": self._reach_us,
        }
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(_SESSIONS_SQL, params).all()
        return [SessionRow(*row) for row in rows]


class SessionRow(NamedTuple):
    """One charging session: its charger, first and last reading (micros), DC energy (kWh),
    readings, the sum and count of the battery temperatures reported, and the readings of
    unknown energy."""

    charger_id: str
    start_micros: int
    end_micros: int
    kwh_delivered_dc: float
    reading_count: int
    battery_temp_sum: float
    battery_temp_count: int
    unknown_energy_count: int


# Gaps and islands in one statement: a reading opens a new session when it is the first, when
# its charger differs from the previous reading's, or when the gap to it exceeds session_gap;
# a running count of those openings numbers the sessions. Readings from `reach` before the
# start are read only so that a register reading finds the previous one on its charger.
_SESSIONS_SQL = text(
    f"""
    WITH lagged AS (
        SELECT charger_id, read_time, kwh_delivered_dc, kwh_delivered_dc_register, battery_temp,
               lag(kwh_delivered_dc_register) OVER registers AS previous_register,
               lag(read_time) OVER registers AS previous_register_time
        FROM vehicle.vehicle_readings
        WHERE vehicle_id = :vehicle_id
          AND read_time >= {TIMESTAMPTZ_SQL.format(us="(:start_us - :reach_us)")}
          AND read_time < {TIMESTAMPTZ_SQL.format(us=":end_us")}
        WINDOW registers AS (
            PARTITION BY charger_id, kwh_delivered_dc_register IS NULL ORDER BY read_time)
    ), readings AS (
        SELECT charger_id, read_time, battery_temp,
               coalesce(kwh_delivered_dc, {
        register_energy_sql(
            "kwh_delivered_dc_register", "previous_register", "read_time - previous_register_time"
        )
    }) AS energy,
               lag(charger_id) OVER by_time AS previous_charger,
               lag(read_time) OVER by_time AS previous_time
        FROM lagged
        WHERE read_time >= {TIMESTAMPTZ_SQL.format(us=":start_us")}
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
           coalesce(sum(energy), 0), count(*), coalesce(sum(battery_temp), 0),
           count(battery_temp), count(*) - count(energy)
    FROM numbered
    GROUP BY session, charger_id
    ORDER BY session
    """
)
