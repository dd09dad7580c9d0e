"""Each service's Alembic history goes from an empty database to head and back."""

from __future__ import annotations

import psycopg
import pytest

from services.common import migrations

TABLES = {
    "meter": {
        "meter_readings",
        "charger_status",
        "meter_rollups_hourly",
        "rollup_state",
        "reading_conflicts",
        "rollup_invalidations",
    },
    "vehicle": {
        "vehicle_readings",
        "vehicle_status",
        "vehicle_rollups_hourly",
        "rollup_state",
        "reading_conflicts",
        "rollup_invalidations",
    },
}


def tables(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name <> 'alembic_version'",
            (schema,),
        ).fetchall()
    return {row[0] for row in rows}


def primary_key(url: str, table: str) -> list[str]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT a.attname FROM pg_index i "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
            "WHERE i.indrelid = %s::regclass AND i.indisprimary "
            "ORDER BY array_position(i.indkey, a.attnum)",
            (table,),
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize("service", migrations.MIGRATED_SERVICES)
def test_upgrade_to_head_and_back(empty_database_url, service):
    assert tables(empty_database_url, service) == set()
    migrations.upgrade(service, empty_database_url)
    assert tables(empty_database_url, service) == TABLES[service]
    migrations.downgrade(service, empty_database_url, "base")
    assert tables(empty_database_url, service) == set()
    migrations.upgrade(service, empty_database_url)
    assert tables(empty_database_url, service) == TABLES[service]


def test_histories_are_independent(empty_database_url):
    migrations.upgrade("meter", empty_database_url)
    assert tables(empty_database_url, "vehicle") == set()
    migrations.upgrade("vehicle", empty_database_url)
    migrations.downgrade("meter", empty_database_url, "base")
    assert tables(empty_database_url, "vehicle") == TABLES["vehicle"]


def test_natural_keys_types_and_index(database_url):
    assert primary_key(database_url, "meter.meter_readings") == ["meter_id", "read_time"]
    assert primary_key(database_url, "vehicle.vehicle_readings") == ["vehicle_id", "read_time"]
    assert primary_key(database_url, "meter.charger_status") == ["meter_id"]
    assert primary_key(database_url, "vehicle.vehicle_status") == ["vehicle_id"]
    with psycopg.connect(database_url) as connection:
        types: dict[str, str] = dict(
            connection.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'vehicle' AND table_name = 'vehicle_readings'"
            ).fetchall()
        )
        index = connection.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'vehicle' "
            "AND tablename = 'vehicle_readings' AND indexname <> 'vehicle_readings_pkey'"
        ).fetchall()
    assert types["read_time"] == "timestamp with time zone"
    assert types["soc"] == types["kwh_delivered_dc"] == "double precision"
    assert [row[0].split(" USING ")[1] for row in index] == ["btree (charger_id, read_time)"]


def test_status_tables_are_tuned_for_constant_updates(database_url):
    with psycopg.connect(database_url) as connection:
        options: dict[str, list[str]] = dict(
            connection.execute(
                "SELECT c.oid::regclass::text, c.reloptions FROM pg_class c WHERE c.oid IN "
                "('meter.charger_status'::regclass, 'vehicle.vehicle_status'::regclass)"
            ).fetchall()
        )
    for table in ("meter.charger_status", "vehicle.vehicle_status"):
        assert "fillfactor=50" in options[table]
        assert "autovacuum_vacuum_threshold=5000" in options[table]
