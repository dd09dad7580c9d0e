"""The OCPP central-system endpoint: charge points connect over WebSocket (`ocpp1.6` or
`ocpp2.0.1`) to `ws://host:port/<chargePointId>`, and every meter value they send becomes a
MeterService reading (services/ocpp/mapping.py), sent over gRPC.

A MeterValues (or 2.0.1 TransactionEvent) is confirmed only after MeterService answered that its
readings are committed; when MeterService cannot be reached the answer is a CALLERROR
`InternalError`, so the charger keeps the values and sends them again (a resend is a duplicate,
never counted twice). Everything else a charger needs to run is accepted, not managed: boot,
heartbeat, status, authorization, transactions.

asyncio throughout (this process is not a gRPC server): one task per connection, and grpc.aio
for MeterService."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import hmac
import itertools
import json
import logging
import re
import secrets
import signal
import socket
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import grpc
import websockets
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ocpp.exceptions import (
    FormationViolationError,
    InternalError,
    PropertyConstraintViolationError,
)
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v16.enums import AuthorizationStatus as Authorization16
from ocpp.v16.enums import DataTransferStatus as DataTransferStatus16
from ocpp.v16.enums import RegistrationStatus as Registration16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from ocpp.v201.enums import (
    AuthorizationStatusEnumType,
    DataTransferStatusEnumType,
    RegistrationStatusEnumType,
)
from websockets.asyncio.server import basic_auth
from websockets.protocol import State
from websockets.typing import Subprotocol

from services.common.timeconv import now_micros
from services.ocpp import passwords
from services.ocpp.mapping import Reading, canonical_charge_point_id, readings

log = logging.getLogger(__name__)

SUBPROTOCOLS = ("ocpp1.6", "ocpp2.0.1")
HEARTBEAT_SECONDS = 300
# MeterService's answer for a charger's values: after this, CALLERROR and the charger resends.
INGEST_TIMEOUT_SECONDS = 20.0

# Sends readings to MeterService; returns once they are committed (raises when they are not).
Ingest = Callable[[Sequence[Reading]], Awaitable[None]]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def reading_message(reading: Reading) -> meter_pb2.MeterReading:
    message = meter_pb2.MeterReading(
        meter_id=reading.meter_id,
        timestamp=Timestamp(
            seconds=reading.timestamp_us // 1_000_000,
            nanos=reading.timestamp_us % 1_000_000 * 1000,
        ),
    )
    if reading.kwh_consumed_ac_register is not None:
        message.kwh_consumed_ac_register = reading.kwh_consumed_ac_register
    elif reading.kwh_consumed_ac is not None:
        message.kwh_consumed_ac = reading.kwh_consumed_ac
    if reading.voltage is not None:
        message.voltage = reading.voltage
    return message


# After MeterService restarts, the channel reconnects within a second or two (gRPC's default
# backoff grows towards two minutes, all the while every charger's values answered CALLERROR).
# round_robin: every address the target resolves to gets calls (a dns:/// target of a headless
# Service names every MeterService pod), as AnalyticsService's channels do.
CHANNEL_OPTIONS = (
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def meter_channel(
    target: str, credentials: grpc.ChannelCredentials | None = None
) -> grpc.aio.Channel:
    """The gateway's channel to MeterService: over TLS with `credentials` (TLS_CA_FILE, and the
    service certificate TLS_CLIENT_CERT_FILE / TLS_CLIENT_KEY_FILE under mutual TLS: the
    gateway writes any charge point's ids, as a service principal), else plaintext."""
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)


# Calls in flight to MeterService at once: its per-client cap (MAX_CALLS_PER_PEER, 512) would
# answer RESOURCE_EXHAUSTED beyond it, and a charger would resend for nothing. The others wait
# for a slot (their chargers wait for the confirmation, as they do for any answer).
MAX_CALLS_IN_FLIGHT = 64


