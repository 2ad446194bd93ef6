"""Domain errors, each with its gRPC status code.

Handlers raise these; servicers never build statuses themselves: the interceptor chain
(services.common.interceptors) ends a call that raised one with its code and message, and
services.common.status maps the same codes to HTTP statuses and MLflow's error codes.
"""
from collections.abc import Callable

import grpc


class MlgridError(Exception):
    """An error the caller can act on; `message` says what was wrong and what to do."""

    code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(MlgridError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(MlgridError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MlgridError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(MlgridError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(MlgridError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutOfRange(MlgridError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unavailable(MlgridError):
    """A service this one depends on does not answer; the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(MlgridError):
    """No credentials, or credentials that do not verify: say how to sign in."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(MlgridError):
    """A verified caller without the permission an operation needs: name the permission."""

    code = grpc.StatusCode.PERMISSION_DENIED


def from_status(code: grpc.StatusCode, message: str) -> MlgridError:
    """The domain error of a status another service (or the client library) reported."""
    for kind in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, ResourceExhausted, OutOfRange, Unavailable,
                 Unauthenticated, PermissionDenied):
        if kind.code == code:
            return kind(message)
    return MlgridError(message)


# What makes an unexpected exception an outage of something a service depends on (a database that is down or
# restarting): such a call ends UNAVAILABLE, which clients retry, not INTERNAL. services.db registers the
# database drivers' errors; a refused or reset connection is one anywhere.
_OUTAGE_CHECKS: list[Callable[[BaseException], bool]] = []


def register_outage_check(check: Callable[[BaseException], bool]) -> None:
    if check not in _OUTAGE_CHECKS:
        _OUTAGE_CHECKS.append(check)


def is_outage(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says a dependency does not answer."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (ConnectionError, TimeoutError)) or any(check(error) for check in _OUTAGE_CHECKS):
            return True
        error = error.__cause__ or error.__context__
    return False
