"""vehicle readings partitioned by day

vehicle.vehicle_readings becomes a table partitioned by range of read_time, one partition per
UTC day (vehicle_readings_pYYYYMMDD), so that a day past retention is dropped as a whole table
rather than deleted row by row, and a day's indexes stay the size of a day. Every stored reading
is copied into its day's partition; the service makes the partitions of later days as it needs
them. The copy writes every row once more: on a large history it takes minutes (plan it).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from alembic import op

from services.common.partitions import convert_to_daily, convert_to_unpartitioned

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Correlation looks up who charged on a charger and when.
INDEXES = (("vehicle_readings_charger_time_idx", "charger_id, read_time"),)


def upgrade() -> None:
    convert_to_daily(
        op.get_bind().exec_driver_sql, "vehicle", "vehicle_readings", "vehicle_id", INDEXES
    )


def downgrade() -> None:
    convert_to_unpartitioned(
        op.get_bind().exec_driver_sql, "vehicle", "vehicle_readings", "vehicle_id", INDEXES
    )
