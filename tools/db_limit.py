"""The database's own rate for the writers' SQL (COPY → staging → insert → hot upsert) with a
given number of connections per table and fleet size, no gRPC: the benchmark's limit phase alone.

Usage: python tools/db_limit.py CHARGERS MINUTES CONNECTIONS   (on the PostgreSQL at
postgresql://postgres@127.0.0.1:5432/test, in a database of its own, dropped afterwards)
"""

from __future__ import annotations

import sys

import psycopg

from services.bench import phases
from services.common.databases import create_database, drop_database
from services.simulate.fleet import FleetConfig

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> None:
    chargers, minutes, connections = (int(arg) for arg in sys.argv[1:4])
    url = create_database(SERVER, "ei_limit", migrate=True)
    try:
        meters, vehicles = phases.fleet_rows(
            FleetConfig(chargers=chargers, vehicles=chargers, minutes=minutes)
        )
        with psycopg.connect(url) as connection:
            before = connection.execute("SELECT pg_current_wal_lsn()").fetchone()
        rate = phases.limit(url, meters, vehicles, writers=connections, batch_size=50_000)
        with psycopg.connect(url) as connection:
            wal = connection.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", before
            ).fetchone()
        print(
            f"{chargers:,} chargers x {minutes} min, {connections} connections per table: "
            f"{rate:,.0f} readings/s, WAL {float(wal[0]) / 2**20:,.0f} MiB"
            if wal
            else ""
        )
    finally:
        drop_database(SERVER, url)


if __name__ == "__main__":
    main()
