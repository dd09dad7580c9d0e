"""SQL of MeterService: the only module that knows the meter schema's tables."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.engine import Engine

from services.common.group_commit import ReadingTable
from services.common.reads import ReadGate

# Times leave the database as integer microseconds since the epoch: cheap to convert, and
# exact (a double holds every microsecond of these centuries; extract() would be numeric, slower).
_MICROS = "round(date_part('epoch', {col}) * 1000000)::int8"


class ChargerStatusRow(NamedTuple):
    meter_id: str
    kwh_consumed_ac: float
    voltage: float
    read_micros: int
    update_micros: int


_STATUS_COLUMNS = (
    f"meter_id, kwh_consumed_ac, voltage, {_MICROS.format(col='read_time')}, "
    f"{_MICROS.format(col='update_time')}"
)


class MeterRepository:
    def __init__(self, engine: Engine, reads: ReadGate | None = None) -> None:
        """`reads` bounds every read (README, Reliability); by default with the defaults."""
        self._reads = reads or ReadGate(engine)

    def get_status(self, meter_id: str) -> ChargerStatusRow | None:
        query = text(f"SELECT {_STATUS_COLUMNS} FROM meter.charger_status WHERE meter_id = :id")
        with self._reads.connection() as connection:
            row = connection.execute(query, {"id": meter_id}).first()
        return None if row is None else ChargerStatusRow(*row)

    def list_statuses(self, after: str | None, limit: int) -> list[ChargerStatusRow]:
        """Statuses in meter_id order after `after`; keyset paging on the primary key.

        The dashboards' hot path reads up to 10,000 rows: a binary psycopg cursor returns them
        about twice as fast as SQLAlchemy's result rows."""
        query = (
            f"SELECT {_STATUS_COLUMNS} FROM meter.charger_status "
            "WHERE meter_id > %s ORDER BY meter_id LIMIT %s"
        )
        with self._reads.connection() as connection:
            driver = connection.connection.driver_connection
            with driver.cursor(binary=True) as cursor:  # type: ignore[union-attr]
                rows = cursor.execute(query, (after or "", limit)).fetchall()
        return [ChargerStatusRow(*row) for row in rows]

    def summarize(
        self, meter_ids: list[str], starts_us: list[int], ends_us: list[int]
    ) -> list[ConsumptionRow]:
        """AC kWh and reading count of each (meter, [start, end)), in the order given."""
        params = {"ids": meter_ids, "starts": starts_us, "ends": ends_us}
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(_SUMMARIZE_SQL, params).all()
        return [ConsumptionRow(float(row[0]), int(row[1])) for row in rows]


# Group commit (see services.common.group_commit): times travel as integer microseconds and
# become timestamptz in SQL, which is exact and cheaper than a datetime per reading.
_READ_TIME = "timestamptz 'epoch' + read_us * interval '1 microsecond'"
_STAGED_READ_TIME = _READ_TIME.replace("read_us", "s.read_us")

READINGS_TABLE = ReadingTable(
    staging_ddl=(
        "CREATE TEMP TABLE IF NOT EXISTS meter_staging ("
        'meter_id text COLLATE "C", read_us int8, kwh_consumed_ac float8, voltage float8)'
    ),
    copy_sql=(
        "COPY meter_staging (meter_id, read_us, kwh_consumed_ac, voltage) "
        "FROM STDIN (FORMAT BINARY)"
    ),
    copy_types=("text", "int8", "float8", "float8"),
    write_sql=f"""
        WITH inserted AS (
            INSERT INTO meter.meter_readings (meter_id, read_time, kwh_consumed_ac, voltage)
            SELECT meter_id, {_READ_TIME}, kwh_consumed_ac, voltage
            FROM meter_staging ORDER BY meter_id, read_us
            ON CONFLICT DO NOTHING
            RETURNING meter_id, read_time, kwh_consumed_ac, voltage
        ), upserted AS (
            -- Only readings stored just now: a resent one never rewrites the status.
            INSERT INTO meter.charger_status AS current
                (meter_id, kwh_consumed_ac, voltage, read_time, update_time)
            SELECT DISTINCT ON (meter_id) meter_id, kwh_consumed_ac, voltage, read_time, now()
            FROM inserted ORDER BY meter_id, read_time DESC
            ON CONFLICT (meter_id) DO UPDATE SET
                kwh_consumed_ac = excluded.kwh_consumed_ac,
                voltage = excluded.voltage,
                read_time = excluded.read_time,
                update_time = excluded.update_time
            WHERE excluded.read_time >= current.read_time
        )
        SELECT stored.n, CASE WHEN stored.n < {{staged}} THEN (
            SELECT array_agg(s.meter_id || ' ' || s.read_us) FROM meter_staging s
            WHERE NOT EXISTS (
                SELECT 1 FROM inserted i
                WHERE i.meter_id = s.meter_id AND i.read_time = {_STAGED_READ_TIME})
        ) END
        FROM (SELECT count(*) AS n FROM inserted) AS stored;
        TRUNCATE meter_staging""",
)


class ConsumptionRow(NamedTuple):
    kwh_consumed_ac: float
    reading_count: int


# Every interval in one statement: the arrays are unnested in request order and each interval
# is summed by a range scan of the primary key (meter_id, read_time).
_SUMMARIZE_SQL = text(
    f"""
    SELECT coalesce(totals.kwh, 0), totals.readings
    FROM unnest(CAST(:ids AS text[]), CAST(:starts AS int8[]), CAST(:ends AS int8[]))
         WITH ORDINALITY AS wanted(meter_id, start_us, end_us, position)
    CROSS JOIN LATERAL (
        SELECT sum(r.kwh_consumed_ac) AS kwh, count(*) AS readings
        FROM meter.meter_readings r
        WHERE r.meter_id = wanted.meter_id
          AND r.read_time >= {_READ_TIME.replace("read_us", "wanted.start_us")}
          AND r.read_time < {_READ_TIME.replace("read_us", "wanted.end_us")}
    ) AS totals
    ORDER BY wanted.position
    """
)
