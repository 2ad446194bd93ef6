"""The gateway's HTTP side: MLflow's REST API 2.0, transcoded to the same gRPC calls the gateway routes.

One handler serves every route of rest_routes (derived from the protos' annotations): the request's
JSON body or query parameters -> mlflow_json -> the request message -> the backend's RPC through the
gateway's channel to it -> the response's JSON. gRPC statuses become MLflow's error codes and HTTP
statuses (the table in services.common.status), so the stock `mlflow` client raises the MlflowException
it raises against MLflow's server.
Of the HTTP request only its JSON and the caller's credentials (`credentials()`: the Authorization header,
else the web UI's session cookie) go to the backend, which verifies them itself: the gateway trusts no caller
on a backend's behalf.
"""
import importlib
import json
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import grpc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.config import AuthConfig, GatewayConfig
from services.common.errors import MlgridError
from services.common.http import http_metrics_middleware
from services.common.status import INTERNAL_ERROR, rest_error
from services.gateway.mlflow_json import Codecs, endpoint, parse_body
from services.gateway.rest_routes import Route, routes
from services.gateway.router import Backend

log = logging.getLogger("mlgrid.gateway.rest")

JSON = "application/json"
# The web UI's large answers (/ajax-api/..., e.g. 100 runs' downsampled histories, megabytes of JSON) go
# gzipped to a browser that accepts it; API clients, mostly near the server, get them as they are.
COMPRESS_MIN_BYTES = 64 * 1024

# The gateway's other HTTP surfaces: modules with `add_routes(app, rest)`, called with the aiohttp app and the
# RestGateway (`rest.backends` by full service name, each with its channel; `rest.timeout`; `rest.call_error`;
# `rest.auth`, the AuthConfig),
# answering with this module's json_response / mlflow_error / status_error (hence imported when the app is
# built, not at the top). The app's client_max_size (MLGRID_GATEWAY_MAX_BODY_MB) bounds bodies read whole;
# stream large uploads from request.content.
EXTENSIONS = ("services.gateway.mlflow_artifacts", "services.gateway.ui", "services.gateway.login")
# The web UI's sign-in (services.gateway.login): an mlgrid session secret, sent to the backends as a bearer token.
SESSION_COOKIE = "mlgrid_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def json_response(body: dict, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type=JSON)


def mlflow_error(error_code: str, message: str, status: int) -> web.Response:
    return json_response({"error_code": error_code, "message": message}, status)


def status_error(code: grpc.StatusCode, message: str) -> web.Response:
    """The MLflow error answer for a gRPC status; a 503 says when to try again (Retry-After, seconds)."""
    status, error_code = rest_error(code)
    response = mlflow_error(error_code, message, status)
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


RETRY_AFTER_SECONDS = "1"


def challenge(path: str) -> str:
    """A 401's WWW-Authenticate: Basic for API clients (/api); Bearer for the web UI's requests (/ajax-api, the
    sign-in page, artifacts it shows), on which Basic would make the browser open its own password dialog
    instead of the UI's sign-in page."""
    return 'Basic realm="mlgrid", charset="UTF-8"' if path.startswith("/api/") else 'Bearer realm="mlgrid"'


