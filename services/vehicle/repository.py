"""SQL of VehicleService: the only module that knows the vehicle schema's tables."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.group_commit import ReadingTable
from services.common.reads import ReadGate

# Times leave the database as integer microseconds since the epoch: cheap to convert, and
# exact (a double holds every microsecond of these centuries; extract() would be numeric, slower).
_MICROS = "round(date_part('epoch', {col}) * 1000000)::int8"


class VehicleStatusRow(NamedTuple):
    vehicle_id: str
    charger_id: str
    soc: float
    kwh_delivered_dc: float
    battery_temp: float
    read_micros: int
    update_micros: int


_STATUS_COLUMNS = (
    "vehicle_id, charger_id, soc, kwh_delivered_dc, battery_temp, "
    f"{_MICROS.format(col='read_time')}, {_MICROS.format(col='update_time')}"
)


class VehicleRepository:
    def __init__(self, engine: Engine, reads: ReadGate | None = None) -> None:
        """`reads` bounds every read (README, Reliability); by default with the defaults."""
        self._reads = reads or ReadGate(engine)

    def get_status(self, vehicle_id: str) -> VehicleStatusRow | None:
        query = text(f"SELECT {_STATUS_COLUMNS} FROM vehicle.vehicle_status WHERE vehicle_id = :id")
        with self._reads.connection() as connection:
            row = connection.execute(query, {"id": vehicle_id}).first()
        return None if row is None else VehicleStatusRow(*row)

    def list_statuses(self, after: str | None, limit: int) -> list[VehicleStatusRow]:
        """Statuses in vehicle_id order after `after`; keyset paging on the primary key.

        The dashboards' hot path reads up to 10,000 rows: a binary psycopg cursor returns them
        about twice as fast as SQLAlchemy's result rows."""
        query = (
            f"SELECT {_STATUS_COLUMNS} FROM vehicle.vehicle_status "
            "WHERE vehicle_id > %s ORDER BY vehicle_id LIMIT %s"
        )
        with self._reads.connection() as connection:
            driver = connection.connection.driver_connection
            with driver.cursor(binary=True) as cursor:  # type: ignore[union-attr]
                rows = cursor.execute(query, (after or "", limit)).fetchall()
        return [VehicleStatusRow(*row) for row in rows]

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

    def exists(self, vehicle_id: str) -> bool:
        query = text("SELECT 1 FROM vehicle.vehicle_status WHERE vehicle_id = :id")
        with self._reads.connection() as connection:
            return connection.execute(query, {"id": vehicle_id}).first() is not None


# Group commit (see services.common.group_commit): times travel as integer microseconds and
# become timestamptz in SQL, which is exact and cheaper than a datetime per reading.
_READ_TIME = "timestamptz 'epoch' + read_us * interval '1 microsecond'"
_STAGED_READ_TIME = _READ_TIME.replace("read_us", "s.read_us")

READINGS_TABLE = ReadingTable(
    staging_ddl=(
        "CREATE TEMP TABLE IF NOT EXISTS vehicle_staging ("
        'vehicle_id text COLLATE "C", read_us int8, charger_id text COLLATE "C", soc float8, '
        "kwh_delivered_dc float8, battery_temp float8)"
    ),
    copy_sql=(
        "COPY vehicle_staging (vehicle_id, read_us, charger_id, soc, kwh_delivered_dc, "
        "battery_temp) FROM STDIN (FORMAT BINARY)"
    ),
    copy_types=("text", "int8", "text", "float8", "float8", "float8"),
    write_sql=f"""
        WITH inserted AS (
            INSERT INTO vehicle.vehicle_readings
                (vehicle_id, read_time, charger_id, soc, kwh_delivered_dc, battery_temp)
            SELECT vehicle_id, {_READ_TIME}, charger_id, soc, kwh_delivered_dc, battery_temp
            FROM vehicle_staging ORDER BY vehicle_id, read_us
            ON CONFLICT DO NOTHING
            RETURNING vehicle_id, read_time, charger_id, soc, kwh_delivered_dc, battery_temp
        ), upserted AS (
            -- Only readings stored just now: a resent one never rewrites the status.
            INSERT INTO vehicle.vehicle_status AS current
                (vehicle_id, charger_id, soc, kwh_delivered_dc, battery_temp,
                 read_time, update_time)
            SELECT DISTINCT ON (vehicle_id)
                vehicle_id, charger_id, soc, kwh_delivered_dc, battery_temp, read_time, now()
            FROM inserted ORDER BY vehicle_id, read_time DESC
            ON CONFLICT (vehicle_id) DO UPDATE SET
                charger_id = excluded.charger_id,
                soc = excluded.soc,
                kwh_delivered_dc = excluded.kwh_delivered_dc,
                battery_temp = excluded.battery_temp,
                read_time = excluded.read_time,
                update_time = excluded.update_time
            WHERE excluded.read_time >= current.read_time
        )
        SELECT stored.n, CASE WHEN stored.n < {{staged}} THEN (
            SELECT array_agg(s.vehicle_id || ' ' || s.read_us) FROM vehicle_staging s
            WHERE NOT EXISTS (
                SELECT 1 FROM inserted i
                WHERE i.vehicle_id = s.vehicle_id
                AND i.read_time = {_STAGED_READ_TIME})
        ) END
        FROM (SELECT count(*) AS n FROM inserted) AS stored;
        TRUNCATE vehicle_staging""",
)


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
           {_MICROS.format(col="min(read_time)")},
           {_MICROS.format(col="max(read_time)")},
           sum(kwh_delivered_dc), count(*), sum(battery_temp), count(battery_temp)
    FROM numbered
    GROUP BY session, charger_id
    ORDER BY session
    """
)
