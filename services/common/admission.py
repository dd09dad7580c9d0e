"""Admission: no call holds a worker thread without progress (README, "Reliability").

grpc's sync server gives a unary call a worker thread *before* its message arrives (the thread
blocks in `_unary_request`), and our servicers checked credentials only after that: 300 calls
that sent headers and never a message held every thread. So, for every call:

1. At the interceptor stage (grpc runs `intercept_service` in its polling thread, with the method
   and metadata only) the bearer token is checked (`Authorizer.from_metadata`): a call without
   valid credentials is answered UNAUTHENTICATED by a request-streaming handler, which grpc runs
   at once, without waiting for a message. Under mutual TLS the principal comes from the
   certificate, which the interceptor cannot see; but a client without a certificate does not
   even complete the handshake there, so the unauthenticated case left is the token case.
2. Every handler becomes request-streaming: grpc calls its behaviour at once with the request
   iterator. The behaviour checks the caps (below), then takes the single message of a unary
   call, or reads a stream, under the IdleWatchdog: a unary call whose message has not come in
   UNARY_MESSAGE_TIMEOUT_SECONDS, or a stream the server has waited on for
   STREAM_IDLE_TIMEOUT_SECONDS without a message, is ended with DEADLINE_EXCEEDED.
3. Caps, counted from the start of the behaviour to the end of the call (also when it raises, or
   when a streamed response ends): GRPC_MAX_CONCURRENT_RPCS business calls in all,
   MAX_CALLS_PER_PRINCIPAL per principal when auth is on, MAX_CALLS_PER_PEER per client IP
   address when it is off; health and reflection have their own GRPC_HEALTH_WORKERS, so business
   traffic can never take their threads. The excess is RESOURCE_EXHAUSTED.

Every refusal writes an audit line (audit.REFUSALS)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from services.common import access
from services.common.audit import REFUSALS, HandlerMemo, handler_kind
from services.common.errors import DomainError, Unauthenticated
from services.common.security import Authorizer, Principal

log = logging.getLogger(__name__)

# Methods any caller may use (README, "Security"); they have their own threads.
EXEMPT_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
# Threads for refusals, which take one only for the moment it takes to answer.
REFUSAL_WORKERS = 8


def pool_size(max_workers: int, max_concurrent_rpcs: int, health_workers: int) -> int:
    """The server's threads: one per admitted business call, GRPC_HEALTH_WORKERS for health and
    reflection, and a few for answering refusals."""
    return max(max_workers, max_concurrent_rpcs) + health_workers + REFUSAL_WORKERS


def peer_host(peer: str) -> str:
    """The client's address without its port: "ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7",
    "ipv6:[::1]:51234" -> "ipv6:[::1]"; anything else as it is."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return f"{kind}:{rest.rsplit(':', 1)[0]}"
    return peer


class IdleWatchdog:
    """Ends a call once the server has waited STREAM_IDLE_TIMEOUT_SECONDS for its next message.

    Only the time the handler spends blocked on the request iterator counts, so a call whose
    handler is busy (committing, held back by a full writer queue) is never ended for it. Ending
    cancels the call with a status, which wakes the blocked iterator (it raises, and the handler
    returns its thread)."""

    def __init__(
        self,
        timeout: float,
        unary_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.unary_timeout = timeout if unary_timeout is None else unary_timeout
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (waiting until, the timeout, context, method, principal)
        self._waiting: dict[int, tuple[float, float, grpc.ServicerContext, str, str | None]] = {}
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="idle-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def watched(
        self,
        requests: Iterator[Any],
        context: grpc.ServicerContext,
        method: str,
        principal: str | None,
        *,
        unary: bool = False,
    ) -> Iterator[Any]:
        key = next(self._ids)
        timeout = self.unary_timeout if unary else self.timeout
        try:
            while True:
                with self._lock:
                    self._waiting[key] = (
                        self._clock() + timeout,
                        timeout,
                        context,
                        method,
                        principal,
                    )
                try:
                    message = next(requests)
                except StopIteration:
                    return
                finally:
                    with self._lock:
                        self._waiting.pop(key, None)
                yield message
        finally:
            with self._lock:
                self._waiting.pop(key, None)

    def _run(self) -> None:
        period = min(1.0, self.timeout / 4, self.unary_timeout / 4)
        while not self._stop.wait(period):
            self.end_idle_calls()

    def end_idle_calls(self) -> int:
        now = self._clock()
        with self._lock:
            idle = [(key, entry) for key, entry in self._waiting.items() if now >= entry[0]]
            for key, _ in idle:
                del self._waiting[key]
        for _, (_, timeout, context, method, principal) in idle:
            setting = (
                "STREAM_IDLE_TIMEOUT_SECONDS"
                if timeout == self.timeout
                else "UNARY_MESSAGE_TIMEOUT_SECONDS"
            )
            reason = f"no message for {timeout:g} s ({setting}): the server ended the call"
            REFUSALS.refused(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                reason,
                method=method,
                peer=context.peer(),
                principal=principal,
            )
            _end(context, grpc.StatusCode.DEADLINE_EXCEEDED, reason)
        return len(idle)


