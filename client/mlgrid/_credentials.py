"""The credentials the client sends on every call, and the channel that sends them.

Every call, unary or streaming, carries the `authorization` metadata: `Bearer <token>` (an mlgrid access
token or an OIDC JWT), else `Basic base64(user:password)`. They come from the client's arguments, else
from MLGRID_TRACKING_TOKEN, else MLGRID_TRACKING_USERNAME / MLGRID_TRACKING_PASSWORD, else the same three
of the stock mlflow client (MLFLOW_TRACKING_*), so one environment serves both clients.

On a `grpcs://` tracking URI (TLS, checked against the system's roots or MLGRID_TRACKING_SERVER_CERT_PATH)
they are gRPC call credentials composed with the channel's. gRPC refuses call credentials on a plain
channel, so there the channel itself adds the same metadata to each call (_AuthorizedChannel).
"""
from __future__ import annotations

import base64
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


class _AuthorizedCall:
    """A method of a plain channel that adds the credentials' metadata to each call."""

    __slots__ = ("_call", "_metadata")

    def __init__(self, call, metadata: tuple):
        self._call = call
        self._metadata = metadata

    def _with(self, metadata) -> tuple:
        return self._metadata if metadata is None else (*metadata, *self._metadata)

    def __call__(self, request, timeout=None, metadata=None, *args, **kwargs):
        return self._call(request, timeout, self._with(metadata), *args, **kwargs)

    def with_call(self, request, timeout=None, metadata=None, *args, **kwargs):
        return self._call.with_call(request, timeout, self._with(metadata), *args, **kwargs)

    def future(self, request, timeout=None, metadata=None, *args, **kwargs):
        return self._call.future(request, timeout, self._with(metadata), *args, **kwargs)


class _AuthorizedChannel(grpc.Channel):
    """A plain channel whose every call, of the four kinds, carries the credentials' metadata: a client
    interceptor in effect, without grpc.intercept_channel's machinery, which measured 15-20 µs more client
    CPU per unary call (5-10% of a LogMetric's); this one costs what the metadata does."""

    def __init__(self, channel: grpc.Channel, credentials: Credentials):
        self._channel = channel
        self._metadata = credentials.metadata

    def unary_unary(self, method, *args, **kwargs):
        return _AuthorizedCall(self._channel.unary_unary(method, *args, **kwargs), self._metadata)

    def unary_stream(self, method, *args, **kwargs):
        return _AuthorizedCall(self._channel.unary_stream(method, *args, **kwargs), self._metadata)

    def stream_unary(self, method, *args, **kwargs):
        return _AuthorizedCall(self._channel.stream_unary(method, *args, **kwargs), self._metadata)

    def stream_stream(self, method, *args, **kwargs):
        return _AuthorizedCall(self._channel.stream_stream(method, *args, **kwargs), self._metadata)

    def subscribe(self, callback, try_to_connect=False):
        self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback):
        self._channel.unsubscribe(callback)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


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
    return channel if credentials is None else _AuthorizedChannel(channel, credentials)
