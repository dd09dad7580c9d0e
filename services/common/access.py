"""The access log: one JSON line per call a server answers (`"message": "call"`, logger
`energy_ingest.access`), with `method`, `peer`, `principal` (when auth is on), `code`,
`duration_ms` and, for ingestion, `readings` (what the answer counted: accepted, duplicates,
conflicts and rejected). A stream of many readings is one call and one line; no reading's
content is ever written. Health checks are not logged (probes every few seconds would drown
the rest).

At 10,000 devices a minute a line per call is a few hundred lines a second, so the lines are
rate-limited per process (ACCESS_LOG_LINES_PER_SECOND, with a burst of as many): beyond it,
calls are counted, not logged, and the next line written carries `suppressed_since_last`.
Metrics (grpc_server_handled_total) count every call whatever the log keeps; 0 turns the log
off."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc

from services.common.audit import HandlerMemo, LineBudget

log = logging.getLogger("energy_ingest.access")

HEALTH_PREFIX = "/grpc.health.v1.Health/"


@dataclass
class CallRecord:
    """What the layers below learn of a call for its line: who made it (the admission guard)
    and the readings its answer counted (the ingest servicer)."""

    principal: str | None = None
    readings: int | None = None


_record: ContextVar[CallRecord | None] = ContextVar("access_record", default=None)


def current() -> CallRecord | None:
    """The record of the call this thread serves; None outside one, or with the log off."""
    return _record.get()


def note_principal(name: str | None) -> None:
    record = _record.get()
    if record is not None:
        record.principal = name


def note_readings(count: int) -> None:
    record = _record.get()
    if record is not None:
        record.readings = (record.readings or 0) + count


class AccessLog(grpc.ServerInterceptor):
    """Wraps each handler (all have a single response once the admission guard made them
    request-streaming) to write its call's line when it returns or raises."""

    def __init__(self, lines_per_second: float) -> None:
        self._budget = LineBudget(lines_per_second, max(1, round(lines_per_second)))
        self._memo = HandlerMemo()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(HEALTH_PREFIX):
            return handler
        return self._memo.get(method, handler, lambda h: self._wrap(method, h))

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._logged(handler.unary_unary, method))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._logged(handler.stream_unary, method))
        return handler

    def _logged(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def logged(request: Any, context: grpc.ServicerContext) -> Any:
            record = CallRecord()
            token = _record.set(record)
            began = time.perf_counter()
            code = "UNKNOWN"
            try:
                answer = behavior(request, context)
                code = call_code(context, raised=False)
                return answer
            except Exception:
                code = call_code(context, raised=True)
                raise
            finally:
                _record.reset(token)
                self._write(method, context, code, time.perf_counter() - began, record)

        return logged

    def _write(
        self,
        method: str,
        context: grpc.ServicerContext,
        code: str,
        seconds: float,
        record: CallRecord,
    ) -> None:
        suppressed = self._budget.take()
        if suppressed is None:
            return
        line: dict[str, Any] = {
            "method": method,
            "peer": context.peer(),
            "principal": record.principal,
            "code": code,
            "duration_ms": round(seconds * 1000, 3),
        }
        if record.readings is not None:
            line["readings"] = record.readings
        if suppressed:
            line["suppressed_since_last"] = suppressed
        log.info("call", extra=line)


# The code a call was ended with from another thread (the idle watchdog), by the context.
_ENDED_ATTRIBUTE = "_energy_ingest_ended_with"
# A call cancelled this close to its deadline was ended by it: the client's deadline passes a
# little before the server's (which is the client's, sent as a timeout, plus the transit).
DEADLINE_SLACK_SECONDS = 0.5


def note_ended(context: grpc.ServicerContext, code: grpc.StatusCode) -> None:
    """The server ended the call with `code` (what its client sees)."""
    # A context that takes no attributes: the code is guessed (call_code).
    with contextlib.suppress(AttributeError):
        setattr(context, _ENDED_ATTRIBUTE, code.name)


def call_code(context: grpc.ServicerContext, *, raised: bool) -> str:
    """The name of the code the client of a handler's call saw: the one the server ended it
    with from another thread (note_ended), or the one the handler set; else, when the call is
    no longer active, DEADLINE_EXCEEDED or CANCELLED (its deadline passed, or its client
    cancelled it: grpc sometimes hands the handler an ended stream then, and it returns);
    else OK when it returned and UNKNOWN (a fault of ours) when it raised."""
    ended = getattr(context, _ENDED_ATTRIBUTE, None)
    if ended is not None:
        return str(ended)
    code = context.code()
    if code is not None:
        return str(code.name)
    if not context.is_active():
        remaining = context.time_remaining()
        late = remaining is not None and remaining <= DEADLINE_SLACK_SECONDS
        return "DEADLINE_EXCEEDED" if late else "CANCELLED"
    return "UNKNOWN" if raised else "OK"
