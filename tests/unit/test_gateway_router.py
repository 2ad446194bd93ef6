"""The gateway's gRPC routing in front of an in-process fake tracking backend — the Python router, and
nginx in front of it — every kind of streaming, status codes, metadata both ways, deadlines,
cancellation, and what it refuses."""
import asyncio
import contextlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlgrid.v1 import tracking_pb2 as pb
from mlgrid.v1 import tracking_pb2_grpc
from services.common.config import GatewayConfig
from services.common.server import Service, free_port, start_grpc
from services.gateway.nginx import NginxDataPlane, nginx_binary
from services.gateway.service import backends, gateway_services

ECHO = "/mlgrid.v1.TrackingService/Echo"  # not in the proto: forwarded as a stream both ways


class FakeTracking(tracking_pb2_grpc.TrackingServiceServicer):
    """Answers with what it saw: metadata, deadline, requests; remembers cancelled streams."""

    def __init__(self):
        self.cancelled = asyncio.Event()
        self.seen: dict = {}

    async def GetRun(self, request, context):
        metadata = dict(context.invocation_metadata())
        self.seen = {"metadata": metadata, "time_remaining": context.time_remaining()}
        if request.run_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "run 'missing' not found", (("reason-bin", b"\x00\x01"),))
        await context.send_initial_metadata((("backend-initial", metadata.get("x-request-id", "")),))
        context.set_trailing_metadata((("backend-trailing", "done"),))
        return pb.RunResponse(run=pb.Run(info=pb.RunInfo(run_id=request.run_id, run_name=metadata.get("x-request-id", ""))))

    async def LogMetric(self, request, context):
        self.seen = {"time_remaining": context.time_remaining()}
        await asyncio.sleep(request.value)
        return pb.Empty()

    async def SearchRunsStream(self, request, context):
        if request.filter == "endless":
            try:
                while True:
                    yield pb.SearchRunsResponse(next_page_token="more")
                    await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        for i in range(request.max_results):
            yield pb.SearchRunsResponse(next_page_token=str(i))

    async def IngestMetrics(self, request_iterator, context):
        batches = metrics = 0
        async for batch in request_iterator:
            batches += 1
            metrics += sum(len(series.values) for series in batch.metrics)
        return pb.IngestSummary(batches=batches, metrics=metrics)


async def echo(request_iterator, context):
    async for message in request_iterator:
        yield message[::-1]


def add_fake(servicer):
    def add(server):
        tracking_pb2_grpc.add_TrackingServiceServicer_to_server(servicer, server)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "mlgrid.v1.TrackingService", {"Echo": grpc.stream_stream_rpc_method_handler(echo)}),))
    return add


NGINX = nginx_binary("auto")
# Each test runs against the Python router alone, and with nginx routing in front of it (where installed).
DATA_PLANES = ["python", pytest.param("nginx", marks=pytest.mark.skipif(NGINX is None, reason="nginx is not installed"))]


@contextlib.asynccontextmanager
async def running_gateway(config: GatewayConfig, data_plane: str):
    """The gateway's gRPC side for `config`; yields the address callers use."""
    routed = backends(config)
    services = gateway_services(routed, config)
    server, _, port = await start_grpc(services, "127.0.0.1", 0)
    nginx = None
    if data_plane == "nginx":
        public = free_port()
        nginx = NginxDataPlane(NGINX, routed, "127.0.0.1", public, port, shutdown_seconds=1)
        await nginx.start()
        port = public
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if nginx is not None:
            await nginx.stop()
        await server.stop(0)
        for service in services:
            await service.close()


@pytest.fixture(params=DATA_PLANES)
async def gateway(request):
    backend = FakeTracking()
    backend_server, _, backend_port = await start_grpc([Service("mlgrid.v1.TrackingService", add_fake(backend))], "127.0.0.1", 0)
    config = GatewayConfig(tracking_target=f"127.0.0.1:{backend_port}", health_interval_ms=100)
    async with running_gateway(config, request.param) as address:
        channel = grpc.aio.insecure_channel(address)
        yield {"stub": tracking_pb2_grpc.TrackingServiceStub(channel), "channel": channel, "backend": backend}
        await channel.close()
    await backend_server.stop(0)


