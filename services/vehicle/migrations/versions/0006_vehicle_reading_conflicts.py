"""vehicle readings refused as conflicts

vehicle.reading_conflicts keeps each reading refused because another reading of the same
vehicle_id and timestamp, with other values, is stored (first write wins): its key, what it
sent (the reading's values as JSON) and when it first came. A resent conflicting reading is
kept once, so data completeness counts distinct conflicts however often a device retries.
Rows older than the readings' retention are deleted by the maintenance loop.

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
        CREATE TABLE vehicle.reading_conflicts (
            vehicle_id   text COLLATE "C" NOT NULL,
            read_time   timestamptz      NOT NULL,
            sent        jsonb            NOT NULL,
            first_time  timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (vehicle_id, read_time, sent)
        )
        """
    )
    op.execute(
        "CREATE INDEX reading_conflicts_read_time_idx ON vehicle.reading_conflicts (read_time)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE vehicle.reading_conflicts")
