"""The client side that internal callers and the simulator use: channels with retries for
UNAVAILABLE and RESOURCE_EXHAUSTED only (backoff and retry throttling in the service config),
a default deadline on every call, keepalive; and a streaming sender that keeps what the server
has not acknowledged and sends it again after a failure (at-least-once; the server's natural-key
dedup makes it exactly-once in the tables)."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from services.common import contracts

log = logging.getLogger(__name__)

SERVICES = tuple(contracts.FULL_NAMES.values())
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
# A stream that outlived its deadline (a network that swallowed it) is sent again too: ingestion
# is idempotent, so a resend can only add what is missing.
STREAM_RETRYABLE = (*RETRYABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
DEFAULT_DEADLINE_SECONDS = 30.0

# Retries for unary calls only, every one the protos declare (a new unary RPC gets them too): a
# client stream is resent whole by ResilientStreamSender, which checks that the acknowledgement
# covers every reading it sent (a transparent retry of a half-sent stream gives no such check).
UNARY_METHODS = contracts.unary_methods()

SERVICE_CONFIG = json.dumps(
    {
        # Every address the target resolves to gets calls, not only the first: a dns:/// target
        # of a headless Kubernetes Service names every pod, and pick_first would pin the channel
        # to one of them.
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [
                    {"service": service, "method": method}
                    for service, methods in UNARY_METHODS.items()
                    for method in methods
                ],
                "timeout": f"{DEFAULT_DEADLINE_SECONDS:g}s",
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
                },
            },
            {
                "name": [{"service": service} for service in SERVICES],
                "timeout": f"{DEFAULT_DEADLINE_SECONDS:g}s",
            },
        ],
        # Stop retrying when most calls fail: retries must not pile onto an overloaded server.
        "retryThrottling": {"maxTokens": 20, "tokenRatio": 0.1},
    }
)

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def channel(target: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """A channel to one of our services (plaintext unless credentials are given)."""
    if credentials is None:
        return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(target, credentials, options=CHANNEL_OPTIONS)


@dataclass
class SendTotals:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    resends: int = 0  # streams that failed and were sent again
    rejections: list[Any] = field(default_factory=list)


class ResilientStreamSender:
    """Sends readings over IngestReadings streams of at most `stream_readings` readings each.

    A stream's readings count as delivered only once its response arrives (that is the server's
    commit acknowledgement); until then they are kept, and a stream that fails with UNAVAILABLE
    or RESOURCE_EXHAUSTED is sent again whole, with exponential backoff, until `give_up_after`
    seconds pass (DEADLINE_EXCEEDED too: resending is safe). Readings committed by the failed
    attempt come back as duplicates.

    `on_acknowledged(readings, response)` is called, on the sending thread, after each
    acknowledged stream with the readings its response covers. Once `stop` is set nothing more
    is sent: a stream in flight ends after its current message and the server's answer for what
    it got is counted (not resent), no new stream starts and a failed one is not retried."""

    def __init__(
        self,
        call: Callable[..., Any],
        make_request: Callable[[Sequence[Any]], Any],
        *,
        batch_size: int = 500,
        stream_readings: int = 50_000,
        deadline: float = 120.0,
        give_up_after: float = 120.0,
        on_acknowledged: Callable[[Sequence[Any], Any], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self._call = call
        self._make_request = make_request
        self._batch_size = batch_size
        self._stream_readings = stream_readings
        self._deadline = deadline
        self._give_up_after = give_up_after
        self._on_acknowledged = on_acknowledged
        self._stop = stop if stop is not None else threading.Event()
        self._pending: list[Any] = []
        self.totals = SendTotals()

    def send(self, readings: Sequence[Any]) -> None:
        self._pending.extend(readings)
        while len(self._pending) >= self._stream_readings and not self._stop.is_set():
            self._deliver(self._pending[: self._stream_readings])
            del self._pending[: self._stream_readings]

    def flush(self) -> SendTotals:
        if self._pending:
            self._deliver(self._pending)
            self._pending = []
        return self.totals

    def _deliver(self, readings: Sequence[Any]) -> None:
        give_up = time.monotonic() + self._give_up_after
        backoff = 0.1
        while not self._stop.is_set():
            sent = 0  # readings handed to gRPC in this attempt

            def requests() -> Iterator[Any]:
                nonlocal sent
                for first in range(0, len(readings), self._batch_size):
                    if self._stop.is_set():
                        return  # half-close: the server answers for what it got
                    batch = readings[first : first + self._batch_size]
                    sent += len(batch)
                    yield self._make_request(batch)

            try:
                response = self._call(requests(), timeout=self._deadline)
            except grpc.RpcError as error:
                if (
                    error.code() not in STREAM_RETRYABLE
                    or time.monotonic() + backoff > give_up
                    or self._stop.is_set()
                ):
                    raise
                log.warning("stream failed, sending it again", extra={"code": error.code().name})
                self.totals.resends += 1
                self._stop.wait(backoff * random.uniform(0.5, 1.0))  # jitter: no thundering herd
                backoff = min(backoff * 2, 5.0)
                continue
            answered = response.accepted + response.duplicates + response.rejected
            if answered != len(readings) and not (self._stop.is_set() and answered == sent):
                # The acknowledgement must cover the whole stream; anything else is resent
                # (safe: what was stored comes back as duplicates).
                log.warning(
                    "acknowledgement does not cover the stream, sending it again",
                    extra={"sent": len(readings), "answered": answered},
                )
                if time.monotonic() + backoff > give_up:
                    raise RuntimeError(f"{answered} of {len(readings)} readings acknowledged")
                self.totals.resends += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.totals.accepted += response.accepted
            self.totals.duplicates += response.duplicates
            self.totals.rejected += response.rejected
            self.totals.rejections.extend(response.rejections)
            if self._on_acknowledged is not None:
                self._on_acknowledged(readings[:answered], response)
            return
