"""Network faults between client and server, and between server and database, injected by a
TCP proxy: added latency, connections reset, a blackhole. After the clients' resends every
reading is stored exactly once. Each fault hits streams that the test holds open with part of
them committed and unacknowledged (see Hold), so it never depends on timing whether it did."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy.engine import make_url

from services.launcher import start_service, wait_for_health
from tests.faultproxy import FaultProxy
from tests.support import wait_for
from tests.test_faults_process import BATCH, Hold, run_senders, stored, wait_held

pytestmark = pytest.mark.e2e

METER = "energy.meter.v1.MeterService"
PER_SENDER = 2_000  # streams of 300 readings start at 0, 300, ..., 1,800
HELD_OPEN = 300  # seconds: a held stream's deadline, so that only the fault ends it


def dark_failures(hold: Hold, count: int) -> None:
    """Until every sender had an attempt at `hold`'s stream, begun after its release while the
    network is dark, fail: nothing of it could pass, so only its deadline could end it."""
    wait_for(
        "a stream sent into the blackhole failed for every sender",
        lambda: hold.failed_after_release == set(range(count)),
        state=lambda: sorted(hold.failed_after_release),
    )


def test_client_to_server_latency_resets_and_blackhole(database_url):
    meter = start_service("meter", {"DATABASE_URL": database_url})
    proxy = FaultProxy("127.0.0.1", meter.port)
    proxy.latency = 0.05  # until the blackhole heals
    reset_open = Hold(300, lambda sender: 1, deadline=HELD_OPEN)
    into_the_dark = Hold(900, lambda sender: 1)  # the senders' own 5 s deadline
    reset_again = Hold(1_500, lambda sender: 2, deadline=HELD_OPEN)
    holds = [reset_open, into_the_dark, reset_again]
    cuts: list[int] = []

    def faults() -> None:
        # A reset cuts every connection while each sender's stream is open, part committed.
        wait_held(database_url, "NET", 6, reset_open, open_calls=True)
        cuts.append(proxy.reset_all())
        reset_open.release()
        # A blackhole swallows the rest of held streams, then their resends, until deadlines.
        wait_held(database_url, "NET", 6, into_the_dark, open_calls=False)
        proxy.blackhole()
        into_the_dark.release()
        dark_failures(into_the_dark, 6)
        proxy.heal()
        wait_held(database_url, "NET", 6, reset_again, open_calls=True)
        cuts.append(proxy.reset_all())
        reset_again.release()

    try:
        wait_for_health(meter.target, METER, 1)
        senders = run_senders(
            proxy.address,
            "NET",
            6,
            faults,
            per_sender=PER_SENDER,
            stream_readings=300,
            deadline=5,
            holds=holds,
        )
    finally:
        proxy.close()
        meter.kill()
    assert stored(database_url, "NET-") == {f"NET-{i:02d}": PER_SENDER for i in range(6)}
    # Each reset cut the live connection(s) that carried the held streams.
    assert len(cuts) == 2 and min(cuts) >= 1, cuts
    # Every held stream was sent again after its fault; what it had committed came back as
    # duplicates, and every reading was acknowledged exactly once.
    for index, sender in enumerate(senders):
        assert sender.totals.accepted + sender.totals.duplicates == PER_SENDER
        assert sender.totals.duplicates >= sum(BATCH * h.batches(index) for h in holds)


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
    proxy.latency = 0.02  # until the blackhole heals
    reset_open = Hold(300, lambda sender: 1, deadline=HELD_OPEN)
    into_the_dark = Hold(900, lambda sender: 2)  # the senders' own 5 s deadline
    cuts: list[int] = []

    def faults() -> None:
        # A reset cuts the writers' connections (they committed the held parts) mid-load.
        wait_held(database_url, "DBNET", 4, reset_open, open_calls=True)
        cuts.append(proxy.reset_all())
        reset_open.release()
        # A blackhole swallows the writers' transactions for the rest of the held streams and
        # their resends until the callers' deadlines pass; then those transactions are cut.
        wait_held(database_url, "DBNET", 4, into_the_dark, open_calls=False)
        proxy.blackhole()
        into_the_dark.release()
        dark_failures(into_the_dark, 4)
        cuts.append(proxy.reset_all())
        proxy.heal()

    try:
        wait_for_health(meter.target, METER, 1)
        senders = run_senders(
            meter.target,
            "DBNET",
            4,
            faults,
            per_sender=PER_SENDER,
            stream_readings=300,
            deadline=5,
            holds=[reset_open, into_the_dark],
        )
        assert meter.process.poll() is None
    finally:
        meter.kill()
        proxy.close()
    assert stored(database_url, "DBNET-") == {f"DBNET-{i:02d}": PER_SENDER for i in range(4)}
    assert len(cuts) == 2 and min(cuts) >= 1, "the resets cut the service's database connections"
    for index, sender in enumerate(senders):
        assert sender.totals.accepted + sender.totals.duplicates == PER_SENDER
        assert sender.totals.duplicates >= BATCH * into_the_dark.batches(index)
