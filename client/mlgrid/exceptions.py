"""The one exception the client raises for a failed call, like mlflow's MlflowException."""
import grpc

SIGN_IN_HINT = (
    "set MLGRID_TRACKING_TOKEN to an access token (`mlgrid tokens create`) or an OIDC token, or "
    "MLGRID_TRACKING_USERNAME and MLGRID_TRACKING_PASSWORD (or pass token=, or username= and password=, to MlgridClient)"
)


class MlgridException(Exception):
    """A call failed: `code` is the gRPC status, `message` the server's explanation."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.INTERNAL):
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __reduce__(self):  # keep `code` when pickled, e.g. across processes
        return type(self), (self.message, self.code)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> "MlgridException":
        # Errors raised by a call also have the grpc.Call methods code() and details().
        if not hasattr(error, "code"):
            return cls(str(error), grpc.StatusCode.UNKNOWN)
        message = error.details() or error.code().name
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            message = f"{message}; {SIGN_IN_HINT}"
        return cls(message, error.code())
