"""what AttributeConsumption needs in the meter rollups

Each meter-hour rollup also holds its readings as the correlation rule sees them (each reading's
interval from the previous one or the meter's usual period): the energy of the intervals that
can be attributed (known, and not implying more than MAX_CHARGER_POWER_KW), how many there
are, the seconds they cover, and the readings excluded as implausible or of unknown energy. A
session alone on its charger over whole hours takes these sums instead of its readings.

rollup_state gains `rule`, the settings the rollups were made with (the reach and the maximum
power): when it differs from the service's, every hour whose readings are kept is made again.
It starts empty, so the first run after this migration makes every such hour again and fills
the new columns.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = (
    ("attributable_count", "int8"),
    ("attributable_kwh", "double precision"),
    ("covered_seconds", "double precision"),
    ("implausible_count", "int8"),
    ("interval_unknown_count", "int8"),
)


def upgrade() -> None:
    for name, sql_type in COLUMNS:
        op.execute(f"ALTER TABLE meter.meter_rollups_hourly ADD COLUMN {name} {sql_type}")
    op.execute("ALTER TABLE meter.rollup_state ADD COLUMN rule text NOT NULL DEFAULT ''")


def downgrade() -> None:
    op.execute("ALTER TABLE meter.rollup_state DROP COLUMN rule")
    for name, _ in COLUMNS:
        op.execute(f"ALTER TABLE meter.meter_rollups_hourly DROP COLUMN {name}")
