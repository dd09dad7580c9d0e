"""The audit trail of refused calls: one JSON log line per UNAUTHENTICATED, PERMISSION_DENIED
or RESOURCE_EXHAUSTED answer, with who (peer, principal), what (method) and why; rate-limited,
so a flood of refused calls cannot flood the log (the lines left out are counted and the count
is carried by the next line written)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc

log = logging.getLogger("energy_ingest.audit")

AUDITED = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


_call = threading.local()


def current_method() -> str:
    """The full method name of the call this worker thread is serving, e.g.
    "/energy.meter.v1.MeterService/IngestReading" ("?" outside a call, as under grpc_testing)."""
    return str(getattr(_call, "method", "?"))


def _named(behavior: Callable[[Any, grpc.ServicerContext], Any], method: str) -> Any:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        _call.method = method
        return behavior(request, context)

    return run


def handler_kind(handler: grpc.RpcMethodHandler) -> str:
    """Which of a method handler's four behaviour fields is set, e.g. "unary_unary"."""
    return next(
        name
        for name in ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
        if getattr(handler, name) is not None
    )


class HandlerMemo:
    """An interceptor's wrapped handler per method, made once: grpc's generic handlers give the
    same handler object for a method on every call, and wrapping it anew per call (closures,
    a new handler tuple) cost about a tenth of a unary call's server CPU. Interceptors run in
    grpc's one polling thread."""

    def __init__(self) -> None:
        self._by_method: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(
        self,
        method: str,
        handler: grpc.RpcMethodHandler,
        wrap: Callable[[grpc.RpcMethodHandler], grpc.RpcMethodHandler],
    ) -> grpc.RpcMethodHandler:
        known = self._by_method.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = wrap(handler)
        self._by_method[method] = (handler, wrapped)
        return wrapped


class MethodNames(grpc.ServerInterceptor):
    """Makes the method name known to the worker thread that serves a call: grpc's
    ServicerContext does not tell it, and the audit line names it."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith("/energy."):
            # Health and reflection are never audited by name; wrapping health Watch would
            # also hide its experimental_non_blocking flag and make it hold a thread.
            return handler
        return self._memo.get(method, handler, lambda h: _with_name(h, method))

    def __init__(self) -> None:
        self._memo = HandlerMemo()


def _with_name(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    kind = handler_kind(handler)
    return handler._replace(**{kind: _named(getattr(handler, kind), method)})


class LineBudget:
    """A token bucket in front of a log: `burst` lines at once, then `per_second`; `take()`
    says whether a line may be written and how many were left out since the last one."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_second = per_second
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._suppressed = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """None when over the rate (counted as left out); else the lines left out before."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._per_second)
            self._last = now
            if self._tokens < 1:
                self._suppressed += 1
                return None
            self._tokens -= 1
            suppressed, self._suppressed = self._suppressed, 0
            return suppressed


class RefusalLog:
    """The audit lines of refused calls, `burst` at once, then `per_second`."""

    def __init__(
        self,
        per_second: float = 10.0,
        burst: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._budget = LineBudget(per_second, burst, clock)

    def refused(
        self,
        code: grpc.StatusCode,
        reason: str,
        *,
        method: str,
        peer: str,
        principal: str | None,
    ) -> bool:
        """Logs one refused call unless over the rate; True when a line was written."""
        suppressed = self._budget.take()
        if suppressed is None:
            return False
        log.warning(
            "call refused",
            extra={
                "code": code.name,
                "reason": reason,
                "method": method,
                "peer": peer,
                "principal": principal,
                "suppressed_since_last": suppressed,
            },
        )
        return True


# One per process: the rate bounds what the whole process writes, whoever the callers are.
REFUSALS = RefusalLog()
