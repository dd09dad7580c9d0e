"""vehicle readings (cold) and vehicle status (hot)

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Natural key: retries are idempotent and COPY stays fast (no random UUID index).
    op.execute(
        """
        CREATE TABLE vehicle.vehicle_readings (
            vehicle_id       text COLLATE "C" NOT NULL,
            read_time        timestamptz      NOT NULL,
            charger_id       text COLLATE "C" NOT NULL,
            soc              double precision NOT NULL,
            kwh_delivered_dc double precision NOT NULL,
            battery_temp     double precision NOT NULL,
            PRIMARY KEY (vehicle_id, read_time)
        )
        """
    )
    # Correlation looks up who charged on a charger and when.
    op.execute(
        "CREATE INDEX vehicle_readings_charger_time_idx "
        "ON vehicle.vehicle_readings (charger_id, read_time)"
    )
    op.execute(
        """
        CREATE TABLE vehicle.vehicle_status (
            vehicle_id       text COLLATE "C" PRIMARY KEY,
            charger_id       text COLLATE "C" NOT NULL,
            soc              double precision NOT NULL,
            kwh_delivered_dc double precision NOT NULL,
            battery_temp     double precision NOT NULL,
            read_time        timestamptz      NOT NULL,
            update_time      timestamptz      NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE vehicle.vehicle_status")
    op.execute("DROP TABLE vehicle.vehicle_readings")
