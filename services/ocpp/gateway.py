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
import hashlib
import itertools
import logging
import re
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import grpc
import websockets
from energy.meter.v1 import meter_pb2, meter_service_pb2, meter_service_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ocpp.exceptions import InternalError, PropertyConstraintViolationError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v16.enums import AuthorizationStatus as Authorization16
from ocpp.v16.enums import RegistrationStatus as Registration16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from ocpp.v201.enums import AuthorizationStatusEnumType, RegistrationStatusEnumType
from websockets.asyncio.server import basic_auth
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
CHANNEL_OPTIONS = (
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


class _Common:
    """What both versions do with meter values."""

    id: str
    _ingest: Ingest
    _rate: RateLimit

    async def _store(self, connector_id: int | None, meter_value: Sequence[Any]) -> None:
        await self._rate.wait()
        try:
            found = readings(self.id, connector_id, meter_value, now_micros())
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
        self._transactions = itertools.count(1)
        self._connectors: dict[int, int] = {}  # transaction id -> connector id

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
        transaction_id = next(self._transactions)
        self._connectors[transaction_id] = connector_id
        return result16.StartTransaction(
            transaction_id=transaction_id, id_tag_info={"status": Authorization16.accepted}
        )

    @on(Action16.stop_transaction)
    async def on_stop(
        self, transaction_id: int, transaction_data: Sequence[Any] | None = None, **_: Any
    ) -> Any:
        # Its meter values (often the closing register) carry no connector: the transaction's,
        # when this connection started it; else the station's meter.
        if transaction_data:
            await self._store(self._connectors.get(transaction_id), transaction_data)
        self._connectors.pop(transaction_id, None)
        return result16.StopTransaction()

    @on(Action16.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: Sequence[Any], **_: Any) -> Any:
        await self._store(connector_id, meter_value)
        return result16.MeterValues()


class CentralSystem201(_Common, ChargePoint201):
    def __init__(self, charge_point_id: str, connection: Any, ingest: Ingest) -> None:
        super().__init__(charge_point_id, connection)
        self._ingest = ingest
        self._rate = RateLimit()
        self._evses: dict[Any, int] = {}  # transaction id -> EVSE id

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

    @on(Action201.transaction_event)
    async def on_transaction_event(
        self,
        transaction_info: dict[str, Any],
        evse: dict[str, Any] | None = None,
        meter_value: Sequence[Any] | None = None,
        **_: Any,
    ) -> Any:
        # The EVSE comes only in a transaction's first event: later ones are the same EVSE's.
        transaction_id = transaction_info.get("transaction_id")
        if evse and "id" in evse:
            self._evses[transaction_id] = evse["id"]
        if meter_value:
            await self._store(self._evses.get(transaction_id), meter_value)
        return result201.TransactionEvent()

    @on(Action201.meter_values)
    async def on_meter_values(self, evse_id: int, meter_value: Sequence[Any], **_: Any) -> Any:
        await self._store(evse_id, meter_value)
        return result201.MeterValues()


def charge_point_id_of(path: str) -> str:
    """The last segment of the URL's path: ws://host:9000/ocpp/CP-1?x=y → "CP-1"."""
    return path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


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


class Credentials:
    """HTTP Basic auth at the handshake (OCPP security profiles 1 and 2): the user name is the
    charge point id of the URL and the password matches its hash (services/ocpp/passwords.py).
    A verified password is remembered by its SHA-256 so that reconnects cost no PBKDF2."""

    def __init__(self, hashes: Mapping[str, str]) -> None:
        self._hashes = dict(hashes)
        self._verified: dict[str, bytes] = {}

    async def check_async(self, charge_point_id: str, password: str) -> bool:
        """`check` off the event loop: PBKDF2 takes long enough to stall every connection."""
        return await asyncio.to_thread(self.check, charge_point_id, password)

    def check(self, charge_point_id: str, password: str) -> bool:
        canonical = canonical_charge_point_id(charge_point_id)
        encoded = self._hashes.get(canonical)
        if encoded is None:
            return False
        digest = hashlib.sha256(password.encode()).digest()
        if self._verified.get(canonical) == digest:
            return True
        if not passwords.verify(password, encoded):
            return False
        self._verified[canonical] = digest
        return True

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
    open_connections = 0

    async def admit(connection: Any, request: Any) -> Any:
        charge_point_id = charge_point_id_of(request.path)
        if not CHARGE_POINT_ID.fullmatch(charge_point_id):
            log.warning("charge point refused: malformed id", extra={"path": request.path})
            return connection.respond(
                HTTPStatus.BAD_REQUEST,
                "the URL must end in a charge point id of 1-48 characters of A-Z a-z 0-9 . _ -\n",
            )
        if open_connections >= max_connections:
            log.warning(
                "charge point refused: OCPP_MAX_CONNECTIONS reached",
                extra={"path": request.path, "open": open_connections},
            )
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "too many charge points connected, retry later\n"
            )
        return None if authenticate is None else await authenticate(connection, request)

    async def handle(connection: Any) -> None:
        nonlocal open_connections
        open_connections += 1
        try:
            await serve_connection(connection, ingest)
        finally:
            open_connections -= 1

    async with websockets.serve(
        handle,
        host,
        port,
        subprotocols=[Subprotocol(name) for name in SUBPROTOCOLS],
        process_request=admit,
        ssl=tls,
        max_size=MAX_MESSAGE_BYTES,
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        if started is not None:
            started.set_result(bound)
        await (stop or asyncio.Event()).wait()


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
