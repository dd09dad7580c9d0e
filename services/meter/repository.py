"""SQL of MeterService: the only module that knows the meter schema's tables. The ingest and
status SQL is the shared one (services.readings.repository), made from the METER declaration."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text

from services.meter.kind import METER
from services.readings.repository import (
    TIMESTAMPTZ_SQL,
    StatusRepository,
    reading_table,
    register_energy_sql,
)

READINGS_TABLE = reading_table(METER)


class ConsumptionRow(NamedTuple):
    """One interval's AC energy (kWh), its readings, and those of unknown energy."""

    kwh_consumed_ac: float
    reading_count: int
    unknown_energy_count: int


class MeterRepository(StatusRepository):
    """The charger statuses, and the AC energy sums of SummarizeConsumption."""

    def summarize(
        self, meter_ids: list[str], starts_us: list[int], ends_us: list[int]
    ) -> list[ConsumptionRow]:
        """AC kWh, reading count and unknown-energy count of each (meter, [start, end)), in the
        order given; a register reading's energy is its difference from the previous one."""
        params = {
            "ids": meter_ids,
            "starts": starts_us,
            "ends": ends_us,
            "reach_us": self._reach_us,
        }
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(_SUMMARIZE_SQL, params).all()
        return [ConsumptionRow(float(row[0]), int(row[1]), int(row[2])) for row in rows]


# Every interval in one statement: the arrays are unnested in request order and each interval
# is read by a range scan of the primary key (meter_id, read_time), from `reach` before its start
# so that its first register reading finds the previous one. Register readings are lagged among
# themselves (the window's partition), in time order whatever order they arrived in.
_SUMMARIZE_SQL = text(
    f"""
    SELECT coalesce(totals.kwh, 0), totals.readings, totals.unknown
    FROM unnest(CAST(:ids AS text[]), CAST(:starts AS int8[]), CAST(:ends AS int8[]))
         WITH ORDINALITY AS wanted(meter_id, start_us, end_us, position)
    CROSS JOIN LATERAL (
        SELECT sum(energy) AS kwh, count(*) AS readings, count(*) - count(energy) AS unknown
        FROM (
            SELECT read_time,
                   coalesce(kwh_consumed_ac, {
        register_energy_sql("kwh_consumed_ac_register", "previous", "read_time - previous_time")
    }) AS energy
            FROM (
                SELECT read_time, kwh_consumed_ac, kwh_consumed_ac_register,
                       lag(kwh_consumed_ac_register) OVER registers AS previous,
                       lag(read_time) OVER registers AS previous_time
                FROM meter.meter_readings r
                WHERE r.meter_id = wanted.meter_id
                  AND r.read_time >= {TIMESTAMPTZ_SQL.format(us="(wanted.start_us - :reach_us)")}
                  AND r.read_time < {TIMESTAMPTZ_SQL.format(us="wanted.end_us")}
                WINDOW registers AS (
                    PARTITION BY kwh_consumed_ac_register IS NULL ORDER BY read_time)
            ) AS lagged
            WHERE read_time >= {TIMESTAMPTZ_SQL.format(us="wanted.start_us")}
        ) AS energies
    ) AS totals
    ORDER BY wanted.position
    """
)
