"""The HTTP side of serving, thin routes over the data plane: the Open Inference Protocol's REST
API (/v2/...), MLflow's scoring protocol (/invocations, /ping, /health, /version) and /metrics."""
from __future__ import annotations

import json

import pandas as pd
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mlgrid.inference.v2 import grpc_predict_v2_pb2 as pb
from services.common.errors import InvalidArgument, MlgridError, NotFound, Unauthenticated
from services.common.status import rest_error
from services.serving.access import HTTP_RPCS
from services.serving.codecs import mlflow_scoring, oip
from services.serving.dataplane import SERVER_NAME, DataPlane, output_tensors, server_version
from services.serving.grpc_servicer import SERVICE_NAME, model_metadata
from services.serving.payload import UNNAMED, Prediction

JSON = "application/json"
INVOCATIONS = "/invocations"


def _json(body: dict, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), status=status, content_type=JSON)


def auth_middleware(gate, default_model: str | None):
    """The gate of the gRPC side on the routes that are its RPCs (access.HTTP_RPCS): the same rules, the
    caller's Authorization header as its credentials."""
    guards = {rpc: gate.guard(f"/{SERVICE_NAME}/{rpc}") for rpc in set(HTTP_RPCS.values())}

    @web.middleware
    async def middleware(request: web.Request, handler):
        rpc = HTTP_RPCS.get(getattr(request.match_info.handler, "__name__", ""))
        if rpc is not None:
            name = request.match_info.get("name", default_model or "")
            message = pb.ModelInferRequest(model_name=name) if rpc == "ModelInfer" else pb.ModelMetadataRequest(name=name)
            await guards[rpc].first(message, HttpCall(request))
        return await handler(request)

    return middleware


class HttpCall:
    """An HTTP request as the gate reads a gRPC call: its credentials as the `authorization` metadata."""

    def __init__(self, request: web.Request):
        self.request = request

    def invocation_metadata(self):
        value = self.request.headers.get("Authorization")
        return (("authorization", value),) if value else ()


@web.middleware
async def error_middleware(request: web.Request, handler):
    """A domain error raised by any route as its answer, HTTP status and MLflow error code from the
    shared table (services.common.status): MLflow's scoring protocol's error on /invocations (its own
    400 BAD_REQUEST / 415 text/plain for a request it cannot read), OIP's {"error": message} elsewhere.
    A body over MLGRID_SERVING_MAX_BODY_MB is aiohttp's own 413 (client_max_size), raised by request.read()."""
    try:
        return await handler(request)
    except Unauthenticated as error:
        response = _json({"error": error.message}, 401) if request.path != INVOCATIONS else web.Response(
            body=mlflow_scoring.error_body("UNAUTHENTICATED", error.message), status=401, content_type=JSON)
        response.headers["WWW-Authenticate"] = 'Basic realm="mlgrid", charset="UTF-8"'
        return response
    except MlgridError as error:
        response = _error_answer(request, error)
        if response.status == 503:  # a dependency (the identity service) does not answer: soon again
            response.headers["Retry-After"] = "1"
        return response


def _error_answer(request: web.Request, error: MlgridError) -> web.Response:
    if request.path != INVOCATIONS:
        return _json({"error": error.message}, rest_error(error.code).http_status)
    if isinstance(error, InvalidArgument):
        status, body, media_type = mlflow_scoring.error_response(error)
        return web.Response(body=body, status=status, content_type=media_type)
    status, error_code = rest_error(error.code)
    return web.Response(body=mlflow_scoring.error_body(error_code, error.message), status=status, content_type=JSON)


def _predictions(prediction: Prediction):
    """The prediction as the Python value MLflow's server would have had from the model."""
    if prediction.kind == "frame":
        return pd.DataFrame(prediction.arrays)
    if prediction.kind == "tensor":
        return prediction.arrays[UNNAMED]
    if prediction.kind == "tensors":
        return dict(prediction.arrays)
    return prediction.raw


class RestApi:
    def __init__(self, plane: DataPlane, default_model: str | None, max_body_bytes: int, gate=None):
        self.plane = plane
        self.default_model = default_model  # what /invocations serves
        middlewares = [error_middleware] + ([auth_middleware(gate, default_model)] if gate is not None else [])
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=middlewares)
        version = "/v2/models/{name}/versions/{version}"
        self.app.add_routes([
            web.get("/v2/health/live", self.live),
            web.get("/v2/health/ready", self.ready),
            web.get("/v2", self.server_metadata),
            web.get("/v2/models/{name}", self.model_metadata),
            web.get(version, self.model_metadata),
            web.get("/v2/models/{name}/ready", self.model_ready),
            web.get(version + "/ready", self.model_ready),
            web.post("/v2/models/{name}/infer", self.infer),
            web.post(version + "/infer", self.infer),
            web.post(INVOCATIONS, self.invocations),
            web.get("/ping", self.ping),
            web.get("/health", self.ping),
            web.get("/version", self.version),
            web.get("/metrics", self.metrics),
        ])

    # ------------------------------------------------------------ Open Inference Protocol

    async def live(self, request: web.Request) -> web.Response:
        return _json({"live": self.plane.live()})

    async def ready(self, request: web.Request) -> web.Response:
        ready = self.plane.ready()
        return _json({"ready": ready}, 200 if ready else 503)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _json({"name": SERVER_NAME, "version": server_version(), "extensions": ["binary_tensor_data"]})

    async def model_metadata(self, request: web.Request) -> web.Response:
        meta = model_metadata(self.plane, request.match_info["name"], request.match_info.get("version", ""))
        meta["inputs"] = [{"name": n, "datatype": d, "shape": list(s)} for n, d, s in meta["inputs"]]
        meta["outputs"] = [{"name": n, "datatype": d, "shape": list(s)} for n, d, s in meta["outputs"]]
        return _json(meta)

    async def model_ready(self, request: web.Request) -> web.Response:
        ready = self.plane.model_ready(request.match_info["name"], request.match_info.get("version", ""))
        return _json({"name": request.match_info["name"], "ready": ready}, 200 if ready else 503)

    async def infer(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.plane.model(name, request.match_info.get("version", ""))  # an unknown model is 404 whatever the body
        header = request.headers.get("Inference-Header-Content-Length") or None  # the codec checks it is a length
        payload, binary = oip.decode_rest_request(await request.read(), header)
        model, prediction = await self.plane.infer(name, request.match_info.get("version", ""), payload, "rest")
        body, headers = oip.encode_rest_response(name, model.version, payload.id, output_tensors(prediction, payload.requested_outputs), binary)
        return web.Response(body=body, headers=headers)

    # ------------------------------------------------------------ MLflow's scoring protocol

    async def invocations(self, request: web.Request) -> web.Response:
        if self.default_model is None:
            raise NotFound(
                f"/invocations answers for a server of one model; this one serves {sorted(self.plane.repository.models)}: "
                "call /v2/models/{name}/infer"
            )
        model = self.plane.model(self.default_model)
        payload = mlflow_scoring.parse_invocation(
            await request.read(), request.headers.get("Content-Type", ""), model.metadata.get_input_schema(),
        )
        _, prediction = await self.plane.infer(self.default_model, "", payload, "invocations")
        return web.Response(body=mlflow_scoring.format_predictions(_predictions(prediction)), content_type=JSON)

    async def ping(self, request: web.Request) -> web.Response:
        ready = self.plane.ready()
        return web.Response(body=mlflow_scoring.PING_BODY, status=200 if ready else 503, content_type=JSON)

    async def version(self, request: web.Request) -> web.Response:
        return web.Response(body=mlflow_scoring.version_body(server_version()), content_type=JSON)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
