"""The credentials the client sends on every call, and the channel that sends them.

Every call, unary or streaming, carries the `authorization` metadata: `Bearer <token>` (an mlgrid access
token or an OIDC JWT), else `Basic base64(user:password)`. They come from the client's arguments, else
from MLGRID_TRACKING_TOKEN, else MLGRID_TRACKING_USERNAME / MLGRID_TRACKING_PASSWORD, else the same three
of the stock mlflow client (MLFLOW_TRACKING_*), so one environment serves both clients.

On a `grpcs://` tracking URI (TLS, checked against the system's roots or MLGRID_TRACKING_SERVER_CERT_PATH)
they are gRPC call credentials composed with the channel's. gRPC refuses call credentials on a plain
channel, so there a client interceptor adds the same metadata to each call.
"""
from __future__ import annotations

import base64
import collections
import os

import grpc

from mlgrid.exceptions import MlgridException

TOKEN_ENV = "MLGRID_TRACKING_TOKEN"
USERNAME_ENV = "MLGRID_TRACKING_USERNAME"
PASSWORD_ENV = "MLGRID_TRACKING_PASSWORD"
SERVER_CERT_ENV = "MLGRID_TRACKING_SERVER_CERT_PATH"
# The stock mlflow client's, read when none of mlgrid's is set.
MLFLOW_TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
MLFLOW_USERNAME_ENV = "MLFLOW_TRACKING_USERNAME"
MLFLOW_PASSWORD_ENV = "MLFLOW_TRACKING_PASSWORD"
MLFLOW_SERVER_CERT_ENV = "MLFLOW_TRACKING_SERVER_CERT_PATH"
# Every variable that holds a credential, for the processes the client starts (projects in containers).
CREDENTIAL_ENV = (TOKEN_ENV, USERNAME_ENV, PASSWORD_ENV, MLFLOW_TOKEN_ENV, MLFLOW_USERNAME_ENV, MLFLOW_PASSWORD_ENV)


class Credentials:
    """The `authorization` metadata of every call; its repr names the scheme only, never the secret."""

    __slots__ = ("metadata", "scheme")

    def __init__(self, authorization: str, scheme: str):
        self.metadata = (("authorization", authorization),)
        self.scheme = scheme

    def __repr__(self) -> str:
        return f"Credentials({self.scheme})"

    @classmethod
    def bearer(cls, token: str) -> Credentials:
        return cls(f"Bearer {token}", "bearer token")

    @classmethod
    def basic(cls, username: str, password: str) -> Credentials:
        pair = base64.b64encode(f"{username}:{password}".encode()).decode()
        return cls(f"Basic {pair}", f"basic, user {username!r}")

    @classmethod
    def resolve(cls, token: str | None = None, username: str | None = None,
                password: str | None = None) -> Credentials | None:
        """From the arguments when any is given, else from mlgrid's variables, else mlflow's; a token
        before a username and password. None: no credentials (a server without auth)."""
        if token or username or password:
            return cls._pick(token, username, password, "token", "username", "password")
        for names in ((TOKEN_ENV, USERNAME_ENV, PASSWORD_ENV), (MLFLOW_TOKEN_ENV, MLFLOW_USERNAME_ENV, MLFLOW_PASSWORD_ENV)):
            values = [os.environ.get(name) for name in names]
            if any(values):
                return cls._pick(*values, *names)
        return None

    @classmethod
    def _pick(cls, token, username, password, token_name, username_name, password_name) -> Credentials:
        if token:
            return cls.bearer(token)
        if not (username and password):
            given, missing = (username_name, password_name) if username else (password_name, username_name)
            raise MlgridException(f"{given} is set without {missing}: give both, or a token ({token_name})",
                                  grpc.StatusCode.INVALID_ARGUMENT)
        return cls.basic(username, password)


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class _AuthorizationInterceptor(
    grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor,
):
    """Adds the credentials' metadata to every call of a plain channel."""

    def __init__(self, credentials: Credentials):
        self._metadata = credentials.metadata

    def _with_metadata(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(details.method, details.timeout, (*(details.metadata or ()), *self._metadata),
                            details.credentials, details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._with_metadata(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._with_metadata(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_metadata(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._with_metadata(client_call_details), request_iterator)


class _AuthorizationPlugin(grpc.AuthMetadataPlugin):
    def __init__(self, credentials: Credentials):
        self._metadata = credentials.metadata

    def __call__(self, context, callback) -> None:
        callback(self._metadata, None)


def _root_certificates() -> bytes | None:
    """The CA bundle to check the server's certificate with; None: the system's roots."""
    path = os.environ.get(SERVER_CERT_ENV) or os.environ.get(MLFLOW_SERVER_CERT_ENV)
    if not path:
        return None
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise MlgridException(f"cannot read the server certificate {path!r}: {error.strerror}",
                              grpc.StatusCode.INVALID_ARGUMENT) from None


def open_channel(target: str, tls: bool, credentials: Credentials | None, options) -> grpc.Channel:
    """A channel to `target` (host:port) that sends `credentials` on every call."""
    if tls:
        channel_credentials = grpc.ssl_channel_credentials(_root_certificates())
        if credentials is not None:
            channel_credentials = grpc.composite_channel_credentials(
                channel_credentials, grpc.metadata_call_credentials(_AuthorizationPlugin(credentials), name="mlgrid"),
            )
        return grpc.secure_channel(target, channel_credentials, options=options)
    channel = grpc.insecure_channel(target, options=options)
    return channel if credentials is None else grpc.intercept_channel(channel, _AuthorizationInterceptor(credentials))
