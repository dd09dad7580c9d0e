"""Creating and dropping whole databases on a server: for the test suite and the benchmark,
which each work in a fresh database of their own."""

from __future__ import annotations

import uuid

import psycopg
from sqlalchemy.engine import make_url

from services.common import migrations


def with_database(libpq_url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    return make_url(libpq_url).set(database=name).render_as_string(hide_password=False)


def create_database(server_url: str, prefix: str, *, migrate: bool = False) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    if migrate:
        for service in migrations.MIGRATED_SERVICES:
            migrations.upgrade(service, url)
    return url


def drop_database(server_url: str, database_url: str) -> None:
    name = make_url(database_url).database
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
