"""Domain errors, and their one mapping to gRPC status codes.

Handlers raise these; servicers never build statuses themselves. The gateway
maps the same codes to MLflow's REST error codes.
"""
import functools
import inspect

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


def grpc_errors(method):
    """Turn MlgridError raised by a grpc.aio servicer method into its status."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self, request, context):
            try:
                async for item in method(self, request, context):
                    yield item
            except MlgridError as e:
                await context.abort(e.code, e.message)

        return stream_wrapper

    @functools.wraps(method)
    async def wrapper(self, request, context):
        try:
            return await method(self, request, context)
        except MlgridError as e:
            await context.abort(e.code, e.message)

    return wrapper
