"""Domain errors, each with its gRPC status code.

Handlers raise these; servicers never build statuses themselves: the interceptor chain
(services.common.interceptors) ends a call that raised one with its code and message, and
services.common.status maps the same codes to HTTP statuses and MLflow's error codes.
"""
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
