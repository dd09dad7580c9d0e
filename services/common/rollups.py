"""Hourly rollups of a history, kept exact: made by the maintenance loop, marked stale by the
writes that change them, made again, and dropped after ROLLUP_RETENTION_DAYS.

A schema with rollups has `rollup_state` (one row: `rolled_until`, the hour up to which
rollups are made, the reach and the `rule`, the settings they were made with) and
`rollup_invalidations` (hours before `rolled_until` whose rollups are stale). The write
statement marks the hours a newly stored reading changes when they are before `rolled_until`
(services.readings.repository); a duplicate or a conflict stores nothing and marks nothing. A
reader takes an hour from the rollups only when it is before `rolled_until`, made with the
reader's rule and not marked, and from the readings otherwise, so an answer never depends on
how far the loop has got.

A run of the loop (`Rollups.run`):
1. If the rule (MAX_READING_INTERVAL_SECONDS, and the kind's own settings) changed, every hour
   whose readings are still stored is marked to be made again; older rollups stay as made.
2. `rolled_until` moves to the last whole hour that ended an hour and the lookaround (twice
   the reach: how far a reading's interval depends on the readings around it) before now, and
   the hours it passes are marked, in one transaction (the update waits for the writes that
   read the old value: they hold it FOR SHARE). Nothing is computed yet: a crash leaves them
   marked.
3. The marked hours are made, a run of contiguous hours (at most a day) per transaction, which
   first deletes the marks its snapshot sees: a write committed before that is in the rollup
   made after it; one committed later left its mark, which survives to the next run.
4. Rollups of the days before ROLLUP_RETENTION_DAYS are deleted (whole days, as the readings'
   partitions are dropped)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from services.common.timeconv import MICROS_SQL, TIMESTAMPTZ_SQL

log = logging.getLogger(__name__)

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
# Hours are rolled up once they ended this long ago, plus the lookaround; readings later than
# that mark them again.
SETTLE_US = HOUR_US
# Hours made in one transaction at most.
MAX_HOURS_PER_REFRESH = 24


def rollup_rule(reach_us: int, rule: str = "") -> str:
    """What rollups made with these settings are stored with (`rollup_state.rule`): a reader
    takes rollups only when it is its own."""
    return f"reach_us={reach_us}" + (f" {rule}" if rule else "")


def rolled_until_sql(schema: str) -> str:
    """A query of one row: `rolled_us`, the schema's rolled_until (micros) when its rollups were
    made with the reader's rule (bound as :rollup_rule), else 0 (no hour is served)."""
    return (
        f"SELECT CASE WHEN rule = :rollup_rule THEN coalesce({_micros('rolled_until')}, 0) "
        f"ELSE 0 END AS rolled_us FROM {schema}.rollup_state"
    )


def _ts(micros: int) -> str:
    return TIMESTAMPTZ_SQL.format(us=int(micros))


@dataclass
class RollupRun:
    """What a run did: hours newly covered, hours made, rollup rows deleted by retention."""

    advanced_hours: int = 0
    made_hours: int = 0
    expired_rows: int = 0
    reset: bool = False


