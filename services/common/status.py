"""The one table from gRPC status to HTTP status and MLflow error code, for every REST side: the
gateway's MLflow API and serving's Open Inference Protocol REST and /invocations.

As MLflow's server answers (mlflow/exceptions.py's ERROR_CODE_TO_HTTP_STATUS), except
FAILED_PRECONDITION (e.g. logging to a deleted run): INVALID_STATE with 400, not MLflow's 500,
since the mlflow client retries 5xx answers and this one cannot change by retrying.
RESOURCE_EXHAUSTED (a full store, a quota) is 429: the client may retry later. A request body
over a server's limit is not a gRPC status: each REST side answers it with HTTP's 413 itself.
"""
from typing import NamedTuple

import grpc


class RestError(NamedTuple):
    http_status: int
    error_code: str  # MLflow's (mlflow/protos/databricks.proto's ErrorCode)


INTERNAL_ERROR = RestError(500, "INTERNAL_ERROR")

REST_ERRORS: dict[grpc.StatusCode, RestError] = {
    grpc.StatusCode.INVALID_ARGUMENT: RestError(400, "INVALID_PARAMETER_VALUE"),
    grpc.StatusCode.OUT_OF_RANGE: RestError(400, "INVALID_PARAMETER_VALUE"),
    grpc.StatusCode.NOT_FOUND: RestError(404, "RESOURCE_DOES_NOT_EXIST"),
    grpc.StatusCode.ALREADY_EXISTS: RestError(400, "RESOURCE_ALREADY_EXISTS"),
    grpc.StatusCode.FAILED_PRECONDITION: RestError(400, "INVALID_STATE"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: RestError(429, "RESOURCE_EXHAUSTED"),
    grpc.StatusCode.UNAVAILABLE: RestError(503, "TEMPORARILY_UNAVAILABLE"),
    grpc.StatusCode.DEADLINE_EXCEEDED: RestError(504, "DEADLINE_EXCEEDED"),
    grpc.StatusCode.UNIMPLEMENTED: RestError(501, "NOT_IMPLEMENTED"),
    grpc.StatusCode.PERMISSION_DENIED: RestError(403, "PERMISSION_DENIED"),
    grpc.StatusCode.UNAUTHENTICATED: RestError(401, "UNAUTHENTICATED"),
    grpc.StatusCode.ABORTED: RestError(409, "ABORTED"),
    grpc.StatusCode.CANCELLED: RestError(499, "CANCELLED"),
    grpc.StatusCode.DATA_LOSS: RestError(500, "DATA_LOSS"),
    grpc.StatusCode.INTERNAL: INTERNAL_ERROR,
    grpc.StatusCode.UNKNOWN: INTERNAL_ERROR,
}


def rest_error(code: grpc.StatusCode) -> RestError:
    """The HTTP status and MLflow error code of a failed call's status; INTERNAL_ERROR for a code
    that is no error (OK)."""
    return REST_ERRORS.get(code, INTERNAL_ERROR)
