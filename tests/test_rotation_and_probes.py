"""Running under security as an orchestrator runs us: a plaintext health port for probes that
cannot present a client certificate (HEALTH_LISTEN_ADDR), certificates and token files read
again when they change, and channels that spread calls over every address a target resolves
to. Real in-process servers on real sockets; certificates made here by services.common.certs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from energy.meter.v1 import meter_service_pb2, meter_service_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services import client
from services.common.certs import make_ca, make_cert
from services.common.server import AddressUnavailable
from tests.conftest import InProcessServer, start_in_process
from tests.test_security import (  # the module's PKI fixture and helpers
    DEVICE,
    HANDSHAKE_TIMEOUT,
    D,
    Pki,
    bearer,
    code_of,
    meter,
    pki,  # noqa: F401 (a fixture)
    servers,  # noqa: F401 (a fixture)
    tls_channel,
    wait_serving,
)
from tests.test_security import start as start_server_of

pytestmark = pytest.mark.e2e

METER_SERVICE = "energy.meter.v1.MeterService"
SERVING = health_pb2.HealthCheckResponse.SERVING


def health_status(channel: grpc.Channel, service: str = METER_SERVICE) -> int:
    return (
        health_pb2_grpc.HealthStub(channel)
        .Check(health_pb2.HealthCheckRequest(service=service), timeout=HANDSHAKE_TIMEOUT)
        .status
    )


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    """True once `check()` is; False when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


# --- the health port ------------------------------------------------------------------------


