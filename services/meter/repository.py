"""SQL of MeterService: the only module that knows the meter schema's tables."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.engine import Engine

# Times leave the database as integer microseconds since the epoch (exact, and cheap to convert).
_MICROS = "(extract(epoch FROM {col}) * 1000000)::bigint"


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
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get_status(self, meter_id: str) -> ChargerStatusRow | None:
        query = text(f"SELECT {_STATUS_COLUMNS} FROM meter.charger_status WHERE meter_id = :id")
        with self._engine.connect() as connection:
            row = connection.execute(query, {"id": meter_id}).first()
        return None if row is None else ChargerStatusRow(*row)

    def list_statuses(self, after: str | None, limit: int) -> list[ChargerStatusRow]:
        """Statuses in meter_id order, starting after `after`; keyset paging on the primary key."""
        query = text(
            f"SELECT {_STATUS_COLUMNS} FROM meter.charger_status "
            "WHERE meter_id > :after ORDER BY meter_id LIMIT :limit"
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query, {"after": after or "", "limit": limit}).all()
        return [ChargerStatusRow(*row) for row in rows]