class Rollups:
    """The rollups of one schema. `make_sql(first_us, end_us, reach_us)` is the kind's statement
    that upserts the rollups of every entity for the hours [first_us, end_us); `rule` names the
    other settings it depends on (empty when none)."""

    def __init__(
        self,
        schema: str,
        table: str,
        readings_table: str,
        make_sql: Callable[[int, int, int], str],
        *,
        reach_us: int,
        rule: str = "",
        retention_days: int = 0,
    ) -> None:
        self.schema = schema
        self.table = f"{schema}.{table}"
        self._readings = f"{schema}.{readings_table}"
        self._make_sql = make_sql
        self._reach_us = reach_us
        self._rule = rollup_rule(reach_us, rule)
        # Lookaround: a reading's interval depends on the readings up to twice the reach away.
        self._settle_us = SETTLE_US + 2 * reach_us
        self._retention_days = retention_days

    def run(self, connection: psycopg.Connection, now_us: int) -> RollupRun:
        """One run at `now_us`; `connection` in autocommit mode."""
        run = RollupRun()
        run.reset = self._reset_if_rule_changed(connection)
        run.advanced_hours = self._advance(
            connection, (now_us - self._settle_us) // HOUR_US * HOUR_US
        )
        run.made_hours = self.refresh(connection)
        if self._retention_days:
            # Whole days, as the readings' partitions go: with ROLLUP_RETENTION_DAYS equal to
            # RETENTION_DAYS every hour whose readings are kept keeps its rollup.
            cutoff = (now_us - self._retention_days * DAY_US) // DAY_US * DAY_US
            deleted = connection.execute(f"DELETE FROM {self.table} WHERE hour < {_ts(cutoff)}")
            run.expired_rows = deleted.rowcount
        return run

    def _reset_if_rule_changed(self, connection: psycopg.Connection) -> bool:
        """A new reach changes the energy of register readings (a new maximum power, which
        intervals are plausible): every hour whose readings are still stored is marked, to be
        made again with it. Hours whose readings are gone keep the rollups they have (made
        with the rule of their time): there is nothing to make them again from."""
        with connection.transaction():
            row = connection.execute(
                f"SELECT rule, {_micros('rolled_until')} FROM {self.schema}.rollup_state FOR UPDATE"
            ).fetchone()
            if row is None or row[0] == self._rule:
                return False
            if row[1] is None:  # nothing made yet: nothing to make again
                connection.execute(
                    f"UPDATE {self.schema}.rollup_state SET reach_us = %s, rule = %s",
                    (self._reach_us, self._rule),
                )
                return False
            log.warning(
                "the rollups' rule changed: the rollups of the readings kept are made again",
                extra={"schema": self.schema, "was": row[0], "now": self._rule},
            )
            connection.execute(
                f"INSERT INTO {self.schema}.rollup_invalidations (hour) "
                f"SELECT DISTINCT date_trunc('hour', read_time, 'UTC') FROM {self._readings} "
                f"WHERE read_time < {_ts(row[1])}"
            )
            connection.execute(
                f"UPDATE {self.schema}.rollup_state SET reach_us = %s, rule = %s",
                (self._reach_us, self._rule),
            )
        return True

    def _advance(self, connection: psycopg.Connection, target_us: int) -> int:
        """Moves `rolled_until` to `target_us`, marking the hours it passes; returns how many."""
        with connection.transaction():
            row = connection.execute(
                f"SELECT {_micros('rolled_until')} FROM {self.schema}.rollup_state FOR UPDATE"
            ).fetchone()
            current = row[0] if row else None
            if current is None:
                first = connection.execute(
                    f"SELECT {_micros('min(read_time)')} FROM {self._readings}"
                ).fetchone()
                current = target_us if first is None or first[0] is None else first[0]
                current = current // HOUR_US * HOUR_US
            if current >= target_us:
                if row is not None and row[0] is None:
                    connection.execute(
                        f"UPDATE {self.schema}.rollup_state SET rolled_until = {_ts(target_us)}"
                    )
                return 0
            connection.execute(
                f"UPDATE {self.schema}.rollup_state SET rolled_until = {_ts(target_us)}"
            )
            # Only the hours that hold readings: a history that starts a year ago is not a
            # year of empty hours to make.
            marked = connection.execute(
                f"INSERT INTO {self.schema}.rollup_invalidations (hour) "
                f"SELECT DISTINCT date_trunc('hour', read_time, 'UTC') FROM {self._readings} "
                f"WHERE read_time >= {_ts(current)} AND read_time < {_ts(target_us)}"
            )
            return marked.rowcount

    def mark(self, connection: psycopg.Connection, first_us: int, end_us: int) -> None:
        """Marks every hour of [first_us, end_us) stale: read from the readings until made
        again."""
        connection.execute(
            f"INSERT INTO {self.schema}.rollup_invalidations (hour) "
            f"SELECT generate_series({_ts(first_us)}, {_ts(end_us - HOUR_US)}, interval '1 hour')"
        )

    def refresh(self, connection: psycopg.Connection, within: tuple[int, int] | None = None) -> int:
        """Makes every marked hour (those in [first_us, end_us) when `within` is given);
        returns how many were made."""
        bounds = ""
        if within is not None:
            bounds = f"WHERE hour >= {_ts(within[0])} AND hour < {_ts(within[1])} "
        hours = [
            row[0]
            for row in connection.execute(
                f"SELECT DISTINCT {_micros('hour')} FROM {self.schema}.rollup_invalidations "
                f"{bounds}ORDER BY 1"
            )
        ]
        for first, end in _runs(hours):
            # The marks this statement's snapshot sees go, then the hours are made with a
            # later snapshot: a write committed before the delete is in the rollups; one
            # committed after it left its mark for the next run.
            with connection.transaction():
                connection.execute(
                    f"DELETE FROM {self.schema}.rollup_invalidations "
                    f"WHERE hour >= {_ts(first)} AND hour < {_ts(end)}"
                )
                connection.execute(self._make_sql(first, end, self._reach_us))
        return len(hours)


def _micros(column: str) -> str:
    return MICROS_SQL.format(col=column)


def _runs(hours: list[int]) -> list[tuple[int, int]]:
    """Sorted hour starts → [first, end) runs of contiguous hours, at most a day each."""
    runs: list[tuple[int, int]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour and hour - runs[-1][0] < MAX_HOURS_PER_REFRESH * HOUR_US:
            runs[-1] = (runs[-1][0], hour + HOUR_US)
        else:
            runs.append((hour, hour + HOUR_US))
    return runs