class MeterServiceIngest:
    """Sends readings to MeterService as one IngestReadings stream per MeterValues, at most
    MAX_CALLS_IN_FLIGHT at once."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._call = meter_service_pb2_grpc.MeterServiceStub(channel).IngestReadings
        self._slots = asyncio.Semaphore(MAX_CALLS_IN_FLIGHT)

    async def __call__(self, found: Sequence[Reading]) -> None:
        if not found:
            return
        request = meter_service_pb2.IngestReadingsRequest(
            readings=[reading_message(reading) for reading in found]
        )
        try:
            async with self._slots:
                response = await self._call(iter([request]), timeout=INGEST_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            log.warning("MeterService did not take meter values: %s", error.code().name)
            raise InternalError(description="meter values not stored, send them again") from None
        if response.rejected:
            # Values out of bounds will not be better when sent again: confirmed, and said here.
            log.warning(
                "MeterService refused meter values",
                extra={
                    "rejected": response.rejected,
                    "reasons": [f"{r.field}: {r.description}" for r in response.rejections],
                },
            )
        if response.conflicts:
            # A value that differs from the one stored for the same meter and time: the first
            # stays (a charger correcting a value, or two chargers sharing an id).
            log.warning(
                "meter values conflict with stored ones, not stored",
                extra={
                    "conflicts": response.conflicts,
                    "first": [c.description for c in response.conflicting_readings[:3]],
                },
            )


# Meter-value messages one charge point may have handled per second, after a burst: a charger
# sends a few a minute, and a backlog it resends after an outage drains at this pace instead of
# taking the gateway's MeterService slots from everyone else.
MESSAGES_PER_SECOND = 10.0
MESSAGES_BURST = 20


class RateLimit:
    """A token bucket that waits (never refuses: the charger keeps its values until confirmed,
    so refusing would only make it resend sooner)."""

    def __init__(
        self,
        per_second: float = MESSAGES_PER_SECOND,
        burst: int = MESSAGES_BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._per_second = per_second
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._last = clock()

    async def wait(self) -> float:
        """Takes a token, first waiting for one if none is left; returns the seconds waited."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._per_second)
        self._last = now
        self._tokens -= 1
        if self._tokens >= 0:
            return 0.0
        delay = -self._tokens / self._per_second
        await self._sleep(delay)
        return delay


# Transaction ids the gateway hands out (1.6) carry their connector in the low 8 bits, so that a
# StopTransaction finds its connector whatever connection, gateway process or replica started the
# transaction; the rest is a serial from a random start (no two transactions of a charger share
# an id in practice). Connectors above 255 are remembered by this process instead.
_CONNECTOR_BITS = 8
_SERIAL_LIMIT = 1 << (31 - _CONNECTOR_BITS)
_serials = itertools.count(secrets.randbelow(_SERIAL_LIMIT - 1) + 1)


