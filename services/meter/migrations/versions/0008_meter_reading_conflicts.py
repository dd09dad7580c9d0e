"""meter readings refused as conflicts

meter.reading_conflicts keeps each reading refused because another reading of the same
meter_id and timestamp, with other values, is stored (first write wins): its key, what it
sent (the reading's values as JSON) and when it first came. A resent conflicting reading is
kept once, so data completeness counts distinct conflicts however often a device retries.
Rows older than the readings' retention are deleted by the maintenance loop.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE meter.reading_conflicts (
            meter_id   text COLLATE "C" NOT NULL,
            read_time   timestamptz      NOT NULL,
            sent        jsonb            NOT NULL,
            first_time  timestamptz      NOT NULL DEFAULT now(),
            PRIMARY KEY (meter_id, read_time, sent)
        )
        """
    )
    op.execute(
        "CREATE INDEX reading_conflicts_read_time_idx ON meter.reading_conflicts (read_time)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE meter.reading_conflicts")
