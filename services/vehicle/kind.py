"""The vehicle reading, declared once for the shared reading service (services.readings)."""

from __future__ import annotations

from energy.vehicle.v1 import vehicle_pb2, vehicle_service_pb2, vehicle_service_pb2_grpc

from services.readings.kind import Column, ReadingContract, ReadingKind
from services.vehicle import rules

# The longest session gap a request can have and still be answered from the rollups: a rollup
# stores the silences before and within its hour up to this long (longer ones as infinite).
ROLLUP_MAX_GAP_US = 3600 * 1_000_000

VEHICLE = ReadingKind(
    service="vehicle",
    device="vehicle",
    columns=(
        Column("charger_id", "text"),
        Column("soc", "float8", optional=True),
        Column("kwh_delivered_dc", "float8", optional=True),
        Column("kwh_delivered_dc_register", "float8", optional=True),
        Column("battery_temp", "float8", optional=True),
    ),
    readings_table="vehicle_readings",
    status_table="vehicle_status",
    rules=rules.RULES,
    validate_batch=rules.validate_batch,
    contract=ReadingContract(
        vehicle_service_pb2, vehicle_service_pb2_grpc, vehicle_pb2.VehicleStatus
    ),
    rolled_up=True,
    rollup_trailing_us=ROLLUP_MAX_GAP_US,
)