async def test_unary_with_metadata_both_ways(gateway):
    call = gateway["stub"].GetRun(pb.GetRunRequest(run_id="r1"), metadata=(("x-request-id", "abc"), ("x-token-bin", b"\xff")))
    response = await call
    assert (response.run.info.run_id, response.run.info.run_name) == ("r1", "abc")
    assert ("backend-initial", "abc") in tuple(await call.initial_metadata())
    assert ("backend-trailing", "done") in tuple(await call.trailing_metadata())
    seen = gateway["backend"].seen["metadata"]
    assert seen["x-token-bin"] == b"\xff" and seen["x-request-id"] == "abc"


async def test_backend_status_comes_back_unchanged(gateway):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await gateway["stub"].GetRun(pb.GetRunRequest(run_id="missing"))
    assert (error.value.code(), error.value.details()) == (grpc.StatusCode.NOT_FOUND, "run 'missing' not found")
    assert ("reason-bin", b"\x00\x01") in tuple(error.value.trailing_metadata())


async def test_server_streaming(gateway):
    responses = [r.next_page_token async for r in gateway["stub"].SearchRunsStream(pb.SearchRunsRequest(max_results=50))]
    assert responses == [str(i) for i in range(50)]


async def test_client_streaming(gateway):
    series = pb.MetricSeries(key="loss", values=[1.0, 2.0], steps=[0, 1], timestamps=[1, 2])

    async def batches():
        for i in range(20):
            yield pb.IngestBatch(batch_id=str(i), run_id="r", metrics=[series])

    summary = await gateway["stub"].IngestMetrics(batches())
    assert (summary.batches, summary.metrics) == (20, 40)


async def test_bidi_streaming_of_a_method_the_gateway_has_no_descriptor_for(gateway):
    call = gateway["channel"].stream_stream(ECHO)()
    for word in (b"abc", b"hello"):
        await call.write(word)
        assert await call.read() == word[::-1]
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF and await call.code() == grpc.StatusCode.OK


async def test_deadline_reaches_the_backend(gateway):
    await gateway["stub"].LogMetric(pb.LogMetricRequest(value=0), timeout=5)
    # the 5 s deadline, less the time spent reaching the backend (gRPC rounds deadlines a little up)
    assert 3 < gateway["backend"].seen["time_remaining"] <= 5.1
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await gateway["stub"].LogMetric(pb.LogMetricRequest(value=2), timeout=0.2)
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_caller_cancelling_cancels_the_backend_call(gateway):
    call = gateway["stub"].SearchRunsStream(pb.SearchRunsRequest(filter="endless"))
    assert (await call.read()).next_page_token == "more"
    call.cancel()
    await asyncio.wait_for(gateway["backend"].cancelled.wait(), 5)


async def test_unknown_service_is_unimplemented(gateway):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await gateway["channel"].unary_unary("/acme.Other/Do")(b"")
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "mlgrid.v1.TrackingService" in error.value.details() and "inference.GRPCInferenceService" in error.value.details()


async def test_unconfigured_service_is_unavailable_naming_its_variable(gateway):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await gateway["channel"].unary_unary("/mlgrid.v1.ModelRegistryService/GetRegisteredModel")(b"")
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "MLGRID_GATEWAY_REGISTRY_TARGET" in error.value.details()


@pytest.mark.parametrize("data_plane", DATA_PLANES)
async def test_backend_down_is_unavailable_naming_it(data_plane):
    async with running_gateway(GatewayConfig(tracking_target="127.0.0.1:1"), data_plane) as address:
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await tracking_pb2_grpc.TrackingServiceStub(channel).GetRun(pb.GetRunRequest(run_id="r"))
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="mlgrid.v1.TrackingService"))
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE and "tracking service at 127.0.0.1:1" in error.value.details()
    assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_health_answers_for_each_routed_service(gateway):
    health = health_pb2_grpc.HealthStub(gateway["channel"])

    async def status(name):
        return (await health.Check(health_pb2.HealthCheckRequest(service=name))).status

    assert await status("") == health_pb2.HealthCheckResponse.SERVING
    assert await status("mlgrid.v1.TrackingService") == health_pb2.HealthCheckResponse.SERVING
    assert await status("mlgrid.v1.ModelRegistryService") == health_pb2.HealthCheckResponse.NOT_SERVING
