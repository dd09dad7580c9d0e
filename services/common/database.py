"""Database access: SQLAlchemy engines (psycopg 3 driver) and raw psycopg connections."""

from __future__ import annotations

import psycopg
import sqlalchemy
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool


def sqlalchemy_url(libpq_url: str) -> str:
    """Users give plain libpq URIs; SQLAlchemy needs the driver named."""
    url = make_url(libpq_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _libpq_options(connect_timeout: float, name: str) -> dict[str, object]:
    """TCP keepalives and a send timeout: a connection to a database that vanished without a
    word (a dropped route, a dead host) fails within seconds instead of hanging a writer."""
    return {
        "connect_timeout": max(1, round(connect_timeout)),
        "application_name": name,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": 30_000,
    }


def create_engine(
    libpq_url: str,
    *,
    pool_size: int,
    connect_timeout: float,
    name: str,
    pool_timeout: float | None = None,
) -> Engine:
    """The read pool: `pool_size` connections and as many again in overflow; a checkout waits
    at most `pool_timeout` (default: the connect timeout) for one, then raises TimeoutError.

    JIT compilation is off on these connections: the correlation statements read a few
    thousand rows, but the planner's guesses for their lateral scans exceed jit_above_cost, and
    compiling took 136 ms of a 217 ms ListChargerSessions statement (EXPLAIN ANALYZE, a day of
    10,000 vehicles loaded)."""
    options = _libpq_options(connect_timeout, name)
    options["options"] = "-c jit=off"
    return sqlalchemy.create_engine(
        sqlalchemy_url(libpq_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=connect_timeout if pool_timeout is None else pool_timeout,
        connect_args=options,
    )


def create_probe_engine(engine: Engine, *, connect_timeout: float, name: str) -> Engine:
    """The health monitor's own engine on `engine`'s database: no pool (each ping opens a fresh
    connection, so it tells whether the database takes connections, and never waits for a busy
    read pool), a short connect timeout and a 2 s statement timeout."""
    options = _libpq_options(connect_timeout, name)
    options["options"] = "-c statement_timeout=2000"
    return sqlalchemy.create_engine(engine.url, poolclass=NullPool, connect_args=options)


def connect(libpq_url: str, *, connect_timeout: float, name: str) -> psycopg.Connection:
    """A raw psycopg connection for COPY-based bulk writes (the writers own one each)."""
    return psycopg.connect(libpq_url, **_libpq_options(connect_timeout, name))  # type: ignore[arg-type]
