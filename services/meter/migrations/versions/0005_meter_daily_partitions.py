"""meter readings partitioned by day

meter.meter_readings becomes a table partitioned by range of read_time, one partition per UTC
day (meter_readings_pYYYYMMDD), so that a day past retention is dropped as a whole table rather
than deleted row by row, and a day's index stays the size of a day. Every stored reading is
copied into its day's partition; the service makes the partitions of later days as it needs
them. The copy writes every row once more: on a large history it takes minutes (plan it).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from alembic import op

from services.common.partitions import convert_to_daily, convert_to_unpartitioned

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    convert_to_daily(op.get_bind().exec_driver_sql, "meter", "meter_readings", "meter_id")


def downgrade() -> None:
    convert_to_unpartitioned(op.get_bind().exec_driver_sql, "meter", "meter_readings", "meter_id")
