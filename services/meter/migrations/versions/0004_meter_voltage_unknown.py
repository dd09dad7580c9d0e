"""voltage may be unknown

A charger that does not report its voltage (an OCPP MeterValues without a Voltage measurand)
still has its energy stored: voltage is NULL there, never 0. Catalog change only: no table
rewrite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("meter.meter_readings", "meter.charger_status")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN voltage DROP NOT NULL")


def downgrade() -> None:
    # Fails while readings of unknown voltage are stored.
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN voltage SET NOT NULL")
