"""Domain errors, and their one mapping to gRPC status codes.

Handlers raise these; servicers never build statuses themselves. The gateway
maps the same codes to MLflow's REST error codes.
"""
import functools
import inspect
import logging

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


log = logging.getLogger("mlgrid.errors")


def from_status(code: grpc.StatusCode, message: str) -> MlgridError:
    """The domain error of a status another service (or the client library) reported."""
    for kind in (InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, ResourceExhausted, OutOfRange, Unavailable):
        if kind.code == code:
            return kind(message)
    return MlgridError(message)


async def _abort(context, error: Exception, method_name: str):
    if isinstance(error, MlgridError):
        await context.abort(error.code, error.message)
    log.exception("%s failed", method_name, exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method_name} ({type(error).__name__}); see the server log")


def grpc_errors(method):
    """Turn an exception raised by a grpc.aio servicer method into its status: MlgridError into its
    own code and message, anything else into INTERNAL (logged with its traceback)."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self, request, context):
            try:
                async for item in method(self, request, context):
                    yield item
            except grpc.aio.AbortError:
                raise
            except Exception as e:  # noqa: BLE001 - every error becomes a status
                await _abort(context, e, method.__name__)

        return stream_wrapper

    @functools.wraps(method)
    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as e:  # noqa: BLE001 - every error becomes a status
            await _abort(context, e, method.__name__)

    return wrapper
