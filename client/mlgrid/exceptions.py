"""The one exception the client raises for a failed call, like mlflow's MlflowException."""
import grpc


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
        return cls(error.details() or error.code().name, error.code())