class BoundedMap(collections.OrderedDict[Any, Any]):
    """A dict that forgets its oldest entries beyond `limit` (transactions never stopped)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self._limit:
            self.popitem(last=False)


TRANSACTIONS_REMEMBERED = 100_000
_wide_connectors: BoundedMap = BoundedMap(TRANSACTIONS_REMEMBERED)
# 2.0.1: the EVSE of each (charge point, transaction), sent only in a transaction's first event,
# kept by this process so that the events after a reconnect still find it.
_evses: BoundedMap = BoundedMap(TRANSACTIONS_REMEMBERED)


def transaction_id_for(connector_id: int) -> int:
    serial = next(_serials) % (_SERIAL_LIMIT - 1) + 1
    if 0 < connector_id < 1 << _CONNECTOR_BITS:
        return serial << _CONNECTOR_BITS | connector_id
    transaction_id = serial << _CONNECTOR_BITS
    _wide_connectors[transaction_id] = connector_id
    return transaction_id


def connector_of(transaction_id: int) -> int | None:
    """The connector a transaction id handed out by transaction_id_for was started on."""
    if not isinstance(transaction_id, int) or transaction_id <= 0:
        return None
    connector = transaction_id & ((1 << _CONNECTOR_BITS) - 1)
    return connector or _wide_connectors.get(transaction_id)


# A connector or EVSE id that makes a meter id: `<id>:<n>` within 64 characters.
MAX_CONNECTOR_ID = 2**31 - 1


def _connector(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormationViolationError(description=f"{field} must be an integer, got {value!r}")
    if not 0 <= value <= MAX_CONNECTOR_ID:
        raise PropertyConstraintViolationError(
            description=f"{field} must be 0 to {MAX_CONNECTOR_ID}, got {value}"
        )
    return value


def _meter_value_list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise FormationViolationError(description=f"{field} must be a list of MeterValue objects")
    for entry in value:
        sampled = entry.get("sampled_value")
        if not isinstance(sampled, list) or not all(isinstance(v, dict) for v in sampled):
            raise FormationViolationError(
                description=f"{field}[].sampledValue must be a list of SampledValue objects"
            )
        if "timestamp" in entry and not isinstance(entry["timestamp"], str):
            raise FormationViolationError(description=f"{field}[].timestamp must be a string")
    return value


class _Common:
    """What both versions do with meter values. The meter-value actions skip the library's
    schema check, whose only objection a charger meets in practice is a missing timestamp (the
    receive time stands in, and a warning says so); their shape is checked here instead."""

    id: str
    _ingest: Ingest
    _rate: RateLimit

    async def _store(self, connector_id: int | None, meter_value: Any, field: str) -> None:
        values = _meter_value_list(meter_value, field)
        await self._rate.wait()
        try:
            found = readings(self.id, connector_id, values, now_micros())
        except ValueError as error:
            # Not confirmed: the charger learns the message was refused (nothing of it stored).
            log.warning("meter values refused: %s", error, extra={"charge_point": self.id})
            raise PropertyConstraintViolationError(description=str(error)) from None
        if any(reading.timestamp_missing for reading in found):
            log.warning(
                "meter value without timestamp: receive time used", extra={"charge_point": self.id}
            )
        await self._ingest(found)


class CentralSystem16(_Common, ChargePoint16):
    def __init__(self, charge_point_id: str, connection: Any, ingest: Ingest) -> None:
        super().__init__(charge_point_id, connection)
        self._ingest = ingest
        self._rate = RateLimit()

    @on(Action16.boot_notification)
    def on_boot(self, **_: Any) -> Any:
        return result16.BootNotification(
            current_time=_now(), interval=HEARTBEAT_SECONDS, status=Registration16.accepted
        )

    @on(Action16.heartbeat)
    def on_heartbeat(self, **_: Any) -> Any:
        return result16.Heartbeat(current_time=_now())

    @on(Action16.status_notification)
    def on_status(self, **_: Any) -> Any:
        return result16.StatusNotification()

    @on(Action16.authorize)
    def on_authorize(self, **_: Any) -> Any:
        return result16.Authorize(id_tag_info={"status": Authorization16.accepted})

    @on(Action16.start_transaction)
    def on_start(self, connector_id: int, **_: Any) -> Any:
        return result16.StartTransaction(
            transaction_id=transaction_id_for(_connector(connector_id, "connectorId")),
            id_tag_info={"status": Authorization16.accepted},
        )

    @on(Action16.stop_transaction, skip_schema_validation=True)
    async def on_stop(self, transaction_id: Any = None, **payload: Any) -> Any:
        # Its meter values (often the closing register) carry no connector: the one the
        # transaction id says. An id this gateway did not hand out names none: not stored (the
        # energy of an unknown connector is not the station's), and said.
        transaction_data = payload.get("transaction_data")
        if transaction_data:
            connector = connector_of(transaction_id)
            if connector is None:
                log.warning(
                    "StopTransaction meter values not stored: unknown transaction",
                    extra={"charge_point": self.id, "transaction": transaction_id},
                )
            else:
                await self._store(connector, transaction_data, "transactionData")
        return result16.StopTransaction()

    @on(Action16.meter_values, skip_schema_validation=True)
    async def on_meter_values(
        self, connector_id: Any = None, meter_value: Any = None, **_: Any
    ) -> Any:
        await self._store(_connector(connector_id, "connectorId"), meter_value, "meterValue")
        return result16.MeterValues()

    @on(Action16.firmware_status_notification)
    def on_firmware_status(self, **_: Any) -> Any:
        return result16.FirmwareStatusNotification()

    @on(Action16.diagnostics_status_notification)
    def on_diagnostics_status(self, **_: Any) -> Any:
        return result16.DiagnosticsStatusNotification()

    @on(Action16.data_transfer)
    def on_data_transfer(self, **_: Any) -> Any:
        return result16.DataTransfer(status=DataTransferStatus16.unknown_vendor_id)


class CentralSystem201(_Common, ChargePoint201):
    def __init__(self, charge_point_id: str, connection: Any, ingest: Ingest) -> None:
        super().__init__(charge_point_id, connection)
        self._ingest = ingest
        self._rate = RateLimit()

    @on(Action201.boot_notification)
    def on_boot(self, **_: Any) -> Any:
        return result201.BootNotification(
            current_time=_now(),
            interval=HEARTBEAT_SECONDS,
            status=RegistrationStatusEnumType.accepted,
        )

    @on(Action201.heartbeat)
    def on_heartbeat(self, **_: Any) -> Any:
        return result201.Heartbeat(current_time=_now())

    @on(Action201.status_notification)
    def on_status(self, **_: Any) -> Any:
        return result201.StatusNotification()

    @on(Action201.authorize)
    def on_authorize(self, **_: Any) -> Any:
        return result201.Authorize(id_token_info={"status": AuthorizationStatusEnumType.accepted})

    @on(Action201.transaction_event, skip_schema_validation=True)
    async def on_transaction_event(
        self, transaction_info: Any = None, evse: Any = None, meter_value: Any = None, **_: Any
    ) -> Any:
        if not isinstance(transaction_info, dict) or "transaction_id" not in transaction_info:
            raise FormationViolationError(description="transactionInfo.transactionId is required")
        # The EVSE comes only in a transaction's first event: later ones are the same EVSE's.
        key = (self.id, str(transaction_info["transaction_id"]))
        if isinstance(evse, dict) and "id" in evse:
            _evses[key] = _connector(evse["id"], "evse.id")
        if meter_value:
            evse_id = _evses.get(key)
            if evse_id is None:
                log.warning(
                    "TransactionEvent meter values not stored: the transaction's EVSE is unknown",
                    extra={"charge_point": self.id, "transaction": key[1]},
                )
            else:
                await self._store(evse_id, meter_value, "meterValue")
        return result201.TransactionEvent()

    @on(Action201.meter_values, skip_schema_validation=True)
    async def on_meter_values(self, evse_id: Any = None, meter_value: Any = None, **_: Any) -> Any:
        await self._store(_connector(evse_id, "evseId"), meter_value, "meterValue")
        return result201.MeterValues()

    @on(Action201.firmware_status_notification)
    def on_firmware_status(self, **_: Any) -> Any:
        return result201.FirmwareStatusNotification()

    @on(Action201.log_status_notification)
    def on_log_status(self, **_: Any) -> Any:
        return result201.LogStatusNotification()

    @on(Action201.security_event_notification)
    def on_security_event(self, **_: Any) -> Any:
        return result201.SecurityEventNotification()

    @on(Action201.notify_event)
    def on_notify_event(self, **_: Any) -> Any:
        return result201.NotifyEvent()

    @on(Action201.notify_report)
    def on_notify_report(self, **_: Any) -> Any:
        return result201.NotifyReport()

    @on(Action201.data_transfer)
    def on_data_transfer(self, **_: Any) -> Any:
        return result201.DataTransfer(status=DataTransferStatusEnumType.unknown_vendor_id)


def charge_point_id_of(path: str) -> str:
    """The last segment of the URL's path, percent-decoded: ws://host:9000/ocpp/CP%2D1?x=y →
    "CP-1"."""
    return urllib.parse.unquote(path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])


async def serve_connection(connection: Any, ingest: Ingest) -> None:
    """Runs one charge point's connection until it closes."""
    charge_point_id = canonical_charge_point_id(charge_point_id_of(connection.request.path))
    if not charge_point_id or connection.subprotocol not in SUBPROTOCOLS:
        await connection.close(1002, "a charge point id and an OCPP subprotocol are required")
        return
    kind = CentralSystem16 if connection.subprotocol == "ocpp1.6" else CentralSystem201
    charge_point = kind(charge_point_id, connection, ingest)
    log.info(
        "charge point connected",
        extra={"charge_point": charge_point_id, "subprotocol": connection.subprotocol},
    )
    try:
        await charge_point.start()
    except websockets.ConnectionClosed:
        log.info("charge point disconnected", extra={"charge_point": charge_point_id})
    except Exception as error:  # a frame the library cannot read (e.g. JSON nested too deep)
        log.warning(
            "charge point connection closed: unreadable message (%s)",
            type(error).__name__,
            extra={"charge_point": charge_point_id},
        )
        await connection.close(1007, "unreadable message")


