"""hot status table tuned for constant updates

Every reading of an entity updates its status row, so the table holds few live rows and
churns through dead ones. Half-empty pages let updates stay on the page (HOT: no index
entry) and vacuum runs after a fixed number of dead rows, not a share of a small table;
without it a listing of 10,000 statuses was seen to walk 136,000 dead rows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE vehicle.vehicle_status SET (fillfactor = 50, "
        "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000)"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE vehicle.vehicle_status RESET (fillfactor, "
        "autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold)"
    )