def test_health_port_answers_a_plaintext_probe_while_the_main_port_wants_a_certificate(
    pki: Pki,  # noqa: F811
    database_url: str,
    servers: list[InProcessServer],  # noqa: F811
) -> None:
    server = start_server_of(
        servers, "meter", database_url, health_listen_addr="127.0.0.1:0", **pki.server_settings()
    )
    health_port = server.running.health_port
    assert health_port and health_port != server.running.port
    with grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe:
        wait_serving(probe, METER_SERVICE)
        assert health_status(probe) == SERVING
        assert health_status(probe, "") == SERVING
        # Health and nothing else: the service is not on this port, and reflection (for
        # grpcurl) knows only health.
        stub = meter_service_pb2_grpc.MeterServiceStub(probe)
        request = meter_service_pb2.IngestReadingRequest(reading=meter(DEVICE, D))
        assert code_of(lambda: stub.IngestReading(request, timeout=HANDSHAKE_TIMEOUT)) == (
            grpc.StatusCode.UNIMPLEMENTED
        )
        reflect = reflection_pb2_grpc.ServerReflectionStub(probe).ServerReflectionInfo
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        [answer] = reflect(iter([listing]), timeout=HANDSHAKE_TIMEOUT)
        assert sorted(s.name for s in answer.list_services_response.service) == [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
    # The main port still refuses a client without a certificate, and a plaintext one.
    with tls_channel(server.target, pki.ca) as no_certificate:
        assert code_of(lambda: health_status(no_certificate)) == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(server.target) as plaintext:
        assert code_of(lambda: health_status(plaintext)) == grpc.StatusCode.UNAVAILABLE
    with tls_channel(server.target, pki.ca, pki.operator) as operator:
        assert health_status(operator) == SERVING

    # Check only: Watch is not served on this port (module docstring of ProbeHealth).
    with grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe:
        watch = health_pb2_grpc.HealthStub(probe).Watch(
            health_pb2.HealthCheckRequest(service=METER_SERVICE), timeout=HANDSHAKE_TIMEOUT
        )
        assert code_of(lambda: next(watch)) == grpc.StatusCode.UNIMPLEMENTED

    # Draining: with a stream still open on the main port, the probe port says NOT_SERVING
    # while the server waits for it; once the server is gone, the port is closed.
    release = threading.Event()

    def held_open() -> Iterator[meter_service_pb2.IngestReadingsRequest]:
        yield meter_service_pb2.IngestReadingsRequest(readings=[meter(DEVICE, D)])
        release.wait(30)

    with (
        tls_channel(server.target, pki.ca, pki.service) as ingesting,
        grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe,
    ):
        stream = meter_service_pb2_grpc.MeterServiceStub(ingesting).IngestReadings.future(
            held_open(), timeout=30
        )
        registry = server.running.component.metrics.registry
        assert eventually(
            lambda: (
                registry.get_sample_value("energy_ingest_streams_open", {"service": "meter"}) == 1
            )
        )
        servers.remove(server)
        stopping = threading.Thread(target=server.running.shutdown, args=(20,))
        stopping.start()
        assert eventually(
            lambda: health_status(probe) == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        assert stopping.is_alive(), "the drain should still be waiting for the open stream"
        release.set()
        stopping.join(30)
        assert stream.result().accepted == 1
    with grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe:
        assert code_of(lambda: health_status(probe)) == grpc.StatusCode.UNAVAILABLE


def test_half_open_calls_and_watch_bursts_cannot_hold_the_health_port(
    database_url: str,
    servers: list[InProcessServer],  # noqa: F811
) -> None:
    """A caller that opens health calls and never sends their message gets them ended after
    UNARY_MESSAGE_TIMEOUT_SECONDS, and those beyond GRPC_HEALTH_WORKERS refused at once; a
    burst of Watch calls cancelled together leaves Check answering."""
    server = start_server_of(
        servers,
        "meter",
        database_url,
        health_listen_addr="127.0.0.1:0",
        grpc_health_workers=2,
        unary_message_timeout_seconds=1.0,
    )
    target = f"127.0.0.1:{server.running.health_port}"
    never = threading.Event()

    def silent() -> Iterator[bytes]:
        never.wait(30)
        yield b""

    with grpc.insecure_channel(target) as attacker, grpc.insecure_channel(target) as probe:
        wait_serving(probe, METER_SERVICE)
        # Check sent as a stream that never carries its message: headers only.
        half_open = attacker.stream_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=lambda raw: raw,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        held = [half_open.future(silent(), timeout=30) for _ in range(2)]
        time.sleep(0.3)
        # The two slots are taken: a third call is refused at once, not queued.
        assert code_of(lambda: health_status(probe)) == grpc.StatusCode.RESOURCE_EXHAUSTED
        # ...and within the message timeout the half-open calls are ended, and probes answer.
        assert eventually(lambda: code_of(lambda: health_status(probe)) == grpc.StatusCode.OK, 5)
        assert all(call.exception(5) is not None for call in held)
        never.set()

        watches = [
            health_pb2_grpc.HealthStub(attacker).Watch(
                health_pb2.HealthCheckRequest(service=METER_SERVICE), timeout=10
            )
            for _ in range(50)
        ]
        for watch in watches:
            watch.cancel()
        assert health_status(probe) == SERVING


def test_a_taken_health_port_is_refused_naming_the_setting(database_url: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        with pytest.raises(AddressUnavailable) as refused:
            start_in_process("meter", database_url, health_listen_addr=taken)
    assert refused.value.variable == "HEALTH_LISTEN_ADDR"
    assert refused.value.address == taken


def test_a_burst_of_cancelled_watches_on_the_main_port_leaves_health_answering(
    database_url: str,
) -> None:
    """grpc's own health servicer deadlocked on this (services.common.health): 50 Watch calls
    cancelled at once while the status changes, and the change never returned, Check stopped
    answering and the server could not stop. Watchers beyond GRPC_HEALTH_WORKERS are refused;
    a change still reaches a watcher; the server stops at once."""
    server = start_in_process("meter", database_url)
    stopped = False
    try:
        with server.channel() as channel:
            wait_serving(channel, METER_SERVICE)
            for round_ in range(10):
                channels = [server.channel() for _ in range(5)]
                watches = [
                    health_pb2_grpc.HealthStub(channels[i % 5]).Watch(
                        health_pb2.HealthCheckRequest(service=""), timeout=10
                    )
                    for i in range(50)
                ]
                for first in watches[:5]:
                    with contextlib.suppress(grpc.RpcError):  # refused beyond the cap
                        next(first)
                status = SERVING if round_ % 2 else health_pb2.HealthCheckResponse.NOT_SERVING
                changed = threading.Thread(target=server.running.health.set, args=("", status))
                for watch in watches:
                    watch.cancel()
                changed.start()
                changed.join(10)
                assert not changed.is_alive(), f"round {round_}: the status change hangs"
                for each in channels:
                    each.close()
            server.running.health.set("", SERVING)
            assert health_status(channel, "") == SERVING
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=METER_SERVICE), timeout=30
            )
            assert next(watch).status == SERVING
            stopping = threading.Thread(target=server.running.shutdown, args=(5,))
            began = time.monotonic()
            stopping.start()
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            stopping.join(15)
            stopped = not stopping.is_alive()
            assert stopped and time.monotonic() - began < 10
    finally:
        if not stopped:
            server.running.shutdown(1)


# --- certificates and tokens rotated under a running server ----------------------------------


def replace_file(path: Path, data: bytes) -> None:
    """As a Secret volume or a careful operator does: written aside, then renamed into place."""
    aside = path.with_name(path.name + ".new")
    aside.write_bytes(data)
    os.replace(aside, path)


def test_a_rotated_server_certificate_is_served_to_new_connections_without_a_restart(
    pki: Pki,  # noqa: F811
    database_url: str,
    servers: list[InProcessServer],  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    old_ca, old_ca_key = make_ca("old server CA")
    new_ca, new_ca_key = make_ca("new server CA")

    def server_pem(ca: bytes, ca_key: bytes) -> tuple[bytes, bytes]:
        return make_cert(ca, ca_key, "localhost", dns_names=["localhost"], server=True)

    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    old_cert, old_key = server_pem(old_ca, old_ca_key)
    cert_file.write_bytes(old_cert)
    key_file.write_bytes(old_key)
    server = start_server_of(
        servers,
        "meter",
        database_url,
        tls_cert_file=str(cert_file),
        tls_key_file=str(key_file),
        tls_client_ca_file=str(pki.ca_file),
    )
    with tls_channel(server.target, old_ca, pki.operator) as before:
        wait_serving(before, METER_SERVICE)
        new_cert, new_key = server_pem(new_ca, new_ca_key)
        replace_file(key_file, new_key)
        replace_file(cert_file, new_cert)

        def new_certificate_served() -> bool:
            with tls_channel(server.target, new_ca, pki.operator) as after:
                return code_of(lambda: health_status(after)) == grpc.StatusCode.OK

        assert eventually(new_certificate_served)
        # A client that trusts only the old CA can no longer connect...
        with tls_channel(server.target, old_ca, pki.operator) as stale:
            assert code_of(lambda: health_status(stale)) == grpc.StatusCode.UNAVAILABLE
        # ...while the connection made before the rotation keeps working, and client
        # certificates are still required.
        assert health_status(before) == SERVING
    with tls_channel(server.target, new_ca) as no_certificate:
        assert code_of(lambda: health_status(no_certificate)) == grpc.StatusCode.UNAVAILABLE

    # A rotation gone wrong (a key that is not the certificate's) is logged as an error naming
    # the files, once, and new connections keep getting the certificate that works.
    caplog.set_level(logging.INFO, logger="services.common.security")
    _, wrong_key = server_pem(old_ca, old_ca_key)
    replace_file(key_file, wrong_key)
    time.sleep(1.2)  # past the re-check interval

    def served_with_new_ca() -> bool:
        with tls_channel(server.target, new_ca, pki.operator) as after:
            return code_of(lambda: health_status(after)) == grpc.StatusCode.OK

    assert served_with_new_ca() and served_with_new_ca()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "does not load" in errors[0].getMessage()
    assert str(key_file) in vars(errors[0])["error"]
    assert not any("reloaded" in r.getMessage() for r in caplog.records)


def token_table(tokens: dict[str, tuple[str, str]]) -> bytes:
    return json.dumps(
        {
            hashlib.sha256(token.encode()).hexdigest(): {"principal": name, "role": role}
            for token, (name, role) in tokens.items()
        }
    ).encode()


def test_a_changed_token_file_counts_from_the_next_call_and_a_broken_one_is_ignored(
    database_url: str,
    servers: list[InProcessServer],  # noqa: F811
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_bytes(token_table({"tok-old": ("reader-old", "operator")}))
    server = start_server_of(servers, "meter", database_url, auth_tokens_file=str(tokens))
    request = meter_service_pb2.GetChargerStatusRequest(meter_id=DEVICE)

    def code_for(token: str) -> grpc.StatusCode:
        with server.channel() as channel:
            stub = meter_service_pb2_grpc.MeterServiceStub(channel)
            return code_of(
                lambda: stub.GetChargerStatus(
                    request, metadata=bearer(token), timeout=HANDSHAKE_TIMEOUT
                )
            )

    # NOT_FOUND: the call was let in, and no charger has reported.
    assert code_for("tok-old") == grpc.StatusCode.NOT_FOUND
    assert code_for("tok-new") == grpc.StatusCode.UNAUTHENTICATED
    # The old token is revoked and a new one issued.
    replace_file(tokens, token_table({"tok-new": ("reader-new", "operator")}))
    assert eventually(lambda: code_for("tok-new") == grpc.StatusCode.NOT_FOUND)
    assert code_for("tok-old") == grpc.StatusCode.UNAUTHENTICATED
    # A file that does not parse keeps the table in use (a half-written file must not lock
    # everyone out, nor let anyone in).
    replace_file(tokens, b'{"not": "a token table"')
    time.sleep(1.5)  # past the re-check interval (1 s)
    assert code_for("tok-new") == grpc.StatusCode.NOT_FOUND
    assert code_for("tok-old") == grpc.StatusCode.UNAUTHENTICATED


# --- every address of a target --------------------------------------------------------------


def handled(server: InProcessServer, method: str) -> float:
    value = server.running.component.metrics.registry.get_sample_value(
        "grpc_server_handled_total",
        {
            "grpc_type": "unary",
            "grpc_service": METER_SERVICE,
            "grpc_method": method,
            "grpc_code": "NOT_FOUND",
        },
    )
    return value or 0.0


def test_a_channel_spreads_calls_over_every_address_of_its_target(
    database_url: str,
    servers: list[InProcessServer],  # noqa: F811
) -> None:
    """AnalyticsService dials METER_TARGET and VEHICLE_TARGET with client.channel: with a
    dns:/// target naming every pod of a headless Service, each pod gets calls. Two servers
    behind one target (the ipv4: scheme lists both, as DNS would)."""
    first = start_server_of(servers, "meter", database_url)
    second = start_server_of(servers, "meter", database_url)
    target = f"ipv4:{first.target},{second.target}"
    request = meter_service_pb2.GetChargerStatusRequest(meter_id=DEVICE)
    with client.channel(target) as channel:
        grpc.channel_ready_future(channel).result(timeout=HANDSHAKE_TIMEOUT)
        stub = meter_service_pb2_grpc.MeterServiceStub(channel)
        for _ in range(20):
            assert code_of(lambda: stub.GetChargerStatus(request, timeout=10)) == (
                grpc.StatusCode.NOT_FOUND
            )
    counts = [handled(server, "GetChargerStatus") for server in (first, second)]
    # round_robin: the 20 calls alternate between the two ready connections. Both must be
    # connected first for an exact split; allow one call's slack for the second to come up.
    assert sum(counts) == 20
    assert min(counts) >= 9, counts
