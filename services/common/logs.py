"""JSON logs on stderr: one object per line, with any `extra=` fields merged in. Once a
server listens, whatever else reaches stderr (gRPC core's own log lines, a thread's uncaught
exception) is turned into JSON lines too, so a log pipeline never meets a line it cannot parse."""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
from datetime import UTC, datetime
from typing import IO

from opentelemetry import trace

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # The call's trace, when tracing is on and a span is current (tracing.py).
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # A thread that dies of an exception is logged as JSON, not as a bare traceback.
    threading.excepthook = _log_thread_exception


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("energy_ingest.threads").error(
        "thread died of an uncaught exception",
        exc_info=args.exc_value,
        extra={"thread_name": args.thread.name if args.thread else None},
    )


# gRPC core (C++) writes lines such as "E1130 18:22:22.022957 6353 add_port.cc:83] ...".
_CORE_LEVELS = {"E": "ERROR", "W": "WARNING", "I": "INFO", "F": "CRITICAL"}


def _as_json(service: str, line: str) -> str:
    """`line` if it is already a JSON object, else a JSON object carrying it."""
    if line.startswith("{"):
        try:
            json.loads(line)
            return line
        except ValueError:
            pass
    return json.dumps(
        {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": _CORE_LEVELS.get(line[:1], "INFO") if line[1:2].isdigit() else "ERROR",
            "service": service,
            "logger": "stderr",
            "message": line,
        }
    )


def capture_stderr_as_json() -> None:
    """From now on, every line written to file descriptor 2 — by Python, by gRPC's C core or by
    anything else in the process — reaches the real stderr as one JSON object. Our own log
    handler writes to the real stderr directly; a thread relays the rest line by line."""
    handlers = logging.getLogger().handlers
    service = next(
        (h.formatter.service for h in handlers if isinstance(h.formatter, JsonFormatter)),
        "energy-ingest",
    )
    real_stderr: IO[str] = os.fdopen(os.dup(2), "w", buffering=1)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    for handler in handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(real_stderr)

    def relay() -> None:
        with os.fdopen(read_end, errors="replace") as captured:
            for line in captured:
                if line.strip():
                    real_stderr.write(_as_json(service, line.rstrip("\n")) + "\n")
        real_stderr.flush()

    relayer = threading.Thread(target=relay, name="stderr-json", daemon=True)
    relayer.start()

    def drain() -> None:
        # Closing fd 2 ends the pipe: the relay writes what is left, then stops.
        sys.stderr.flush()
        os.dup2(real_stderr.fileno(), 2)
        relayer.join(timeout=2)

    atexit.register(drain)
