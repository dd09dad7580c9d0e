"""readings in either energy form: interval energy or the meter's cumulative register

A reading stores what the charger sent: kwh_consumed_ac (interval energy) or
kwh_consumed_ac_register (the cumulative register), the other NULL. Both statements only change
the catalog (a nullable column without a default, a dropped NOT NULL): no table rewrite.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("meter.meter_readings", "meter.charger_status")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} ALTER COLUMN kwh_consumed_ac DROP NOT NULL, "
            "ADD COLUMN kwh_consumed_ac_register double precision"
        )


def downgrade() -> None:
    # Fails while register readings are stored: they have no interval energy to fall back to.
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} DROP COLUMN kwh_consumed_ac_register, "
            "ALTER COLUMN kwh_consumed_ac SET NOT NULL"
        )
