"""hourly rollups of the vehicle readings

vehicle.vehicle_rollups_hourly holds, per vehicle, charger and UTC hour, that hour's readings
as the correlation rule sees them (each reading's interval from the vehicle's previous reading
on the charger, or its usual period): the readings, those of unknown energy, the DC energy,
the battery temperatures, the first and last reading times and the earliest interval start (epoch
seconds), and the silences that decide where sessions begin: before the hour's first reading
(`first_break`) and the longest between its readings (`inner_break`), in seconds, infinite when
there is no previous reading within an hour and the lookaround. ListChargingSessions takes a
whole hour from here when none of its silences is longer than the session gap. The
(charger_id, hour) index gives the per-charger figures.

rollup_state and rollup_invalidations work as the meter's (MeterService's migration 0006).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE vehicle.vehicle_rollups_hourly (
            vehicle_id           text COLLATE "C" NOT NULL,
            hour                 timestamptz      NOT NULL,
            charger_id           text COLLATE "C" NOT NULL,
            reading_count        int8             NOT NULL,
            unknown_energy_count int8             NOT NULL,
            kwh_delivered_dc     double precision NOT NULL,
            battery_temp_sum     double precision NOT NULL,
            battery_temp_count   int8             NOT NULL,
            first_t              double precision NOT NULL,
            last_t               double precision NOT NULL,
            span_start           double precision NOT NULL,
            first_break          double precision NOT NULL,
            inner_break          double precision NOT NULL,
            PRIMARY KEY (vehicle_id, hour, charger_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX vehicle_rollups_hourly_charger_idx "
        "ON vehicle.vehicle_rollups_hourly (charger_id, hour)"
    )
    op.execute(
        """
        CREATE TABLE vehicle.rollup_state (
            single       boolean     PRIMARY KEY DEFAULT true CHECK (single),
            rolled_until timestamptz,
            reach_us     int8        NOT NULL,
            rule         text        NOT NULL DEFAULT ''
        )
        """
    )
    op.execute("INSERT INTO vehicle.rollup_state (rolled_until, reach_us) VALUES (NULL, 900000000)")
    op.execute("CREATE TABLE vehicle.rollup_invalidations (hour timestamptz NOT NULL)")
    op.execute("CREATE INDEX rollup_invalidations_hour_idx ON vehicle.rollup_invalidations (hour)")


def downgrade() -> None:
    op.execute("DROP TABLE vehicle.rollup_invalidations")
    op.execute("DROP TABLE vehicle.rollup_state")
    op.execute("DROP TABLE vehicle.vehicle_rollups_hourly")
