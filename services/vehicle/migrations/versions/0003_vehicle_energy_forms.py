"""readings in either energy form, and measurands a vehicle may not report

A reading stores what the vehicle sent: kwh_delivered_dc (interval energy) or
kwh_delivered_dc_register (a cumulative counter), the other NULL; soc and battery_temp are NULL
when the vehicle did not report them. Catalog changes only: no table rewrite.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("vehicle.vehicle_readings", "vehicle.vehicle_status")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} ALTER COLUMN kwh_delivered_dc DROP NOT NULL, "
            "ALTER COLUMN soc DROP NOT NULL, ALTER COLUMN battery_temp DROP NOT NULL, "
            "ADD COLUMN kwh_delivered_dc_register double precision"
        )


def downgrade() -> None:
    # Fails while readings without interval energy, SoC or temperature are stored.
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} DROP COLUMN kwh_delivered_dc_register, "
            "ALTER COLUMN kwh_delivered_dc SET NOT NULL, ALTER COLUMN soc SET NOT NULL, "
            "ALTER COLUMN battery_temp SET NOT NULL"
        )
