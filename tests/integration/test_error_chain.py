"""The interceptor chain (services.common.interceptors) on each service's real servicer, served by
start_grpc and called over a real channel: an unexpected exception in a store or handler becomes
INTERNAL naming the method, its traceback logged; a domain error keeps its code and message; an
abort passes through as it is; the Prometheus counter records the status the caller got. Calls of
every kind of streaming. And the one table from gRPC status to HTTP, on serving's REST side."""
import asyncio
import contextlib
import logging
import time

import grpc
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from mlgrid.inference.v2 import grpc_predict_v2_pb2 as oip_pb
from mlgrid.inference.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from mlgrid.v1 import artifacts_pb2, artifacts_pb2_grpc, registry_pb2, registry_pb2_grpc, tracking_pb2, tracking_pb2_grpc
from services.artifacts.handlers import ArtifactHandler
from services.artifacts.resolver import StoreRunResolver
from services.artifacts.service import artifact_service
from services.common.config import ArtifactsConfig
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from services.common.server import Service, start_grpc
from services.common.status import REST_ERRORS
from services.registry.service import registry_service
from services.serving.dataplane import DataPlane
from services.serving.grpc_servicer import SERVICE_NAME as INFERENCE_SERVICE
from services.serving.grpc_servicer import InferenceServicer, add_to_server
from services.serving.repository import ModelRepository
from services.serving.rest import RestApi
from services.tracking.service import tracking_service

TRACKING = "mlgrid.v1.TrackingService"
REGISTRY_SERVICE = "mlgrid.v1.ModelRegistryService"
ARTIFACTS = "mlgrid.v1.ArtifactService"
ONE_BACKEND = pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # the chain does not depend on it


def raising(error: Exception):
    async def method(*args, **kwargs):
        raise error

    return method



def raising_sync(error: Exception):
    def method(*args, **kwargs):
        raise error

    return method


def raising_stream(error: Exception, *before):
    """An async generator method that yields `before`, then raises."""

    async def method(*args, **kwargs):
        for item in before:
            yield item
        raise error

    return method


def counted(full_method: str, code: str) -> float:
    service, method = full_method.lstrip("/").split("/")
    labels = {"service": service, "method": method, "code": code}
    return REGISTRY.get_sample_value("mlgrid_grpc_requests_total", labels) or 0.0


