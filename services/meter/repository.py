"""SQL of MeterService: the only module that knows the meter schema's tables. The ingest and
status SQL is the shared one (services.readings.repository), made from the METER declaration."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text

from services.meter.kind import METER
from services.readings.repository import TIMESTAMPTZ_SQL, StatusRepository, reading_table

READINGS_TABLE = reading_table(METER)


class ConsumptionRow(NamedTuple):
    kwh_consumed_ac: float
    reading_count: int


class MeterRepository(StatusRepository):
    """The charger statuses, and the AC energy sums of SummarizeConsumption."""

    def summarize(
        self, meter_ids: list[str], starts_us: list[int], ends_us: list[int]
    ) -> list[ConsumptionRow]:
        """AC kWh and reading count of each (meter, [start, end)), in the order given."""
        params = {"ids": meter_ids, "starts": starts_us, "ends": ends_us}
        with self._reads.connection(expensive=True) as connection:
            rows = connection.execute(_SUMMARIZE_SQL, params).all()
        return [ConsumptionRow(float(row[0]), int(row[1])) for row in rows]


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
          AND r.read_time >= {TIMESTAMPTZ_SQL.format(us="wanted.start_us")}
          AND r.read_time < {TIMESTAMPTZ_SQL.format(us="wanted.end_us")}
    ) AS totals
    ORDER BY wanted.position
    """
)
