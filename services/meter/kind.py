"""The charger reading, declared once for the shared reading service (services.readings)."""

from __future__ import annotations

from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc

from services.meter import rules
from services.readings.kind import Column, ReadingContract, ReadingKind

METER = ReadingKind(
    service="meter",
    device="charger",
    columns=(
        Column("kwh_consumed_ac", "float8", optional=True),
        Column("kwh_consumed_ac_register", "float8", optional=True),
        Column("voltage", "float8", optional=True),
    ),
    readings_table="meter_readings",
    status_table="charger_status",
    rules=rules.RULES,
    validate_batch=rules.validate_batch,
    contract=ReadingContract(meter_service_pb2, meter_service_pb2_grpc, meter_pb2.ChargerStatus),
    rolled_up=True,
    reports_continuously=True,
)