@contextlib.asynccontextmanager
async def served(service: Service):
    """`service` on a real server (start_grpc: the chain every service runs behind); yields a channel to it."""
    server, _, port = await start_grpc([service], "127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(None)


async def fails_with(call, full_method: str, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Await `call()` (or drain it, a response stream), which must fail with `code`, counted as such."""
    before = counted(full_method, code.name)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        result = call()
        if hasattr(result, "__aiter__"):
            async for _ in result:
                pass
        else:
            await result
    assert raised.value.code() == code, raised.value.details()
    # The server counts the call once its wrapper returns, which may be just after the caller got the status.
    deadline = time.monotonic() + 5
    while counted(full_method, code.name) < before + 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert counted(full_method, code.name) == before + 1
    return raised.value


async def is_internal(call, full_method: str, caplog) -> None:
    """`call()` fails with INTERNAL naming the method, and the server logged the RuntimeError's traceback."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="mlgrid.errors"):
        error = await fails_with(call, full_method, grpc.StatusCode.INTERNAL)
    name = full_method.rpartition("/")[2]
    assert error.details() == f"internal error in {name} (RuntimeError); see the server log"
    logged = [r for r in caplog.records if r.name == "mlgrid.errors" and full_method in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info[0] is RuntimeError
    assert "unexpected bug" in caplog.text and "Traceback" in caplog.text


async def keeps(call, full_method: str, error: Exception, caplog) -> None:
    """`call()` fails with the domain error's own code and message, and nothing is logged as a failure."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="mlgrid.errors"):
        raised = await fails_with(call, full_method, error.code)
    assert raised.details() == error.message
    assert not caplog.records


# ---------------------------------------------------------------- tracking


@ONE_BACKEND
async def test_tracking_unary_calls(store, monkeypatch, caplog):
    async with served(await tracking_service(None, store)) as channel:
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        monkeypatch.setattr(store, "log_metric", raising(RuntimeError("an unexpected bug")))
        await is_internal(lambda: stub.LogMetric(tracking_pb2.LogMetricRequest(run_id="r", key="k", value=1)),
                          f"/{TRACKING}/LogMetric", caplog)
        missing = NotFound("no experiment with id 42")
        monkeypatch.setattr(store, "get_experiment", raising(missing))
        await keeps(lambda: stub.GetExperiment(tracking_pb2.GetExperimentRequest(experiment_id="42")),
                    f"/{TRACKING}/GetExperiment", missing, caplog)


@ONE_BACKEND
async def test_tracking_client_streaming_ingest(store, monkeypatch, caplog):
    batches = lambda: iter([tracking_pb2.IngestBatch(batch_id="b1", run_id="r")])  # noqa: E731
    async with served(await tracking_service(None, store)) as channel:
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        monkeypatch.setattr(store, "ingest", raising(RuntimeError("an unexpected bug")))
        await is_internal(lambda: stub.IngestMetrics(batches()), f"/{TRACKING}/IngestMetrics", caplog)
        # The servicer says which batch was refused; the code stays the store's.
        monkeypatch.setattr(store, "ingest", raising(InvalidArgument("metric key '' is empty")))
        refused = await fails_with(lambda: stub.IngestMetrics(batches()), f"/{TRACKING}/IngestMetrics",
                                   grpc.StatusCode.INVALID_ARGUMENT)
        assert "batch 'b1'" in refused.details() and "metric key '' is empty" in refused.details()


@ONE_BACKEND
async def test_tracking_server_streaming_search_fails_after_its_first_page(store, monkeypatch, caplog):
    method = f"/{TRACKING}/SearchRunsStream"
    page = tracking_pb2.SearchRunsResponse(next_page_token="more")
    async with served(await tracking_service(None, store)) as channel:
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        monkeypatch.setattr(store, "search_runs_pages", raising_stream(RuntimeError("an unexpected bug"), page))
        received = []

        async def search():
            async for response in stub.SearchRunsStream(tracking_pb2.SearchRunsRequest()):
                received.append(response)

        await is_internal(search, method, caplog)
        assert received == [page]  # what was sent before the failure arrived
        invalid = InvalidArgument("bad filter: 'metrics.x >'")
        monkeypatch.setattr(store, "search_runs_pages", raising_stream(invalid))
        await keeps(lambda: stub.SearchRunsStream(tracking_pb2.SearchRunsRequest()), method, invalid, caplog)


# ---------------------------------------------------------------- registry


@pytest.mark.parametrize("registry_store", ["sqlite"], indirect=True)
async def test_registry_unary_and_watch_stream(registry_store, monkeypatch, caplog):
    async with served(registry_service(registry_store)) as channel:
        stub = registry_pb2_grpc.ModelRegistryServiceStub(channel)
        monkeypatch.setattr(registry_store, "get_registered_model", raising(RuntimeError("an unexpected bug")))
        await is_internal(lambda: stub.GetRegisteredModel(registry_pb2.GetRegisteredModelRequest(name="m")),
                          f"/{REGISTRY_SERVICE}/GetRegisteredModel", caplog)
        exists = AlreadyExists("registered model 'm' already exists")
        monkeypatch.setattr(registry_store, "create_registered_model", raising(exists))
        await keeps(lambda: stub.CreateRegisteredModel(registry_pb2.CreateRegisteredModelRequest(name="m")),
                    f"/{REGISTRY_SERVICE}/CreateRegisteredModel", exists, caplog)
        monkeypatch.setattr(registry_store, "watch_events", raising_stream(RuntimeError("an unexpected bug")))
        await is_internal(lambda: stub.WatchEvents(registry_pb2.WatchEventsRequest()),
                          f"/{REGISTRY_SERVICE}/WatchEvents", caplog)


# ---------------------------------------------------------------- artifacts


@ONE_BACKEND
async def test_artifacts_upload_and_download_streams(store, tmp_path, monkeypatch, caplog):
    service = await artifact_service(ArtifactsConfig(destination=str(tmp_path)), StoreRunResolver(store, 0))
    target = artifacts_pb2.ArtifactTarget(run_id="r", path="model.pkl")

    async def upload_requests():
        yield artifacts_pb2.UploadRequest(header=artifacts_pb2.UploadHeader(target=target))
        yield artifacts_pb2.UploadRequest(chunk=b"data")

    try:
        async with served(service) as channel:
            stub = artifacts_pb2_grpc.ArtifactServiceStub(channel)
            monkeypatch.setattr(ArtifactHandler, "upload", raising(RuntimeError("an unexpected bug")))
            await is_internal(lambda: stub.Upload(upload_requests()), f"/{ARTIFACTS}/Upload", caplog)
            full = ResourceExhausted("the store is full; nothing was kept")
            monkeypatch.setattr(ArtifactHandler, "upload", raising(full))
            await keeps(lambda: stub.Upload(upload_requests()), f"/{ARTIFACTS}/Upload", full, caplog)
            missing = NotFound("no artifact model.pkl in run r")
            monkeypatch.setattr(ArtifactHandler, "download", raising(missing))
            await keeps(lambda: stub.Download(artifacts_pb2.DownloadRequest(target=target)), f"/{ARTIFACTS}/Download",
                        missing, caplog)
    finally:
        await service.close()


# ---------------------------------------------------------------- serving


async def test_serving_inference_calls(monkeypatch, caplog):
    plane = DataPlane(ModelRepository([], None))
    service = Service(INFERENCE_SERVICE, lambda server: add_to_server(InferenceServicer(plane), server))
    async with served(service) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        monkeypatch.setattr(plane, "live", raising_sync(RuntimeError("an unexpected bug")))
        await is_internal(lambda: stub.ServerLive(oip_pb.ServerLiveRequest()), f"/{INFERENCE_SERVICE}/ServerLive", caplog)
        # The repository's own NotFound, for a model it does not serve.
        error = await fails_with(lambda: stub.ModelMetadata(oip_pb.ModelMetadataRequest(name="nope")),
                                 f"/{INFERENCE_SERVICE}/ModelMetadata", grpc.StatusCode.NOT_FOUND)
        assert "no model named 'nope'" in error.details()


# ---------------------------------------------------------------- every kind of call, and aborts


async def aborting(request, context):
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")


async def echo_then_fail(request_iterator, context):
    async for message in request_iterator:
        yield message
    raise RuntimeError("an unexpected bug")


async def echo_then_refuse(request, context):
    yield request
    raise Unavailable("the store went away; retry")


async def count_then_fail(request_iterator, context):
    async for _ in request_iterator:
        pass
    raise RuntimeError("an unexpected bug")


def add_test_service(server) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Chain", {
        "Abort": grpc.unary_unary_rpc_method_handler(aborting),
        "Chat": grpc.stream_stream_rpc_method_handler(echo_then_fail),
        "Watch": grpc.unary_stream_rpc_method_handler(echo_then_refuse),
        "Count": grpc.stream_unary_rpc_method_handler(count_then_fail),
    }),))


async def test_every_kind_of_call_and_an_abort_passing_through(caplog):
    async with served(Service("test.Chain", add_test_service)) as channel:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="mlgrid.errors"):
            error = await fails_with(lambda: channel.unary_unary("/test.Chain/Abort")(b"x"), "/test.Chain/Abort",
                                     grpc.StatusCode.PERMISSION_DENIED)
        assert error.details() == "not yours" and not caplog.records
        await is_internal(lambda: channel.stream_stream("/test.Chain/Chat")(iter([b"a", b"b"])), "/test.Chain/Chat", caplog)
        await is_internal(lambda: channel.stream_unary("/test.Chain/Count")(iter([b"a"])), "/test.Chain/Count", caplog)
        await keeps(lambda: channel.unary_stream("/test.Chain/Watch")(b"x"), "/test.Chain/Watch",
                    Unavailable("the store went away; retry"), caplog)


# ---------------------------------------------------------------- the status table


def test_every_error_status_has_its_http_answer():
    assert set(REST_ERRORS) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    assert REST_ERRORS[grpc.StatusCode.NOT_FOUND] == (404, "RESOURCE_DOES_NOT_EXIST")
    assert REST_ERRORS[grpc.StatusCode.RESOURCE_EXHAUSTED] == (429, "RESOURCE_EXHAUSTED")
    assert REST_ERRORS[grpc.StatusCode.UNAVAILABLE] == (503, "TEMPORARILY_UNAVAILABLE")
    assert REST_ERRORS[grpc.StatusCode.INTERNAL] == REST_ERRORS[grpc.StatusCode.UNKNOWN] == (500, "INTERNAL_ERROR")


async def test_serving_rest_answers_errors_from_the_shared_table(monkeypatch):
    plane = DataPlane(ModelRepository([], None))
    async with TestClient(TestServer(RestApi(plane, "only", 1024 * 1024).app)) as client:
        response = await client.get("/v2/models/nope")
        assert response.status == 404 and "no model named 'nope'" in (await response.json())["error"]
        response = await client.post("/invocations", data=b"{}", headers={"Content-Type": "application/json"})
        body = await response.json()
        assert response.status == 404 and body["error_code"] == "RESOURCE_DOES_NOT_EXIST"

        monkeypatch.setattr(plane, "model", raising_sync(Unavailable("model 'only' is still loading; retry shortly")))
        response = await client.post("/invocations", data=b"{}", headers={"Content-Type": "application/json"})
        body = await response.json()
        assert (response.status, body["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE") and "loading" in body["message"]
        monkeypatch.setattr(plane, "model", raising_sync(ResourceExhausted("too many requests queued")))
        response = await client.post("/v2/models/only/infer", data=b"{}")
        assert response.status == 429 and (await response.json()) == {"error": "too many requests queued"}

