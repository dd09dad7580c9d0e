"""meter readings (cold) and charger status (hot)

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
        CREATE TABLE meter.meter_readings (
            meter_id        text COLLATE "C" NOT NULL,
            read_time       timestamptz      NOT NULL,
            kwh_consumed_ac double precision NOT NULL,
            voltage         double precision NOT NULL,
            PRIMARY KEY (meter_id, read_time)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE meter.charger_status (
            meter_id        text COLLATE "C" PRIMARY KEY,
            kwh_consumed_ac double precision NOT NULL,
            voltage         double precision NOT NULL,
            read_time       timestamptz      NOT NULL,
            update_time     timestamptz      NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE meter.charger_status")
    op.execute("DROP TABLE meter.meter_readings")