def _end(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """Cancels the call from another thread with a status the client sees. The public
    `context.cancel()` would answer CANCELLED with no reason; grpc's call object takes a code
    and details (grpc_call_cancel_with_status), which we use when it is there."""
    access.note_ended(context, code)
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        if call is not None:
            call.cancel(code.value[0], details)
            return
    except Exception:  # another grpc version: fall back to the public API
        log.debug("cancel with status failed", exc_info=True)
    context.cancel()


class _Counters:
    """Concurrent calls per key; `acquire` takes all of a call's keys or none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def acquire(self, keys: list[tuple[tuple[str, str], int]]) -> tuple[str, str] | None:
        """Each key with its limit (0: none); the first key at its limit, or None when taken."""
        with self._lock:
            for key, limit in keys:
                if limit and self._counts.get(key, 0) >= limit:
                    return key
            for key, _ in keys:
                self._counts[key] = self._counts.get(key, 0) + 1
            return None

    def release(self, keys: list[tuple[tuple[str, str], int]]) -> None:
        with self._lock:
            for key, _ in keys:
                left = self._counts.get(key, 0) - 1
                if left > 0:
                    self._counts[key] = left
                else:
                    self._counts.pop(key, None)

    def count(self, key: tuple[str, str]) -> int:
        with self._lock:
            return self._counts.get(key, 0)


_LIMIT_NAMES = {
    "business": "GRPC_MAX_CONCURRENT_RPCS",
    "exempt": "GRPC_HEALTH_WORKERS",
    "principal": "MAX_CALLS_PER_PRINCIPAL",
    "peer": "MAX_CALLS_PER_PEER",
}


def _refusing(
    handler: grpc.RpcMethodHandler, method: str, code: grpc.StatusCode, reason: str
) -> grpc.RpcMethodHandler:
    """A request-streaming handler that answers `code` at once, without waiting for a message."""

    def refuse(_requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        REFUSALS.refused(code, reason, method=method, peer=context.peer(), principal=None)
        context.abort(code, reason)

    if handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(
            refuse, handler.request_deserializer, handler.response_serializer
        )
    return grpc.stream_unary_rpc_method_handler(
        refuse, handler.request_deserializer, handler.response_serializer
    )


class CallGuard(grpc.ServerInterceptor):
    """Authentication before a thread waits, caps, and the idle watchdog (module docstring).
    Must be the first (outermost) interceptor."""

    def __init__(
        self,
        authorizer: Authorizer,
        watchdog: IdleWatchdog,
        *,
        max_calls: int,
        health_calls: int,
        per_principal: int,
        per_peer: int,
    ) -> None:
        self._authorizer = authorizer
        self.watchdog = watchdog
        self._max_calls = max_calls
        self._health_calls = health_calls
        self._per_principal = per_principal
        self._per_peer = per_peer
        self.counters = _Counters()
        self._memo = HandlerMemo()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        exempt = method.startswith(EXEMPT_PREFIXES)
        token_principal: Principal | None = None
        if not exempt and self._authorizer.enabled:
            try:
                token_principal = self._authorizer.from_metadata(
                    handler_call_details.invocation_metadata
                )
            except Unauthenticated as error:
                return _refusing(handler, method, grpc.StatusCode.UNAUTHENTICATED, str(error))
        if token_principal is not None:  # the call's own: its handler is made for it
            return self._guarded(handler, method, exempt, token_principal)
        return self._memo.get(method, handler, lambda h: self._guarded(h, method, exempt, None))

    def _guarded(
        self,
        handler: grpc.RpcMethodHandler,
        method: str,
        exempt: bool,
        token_principal: Principal | None,
    ) -> grpc.RpcMethodHandler:
        kind = handler_kind(handler)
        original = getattr(handler, kind)
        unary_request = not handler.request_streaming

        def behave(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            peer = context.peer()
            principal = token_principal
            if principal is None and not exempt and self._authorizer.enabled:
                try:  # mutual TLS: the certificate names the caller
                    principal = self._authorizer.principal(context)
                except DomainError as error:
                    REFUSALS.refused(
                        error.code, str(error), method=method, peer=peer, principal=None
                    )
                    context.abort(error.code, str(error))
            keys: list[tuple[tuple[str, str], int]]
            if exempt:
                keys = [(("exempt", ""), self._health_calls)]
            elif principal is not None:
                keys = [
                    (("business", ""), self._max_calls),
                    (("principal", principal.name), self._per_principal),
                ]
            else:
                keys = [
                    (("business", ""), self._max_calls),
                    (("peer", peer_host(peer)), self._per_peer),
                ]
            full = self.counters.acquire(keys)
            name = principal.name if principal is not None else None
            access.note_principal(name)
            if full is not None:
                reason = (
                    f"too many concurrent calls ({_LIMIT_NAMES[full[0]]}"
                    + (f" for {full[1]}" if full[1] else "")
                    + "), retry with backoff"
                )
                REFUSALS.refused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    reason,
                    method=method,
                    peer=peer,
                    principal=name,
                )
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, reason)
            release = _once(lambda: self.counters.release(keys))
            # The call's end, however it ends (a callback of grpc's, in case a streamed
            # response is never drained); and the behaviour's end below, which comes first.
            context.add_callback(release)
            streaming_response = False
            try:
                watched = self.watchdog.watched(
                    requests, context, method, name, unary=unary_request
                )
                if unary_request:
                    request = next(watched, None)
                    if request is None:
                        context.abort(
                            grpc.StatusCode.INVALID_ARGUMENT, "the call carried no request"
                        )
                    result = original(request, context)
                else:
                    result = original(watched, context)
                if handler.response_streaming:
                    streaming_response = True
                    return _releasing(result, release)
                return result
            finally:
                if not streaming_response:
                    release()

        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                behave, handler.request_deserializer, handler.response_serializer
            )
        return grpc.stream_unary_rpc_method_handler(
            behave, handler.request_deserializer, handler.response_serializer
        )


def _once(action: Callable[[], None]) -> Callable[[], None]:
    lock = threading.Lock()
    done = [False]

    def run() -> None:
        with lock:
            if done[0]:
                return
            done[0] = True
        action()

    return run


def _releasing(responses: Iterator[Any], release: Callable[[], None]) -> Iterator[Any]:
    try:
        yield from responses
    finally:
        release()
