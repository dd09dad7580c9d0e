"""Alembic, one version history per service, each kept in its own schema."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from services.common.database import sqlalchemy_url

SERVICES_DIR = Path(__file__).resolve().parent.parent
MIGRATED_SERVICES = ("meter", "vehicle")


def alembic_config(service: str, libpq_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SERVICES_DIR / service / "migrations"))
    # ConfigParser interpolation treats % specially (URL-encoded socket paths contain it).
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(libpq_url).replace("%", "%%"))
    config.attributes["schema"] = service
    return config


def upgrade(service: str, libpq_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, libpq_url), revision)


def downgrade(service: str, libpq_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(service, libpq_url), revision)


def run_migrations_online() -> None:
    """The body of every service's env.py: the schema comes from the config attributes."""
    import sqlalchemy
    from alembic import context

    config = context.config
    schema = config.attributes["schema"]
    engine = sqlalchemy.create_engine(
        config.get_main_option("sqlalchemy.url") or "", poolclass=sqlalchemy.pool.NullPool
    )
    with engine.connect() as connection:
        # The version table lives in the schema, so the schema must exist first.
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.commit()
        context.configure(
            connection=connection,
            version_table_schema=schema,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