class Credentials:
    """HTTP Basic auth at the handshake (OCPP security profiles 1 and 2): the user name is the
    charge point id of the URL and the password matches its hash (services/ocpp/passwords.py).

    A verified password is remembered by its SHA-256, so that a reconnect is checked on the
    event loop at once and costs no PBKDF2. PBKDF2 (a new password, a wrong one) runs on
    PASSWORD_CHECK_THREADS threads of its own, at most MAX_PASSWORD_CHECKS_WAITING waiting: a
    flood of wrong passwords is refused quickly rather than queued, and never delays a charger
    already verified."""

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self._hashes = dict(hashes)
        self._verified: dict[str, bytes] = {}
        self._hashing = concurrent.futures.ThreadPoolExecutor(
            PASSWORD_CHECK_THREADS, thread_name_prefix="ocpp-password"
        )
        self._waiting = 0

    async def check_async(self, charge_point_id: str, password: str) -> bool:
        canonical = canonical_charge_point_id(charge_point_id)
        encoded = self._hashes.get(canonical)
        if encoded is None:
            return False
        digest = hashlib.sha256(password.encode("utf-8", "surrogateescape")).digest()
        if hmac.compare_digest(self._verified.get(canonical, b""), digest):
            return True
        if self._waiting >= MAX_PASSWORD_CHECKS_WAITING:
            log.warning("password checks saturated: refused", extra={"charge_point": canonical})
            return False
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            verified = await loop.run_in_executor(
                self._hashing, passwords.verify, password, encoded
            )
        finally:
            self._waiting -= 1
        if verified:
            self._verified[canonical] = digest
        return verified

    def check(self, charge_point_id: str, password: str) -> bool:
        """The same check, blocking (tests, tools)."""
        encoded = self._hashes.get(canonical_charge_point_id(charge_point_id))
        return encoded is not None and passwords.verify(password, encoded)

    def process_request(self) -> Callable[[Any, Any], Awaitable[Any]]:
        """websockets' process_request: 401 without valid credentials, 403 when they are
        another charge point's than the URL's."""
        basic = basic_auth(realm="energy-ingest OCPP", check_credentials=self.check_async)

        async def process(connection: Any, request: Any) -> Any:
            refused = await basic(connection, request)
            if refused is not None:
                log.warning(
                    "charge point refused: no valid credentials", extra={"path": request.path}
                )
                return refused
            wanted = canonical_charge_point_id(charge_point_id_of(request.path))
            if canonical_charge_point_id(connection.username) != wanted:
                log.warning(
                    "charge point refused: credentials of another charge point",
                    extra={"path": request.path, "user": connection.username},
                )
                return connection.respond(
                    HTTPStatus.FORBIDDEN, "these credentials are another charge point's\n"
                )
            return None

        return process


