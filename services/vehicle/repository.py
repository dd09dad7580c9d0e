"""SQL of VehicleService: the only module that knows the vehicle schema's tables."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.engine import Engine

# Times leave the database as integer microseconds since the epoch (exact, and cheap to convert).
_MICROS = "(extract(epoch FROM {col}) * 1000000)::bigint"


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
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get_status(self, vehicle_id: str) -> VehicleStatusRow | None:
        query = text(f"SELECT {_STATUS_COLUMNS} FROM vehicle.vehicle_status WHERE vehicle_id = :id")
        with self._engine.connect() as connection:
            row = connection.execute(query, {"id": vehicle_id}).first()
        return None if row is None else VehicleStatusRow(*row)

    def list_statuses(self, after: str | None, limit: int) -> list[VehicleStatusRow]:
        """Statuses in vehicle_id order after `after`; keyset paging on the primary key."""
        query = text(
            f"SELECT {_STATUS_COLUMNS} FROM vehicle.vehicle_status "
            "WHERE vehicle_id > :after ORDER BY vehicle_id LIMIT :limit"
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query, {"after": after or "", "limit": limit}).all()
        return [VehicleStatusRow(*row) for row in rows]