def foreign_origin(request: web.Request) -> bool:
    """Whether a browser says the request comes from a page of another origin (its Origin header names another
    host than this gateway's): such a request is never made with the session cookie."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    return origin == "null" or urlsplit(origin).netloc.lower() != host.lower()


def credentials(request: web.Request) -> tuple[tuple[str, str], ...]:
    """The caller's credentials as gRPC metadata, for the backend to verify: the Authorization header, else the
    UI's session cookie as a bearer token (not for a change asked by a page of another origin: SameSite=Lax
    keeps the cookie from other sites, this from other origins of the same site)."""
    value = request.headers.get("Authorization")
    if value:
        return (("authorization", value),)
    session = request.cookies.get(SESSION_COOKIE)
    if session and not (request.method not in SAFE_METHODS and foreign_origin(request)):
        return (("authorization", f"Bearer {session}"),)
    return ()


# HTTP errors aiohttp raises itself (no route, wrong method, body too large), as MLflow error answers.
HTTP_ERRORS = {404: "ENDPOINT_NOT_FOUND", 405: "ENDPOINT_NOT_FOUND", 413: "REQUEST_LIMIT_EXCEEDED"}


def http_error_middleware(max_body_mb: int):
    @web.middleware
    async def middleware(request: web.Request, handler):
        try:
            response = await handler(request)
            if response.status == 401:
                response.headers["WWW-Authenticate"] = challenge(request.path)
            return response
        except web.HTTPException as error:
            if error.status not in HTTP_ERRORS:
                raise
            message = {
                404: f"No API endpoint {request.method} {request.path}",
                405: f"{request.path} does not take {request.method}; it takes {error.headers.get('Allow', '')}",
                413: f"The request body is larger than the gateway's limit of {max_body_mb} MB (MLGRID_GATEWAY_MAX_BODY_MB)",
            }[error.status]
            return mlflow_error(HTTP_ERRORS[error.status], message, error.status)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return mlflow_error(INTERNAL_ERROR.error_code, "internal error in the gateway; see its log", INTERNAL_ERROR.http_status)

    return middleware


class RestGateway:
    """The aiohttp app of MLflow's REST API over the routed backends (the channels the gRPC router uses,
    closed by their owner)."""

    def __init__(self, backends: list[Backend], config: GatewayConfig, auth: AuthConfig | None = None):
        """`auth`: the sign-in's settings (OIDC client, session length)."""
        self.backends = {backend.service: backend for backend in backends}
        self.auth = auth or AuthConfig()
        self.timeout = config.rest_timeout_seconds
        self.app = web.Application(
            client_max_size=config.max_body_mb * 1024 * 1024,
            middlewares=[http_metrics_middleware(), http_error_middleware(config.max_body_mb)],
        )
        codecs = Codecs()
        self.endpoints = []
        for route in routes(list(self.backends)):
            self.app.router.add_route(route.verb, route.path, self._handler(route, codecs))
        self.app.on_cleanup.append(self._close_endpoints)
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/metrics", self.metrics)
        for name in EXTENSIONS:
            importlib.import_module(name).add_routes(self.app, self)

    def call_error(self, backend: Backend, error: grpc.aio.AioRpcError) -> web.Response:
        """The MLflow error answer for a failed call to a backend."""
        return status_error(error.code(), backend.details(error))

    def _handler(self, route: Route, codecs: Codecs) -> Callable:
        backend = self.backends[route.service]
        shape = endpoint(route.annotated_path, route.method, codecs)
        self.endpoints.append(shape)
        path_params = "{" in route.path
        if backend.channel is None:
            async def unrouted(request: web.Request) -> web.Response:
                return status_error(grpc.StatusCode.UNAVAILABLE, backend.no_address_message)

            return unrouted
        open_call = getattr(backend.channel, "unary_stream" if shape.streaming else "unary_unary")(
            route.rpc, request_serializer=shape.request_cls.SerializeToString, response_deserializer=shape.response_cls.FromString
        )
        timeout = self.timeout

        async def handle(request: web.Request) -> web.Response:
            try:
                # As MLflow's server: a GET's query parameters, else the JSON body.
                if (request.method == "GET" and request.query_string) or not request.can_read_body:
                    obj = shape.query_to_json(request.query)
                else:
                    obj = parse_body(await request.read())
                if path_params:
                    obj.update(request.match_info)
                message, state = shape.decode(obj)
                metadata = credentials(request)
                if shape.streaming:
                    body = await shape.collect(lambda: open_call(message, timeout=timeout, metadata=metadata), state)
                else:
                    body = shape.encode(await open_call(message, timeout=timeout, metadata=metadata), state)
            except MlgridError as error:
                return status_error(error.code, error.message)
            except grpc.aio.AioRpcError as error:
                return self.call_error(backend, error)
            response = json_response(body)
            if len(response.body) >= COMPRESS_MIN_BYTES and request.path.startswith("/ajax-api/"):
                response.enable_compression()  # only if the request's Accept-Encoding allows it
            return response

        return handle

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _close_endpoints(self, app: web.Application) -> None:
        for shape in self.endpoints:
            shape.close()