# Charge point ids the meter ids can hold: `<id>:<connector>` must be a valid meter id (1-64
# characters of [A-Za-z0-9._:-]); ':' separates the connector.
CHARGE_POINT_ID = re.compile(r"[A-Za-z0-9._-]{1,48}")
DEFAULT_MAX_CONNECTIONS = 10_000
# PBKDF2 checks at once, and waiting beyond which a check is refused (see Credentials).
PASSWORD_CHECK_THREADS = 2
MAX_PASSWORD_CHECKS_WAITING = 32
# A MeterValues of a busy charger is a few kB; anything near this is not one.
MAX_MESSAGE_BYTES = 1024 * 1024


async def serve(
    host: str,
    port: int,
    ingest: Ingest,
    started: asyncio.Future[int] | None = None,
    stop: asyncio.Event | None = None,
    *,
    credentials: Credentials | None = None,
    tls: ssl.SSLContext | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> None:
    """Listens until `stop` is set; `started` receives the port bound (for port 0). With
    `credentials`, a charge point must authenticate as itself; with `tls`, over wss://. Beyond
    `max_connections` open connections (OCPP_MAX_CONNECTIONS) a handshake is answered 503, and
    a message over MAX_MESSAGE_BYTES closes its connection (1009)."""
    authenticate = None if credentials is None else credentials.process_request()
    # Connections past admission: handshaking (their slot taken before the password check
    # awaits, so concurrent handshakes cannot all pass) or open. A handshake that fails after
    # admission closes its connection, which frees the slot at the next admission.
    admitted: set[Any] = set()
    # One connection per charge point: a newer one replaces the older (a charger that
    # reconnects before the old connection timed out), so no charger holds several.
    current: dict[str, Any] = {}
    closing: set[asyncio.Task[None]] = set()

    async def admit(connection: Any, request: Any) -> Any:
        charge_point_id = charge_point_id_of(request.path)
        if not CHARGE_POINT_ID.fullmatch(charge_point_id):
            log.warning("charge point refused: malformed id", extra={"path": request.path})
            return connection.respond(
                HTTPStatus.BAD_REQUEST,
                "the URL must end in a charge point id of 1-48 characters of A-Z a-z 0-9 . _ -\n",
            )
        for gone in [c for c in admitted if c.state is State.CLOSED]:
            admitted.discard(gone)
        if len(admitted) >= max_connections:
            log.warning(
                "charge point refused: OCPP_MAX_CONNECTIONS reached",
                extra={"path": request.path, "open": len(admitted)},
            )
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "too many charge points connected, retry later\n"
            )
        admitted.add(connection)
        refused = None if authenticate is None else await authenticate(connection, request)
        if refused is not None:
            admitted.discard(connection)
        return refused

    async def handle(connection: Any) -> None:
        charge_point_id = canonical_charge_point_id(charge_point_id_of(connection.request.path))
        older = current.get(charge_point_id)
        current[charge_point_id] = connection
        if older is not None:
            log.info(
                "charge point reconnected: older connection closed",
                extra={"charge_point": charge_point_id},
            )
            # Not awaited: a dead older connection takes its close timeout to go.
            closing.add(asyncio.create_task(older.close(1000, "replaced by a newer connection")))
            closing.difference_update([task for task in closing if task.done()])
        try:
            await serve_connection(connection, ingest)
        finally:
            admitted.discard(connection)
            if current.get(charge_point_id) is connection:
                del current[charge_point_id]

    sock = dual_stack_socket(port) if host in ("::", "") else None
    async with websockets.serve(
        handle,
        None if sock else host,
        None if sock else port,
        sock=sock,
        subprotocols=[Subprotocol(name) for name in SUBPROTOCOLS],
        process_request=admit,
        ssl=tls,
        max_size=MAX_MESSAGE_BYTES,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        if started is not None:
            started.set_result(bound)
        await (stop or asyncio.Event()).wait()


def dual_stack_socket(port: int) -> socket.socket:
    """A listening socket on every address, IPv6 and IPv4 alike, as gRPC's `[::]:port` is:
    asyncio would make `::` IPv6 only, and a host whose `localhost` is only 127.0.0.1 could
    not reach the gateway. OSError when the port is taken."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does
        sock.bind(("::", port))
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def listen_host_port(address: str) -> tuple[str, int]:
    """ "[::]:9000" → ("::", 9000); "127.0.0.1:0" → ("127.0.0.1", 0)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def run(
    listen_addr: str,
    meter_target: str,
    *,
    credentials: Credentials | None = None,
    tls: ssl.SSLContext | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    meter_credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """`energy-ingest serve ocpp`: serves until SIGTERM or SIGINT. Raises OSError when the
    address is taken or not this host's."""

    # The library logs every frame at INFO: a payload per message, at thousands a second.
    logging.getLogger("ocpp").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        started: asyncio.Future[int] = loop.create_future()
        host, port = listen_host_port(listen_addr)
        async with meter_channel(meter_target, meter_credentials) as channel:
            serving = asyncio.create_task(
                serve(
                    host,
                    port,
                    MeterServiceIngest(channel),
                    started,
                    stop,
                    credentials=credentials,
                    tls=tls,
                    max_connections=max_connections,
                )
            )
            waiting: set[asyncio.Future[Any]] = {serving, started}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if serving in done:
                serving.result()  # the bind failed: raise it
            log.info(
                "OCPP gateway listening",
                extra={
                    "address": listen_addr,
                    "port": started.result(),
                    "meter_target": meter_target,
                },
            )
            await serving

    asyncio.run(main())
