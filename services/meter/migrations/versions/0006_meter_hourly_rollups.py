"""hourly rollups of the meter readings

meter.meter_rollups_hourly holds, per meter and UTC hour, the readings of that hour, those of
unknown energy and the AC energy of the others, each reading's energy as SummarizeConsumption
defines it (the interval energy, or the register's difference from the meter's previous
register reading within the reach). meter.rollup_state says up to which hour rollups are made
(`rolled_until`) and with which reach; meter.rollup_invalidations lists the hours before it that
a late reading changed, which the maintenance loop makes again (and which reads take from the
readings meanwhile). Rollups are kept ROLLUP_RETENTION_DAYS, beyond the readings' retention.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE meter.meter_rollups_hourly (
            meter_id             text COLLATE "C" NOT NULL,
            hour                 timestamptz      NOT NULL,
            reading_count        int8             NOT NULL,
            unknown_energy_count int8             NOT NULL,
            kwh_consumed_ac      double precision NOT NULL,
            PRIMARY KEY (meter_id, hour)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE meter.rollup_state (
            single       boolean     PRIMARY KEY DEFAULT true CHECK (single),
            rolled_until timestamptz,
            reach_us     int8        NOT NULL
        )
        """
    )
    op.execute("INSERT INTO meter.rollup_state (rolled_until, reach_us) VALUES (NULL, 900000000)")
    # Append-only: a write adds the hours it marks without looking at the marks there (no
    # key, no lock: concurrent writes never wait for each other here); a run deletes the marks
    # its snapshot sees, so a mark committed after that survives to the next run.
    op.execute("CREATE TABLE meter.rollup_invalidations (hour timestamptz NOT NULL)")
    op.execute("CREATE INDEX rollup_invalidations_hour_idx ON meter.rollup_invalidations (hour)")


def downgrade() -> None:
    op.execute("DROP TABLE meter.rollup_invalidations")
    op.execute("DROP TABLE meter.rollup_state")
    op.execute("DROP TABLE meter.meter_rollups_hourly")
