"""Domain errors and the one place that maps them to gRPC status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
import psycopg
import sqlalchemy.exc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common import calls
from services.common.audit import AUDITED, REFUSALS, current_method

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """A setting is missing or malformed; raised at start-up, never while serving."""


class DomainError(Exception):
    """An error the service layer raises on purpose; `code` is what the client sees, and
    `principal` who was refused, when known (for the audit trail)."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str = "", *, principal: str | None = None) -> None:
        super().__init__(message)
        self.principal = principal


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(f"{field}: {why}" for field, why in self.violations))


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(DomainError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


# Errors of an unreachable or restarting database: the caller should retry later.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
)


def bad_request_status(violations: Sequence[tuple[str, str]], message: str) -> grpc.Status:
    """INVALID_ARGUMENT carrying google.rpc.BadRequest, readable with rpc_status.from_call."""
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=why)
            for field, why in violations
        ]
    )
    detail = any_pb2.Any()
    detail.Pack(bad_request)
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=message, details=[detail])
    return rpc_status.to_status(status)


def query_cancelled(error: BaseException) -> bool:
    """PostgreSQL's "canceling statement" (a statement timeout or a cancel request), raw or
    wrapped by SQLAlchemy: psycopg makes it an OperationalError, but the database is fine."""
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        error = error.orig  # type: ignore[assignment]
    return isinstance(error, psycopg.errors.QueryCanceled)


def _as_domain_error(error: BaseException) -> BaseException:
    """Database errors that say something to the caller, as the domain error saying it."""
    if isinstance(error, sqlalchemy.exc.TimeoutError):
        # The read pool stayed saturated for DB_POOL_TIMEOUT_SECONDS: load, not a bug.
        return ResourceExhausted("every read connection is busy, retry with backoff")
    if query_cancelled(error):
        return DeadlineExceeded("the read ran out of time")
    return error


def _abort(context: grpc.ServicerContext, error: BaseException) -> None:
    error = _as_domain_error(error)
    if isinstance(error, InvalidArgument):
        # What abort_with_status does, spelled out: grpc_testing lacks abort_with_status.
        status = bad_request_status(error.violations, str(error))
        context.set_trailing_metadata(status.trailing_metadata)
        context.abort(status.code, status.details)
    elif isinstance(error, DomainError):
        if error.code in AUDITED:
            REFUSALS.refused(
                error.code,
                str(error),
                method=current_method(),
                peer=context.peer(),
                principal=error.principal,
            )
        context.abort(error.code, str(error))
    elif isinstance(error, DATABASE_UNAVAILABLE):
        log.warning("database unavailable: %s", error)
        context.abort(grpc.StatusCode.UNAVAILABLE, "database unavailable, retry with backoff")
    else:
        log.exception("unexpected error", exc_info=error)
        context.abort(grpc.StatusCode.INTERNAL, "internal error")


Handler = TypeVar("Handler", bound=Callable[..., Any])


class Undecodable:
    """Stands for a request that is not a valid protobuf message of the method's type."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _refuse_undecodable(message: Any) -> Any:
    if isinstance(message, Undecodable):
        raise InvalidArgument([("request", f"is not a valid message: {message.error}")])
    return message


def _decoded(request: Any) -> Any:
    """The request, or for a stream an iterator that refuses an undecodable message with
    INVALID_ARGUMENT (see server.UndecodableRequests)."""
    if isinstance(request, Iterator):
        return (_refuse_undecodable(message) for message in request)
    return _refuse_undecodable(request)


def translate_errors(method: Handler) -> Handler:
    """Wraps a servicer method (unary or streaming request) so errors become status codes."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            with calls.serving(context):
                return method(self, _decoded(request), context)
        except grpc.RpcError:
            # The client went away while we read its stream: nothing to answer.
            log.info("rpc cancelled by the client")
            raise
        except Exception as error:
            _abort(context, error)
            raise  # abort raises; this keeps type checkers and grpc_testing honest

    return wrapper  # type: ignore[return-value]
