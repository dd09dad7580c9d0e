"""Network faults between client and server, and between server and database, injected by a
TCP proxy: added latency, connections reset, a blackhole. After the clients' resends every
reading is stored exactly once."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.faultproxy import FaultProxy
from tests.support import start_service, wait_for_health
from tests.test_faults_process import run_senders, stored, wait_until_stored

pytestmark = pytest.mark.e2e

METER = "energy.meter.v1.MeterService"
PER_SENDER = 2_000


def test_client_to_server_latency_resets_and_blackhole(database_url):
    meter = start_service("meter", {"DATABASE_URL": database_url})
    proxy = FaultProxy("127.0.0.1", meter.port)

    def faults() -> None:
        wait_until_stored(database_url, "NET", 1_000)
        proxy.latency = 0.05
        time.sleep(1)
        proxy.reset_all()
        wait_until_stored(database_url, "NET", 4_000)
        proxy.blackhole()
        time.sleep(3)
        proxy.heal()
        wait_until_stored(database_url, "NET", 7_000)
        proxy.reset_all()

    try:
        wait_for_health(meter.target, METER, 1)
        senders = run_senders(
            proxy.address, "NET", 6, faults, per_sender=PER_SENDER, stream_readings=300, deadline=5
        )
    finally:
        proxy.close()
        meter.kill()
    assert stored(database_url, "NET-") == {f"NET-{i:02d}": PER_SENDER for i in range(6)}
    assert proxy.cut > 0, "the resets cut live connections"
    # What cut streams had committed was sent again (channel retries or the sender's resends)
    # and came back as duplicates, stored once.
    assert sum(s.totals.duplicates + s.totals.resends for s in senders) > 0


def proxied_database_url(database_url: str, proxy: FaultProxy) -> str:
    url = make_url(database_url)
    return url.set(host="127.0.0.1", port=proxy.port, query={}).render_as_string(
        hide_password=False
    )


def database_proxy(database_url: str) -> FaultProxy:
    url = make_url(database_url)
    socket_dir = url.query.get("host")
    if socket_dir:  # the embedded PostgreSQL listens on a Unix socket only
        return FaultProxy(upstream_unix=f"{socket_dir}/.s.PGSQL.{url.port or 5432}")
    return FaultProxy(url.host or "127.0.0.1", url.port or 5432)


def test_server_to_database_latency_resets_and_blackhole(database_url):
    proxy = database_proxy(database_url)
    via_proxy = proxied_database_url(database_url, proxy)
    with psycopg.connect(via_proxy) as probe:  # the proxy really leads to the test database
        assert probe.execute("SELECT count(*) FROM meter.meter_readings").fetchone() == (0,)
    meter = start_service("meter", {"DATABASE_URL": via_proxy, "DB_CONNECT_TIMEOUT_SECONDS": "2"})

    def faults() -> None:
        wait_until_stored(database_url, "DBNET", 1_000)
        proxy.latency = 0.02
        time.sleep(1)
        proxy.reset_all()
        wait_until_stored(database_url, "DBNET", 3_000)
        proxy.blackhole()
        time.sleep(2)
        proxy.heal()
        wait_until_stored(database_url, "DBNET", 5_000)
        proxy.reset_all()

    try:
        wait_for_health(meter.target, METER, 1)
        run_senders(
            meter.target, "DBNET", 4, faults, per_sender=PER_SENDER, stream_readings=300, deadline=5
        )
        assert meter.process.poll() is None
    finally:
        meter.kill()
        proxy.close()
    assert stored(database_url, "DBNET-") == {f"DBNET-{i:02d}": PER_SENDER for i in range(4)}
    assert proxy.cut > 0, "the resets cut the service's database connections"
