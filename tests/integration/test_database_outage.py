"""A database that goes away is an outage, not a bug: while PostgreSQL cannot be reached, every call to the
tracking service ends UNAVAILABLE (never INTERNAL), and once it is back the service answers again by itself,
without a restart. The database is cut off by a TCP proxy between the service and PostgreSQL: connections
dropped and new ones refused, as when the server is stopped or its pod is rescheduled."""
import asyncio
import time

import grpc
import pytest
from conftest import store_config, unique
from sqlalchemy.engine import make_url

from mlgrid.v1 import tracking_pb2 as pb
from mlgrid.v1 import tracking_pb2_grpc
from services.common.server import free_port, start_grpc
from services.tracking.service import open_store, tracking_service


class Cutoff:
    """A TCP proxy to PostgreSQL that can be cut (connections dropped, the port closed) and restored."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = free_port()
        self.server = None
        self.connections: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port, reuse_address=True)

    async def cut(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        for writer in list(self.connections):
            writer.transport.abort()
        self.connections.clear()

    async def _relay(self, reader, writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.connections |= {writer, upstream_writer}

        async def pipe(source, sink):
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@pytest.fixture
async def cut_off_tracking(pg_url, artifact_root, pg_store):  # pg_store: the schema is in place
    url = make_url(pg_url)
    cutoff = Cutoff(url.host, url.port or 5432)
    await cutoff.restore()
    through = url.set(port=cutoff.port).render_as_string(hide_password=False)
    config = store_config(through, artifact_root)
    store = await open_store(config)
    server, _, port = await start_grpc([await tracking_service(config, store)], "127.0.0.1", free_port())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield tracking_pb2_grpc.TrackingServiceStub(channel), cutoff
    await channel.close()
    await server.stop(None)
    await store.close()
    if cutoff.server is not None:
        cutoff.server.close()


async def test_calls_are_unavailable_while_the_database_is_cut_off_and_recover_after(cut_off_tracking):
    stub, cutoff = cut_off_tracking
    experiment = (await stub.CreateExperiment(pb.CreateExperimentRequest(name=unique()))).experiment_id
    run_id = (await stub.CreateRun(pb.CreateRunRequest(experiment_id=experiment))).run.info.run_id
    stored = 0
    for step in range(5):
        await stub.LogMetric(pb.LogMetricRequest(run_id=run_id, key="loss", value=step, step=step, timestamp=step))
        stored += 1

    await cutoff.cut()
    codes: dict[grpc.StatusCode, int] = {}
    calls = [
        lambda step: stub.LogMetric(pb.LogMetricRequest(run_id=run_id, key="loss", value=step, step=step, timestamp=step)),
        lambda step: stub.LogBatch(pb.LogBatchRequest(run_id=run_id, metrics=[pb.Metric(key="b", value=1, step=step)])),
        lambda step: stub.GetRun(pb.GetRunRequest(run_id=run_id)),
        lambda step: stub.SearchRuns(pb.SearchRunsRequest(experiment_ids=[experiment])),
        lambda step: stub.GetMetricHistory(pb.GetMetricHistoryRequest(run_id=run_id, metric_key="loss")).read(),
    ]
    for step in range(100, 120):
        for call in calls:
            try:
                await call(step)
                codes[grpc.StatusCode.OK] = codes.get(grpc.StatusCode.OK, 0) + 1
            except grpc.aio.AioRpcError as error:
                codes[error.code()] = codes.get(error.code(), 0) + 1
    assert codes == {grpc.StatusCode.UNAVAILABLE: 100}

    await cutoff.restore()
    deadline = time.monotonic() + 15
    while True:  # the pools reconnect by themselves: no restart
        try:
            await stub.LogMetric(pb.LogMetricRequest(run_id=run_id, key="loss", value=200, step=200, timestamp=200))
            stored += 1
            break
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, error
            await asyncio.sleep(0.2)
    run = await stub.GetRun(pb.GetRunRequest(run_id=run_id))
    assert run.run.info.run_id == run_id
    history = [h async for h in stub.GetMetricHistory(pb.GetMetricHistoryRequest(run_id=run_id, metric_key="loss"))]
    assert sum(len(page.steps) for page in history) == stored  # what was acknowledged, and only that


def test_rest_answers_an_outage_with_503_and_when_to_try_again():
    from services.gateway.rest import status_error

    answer = status_error(grpc.StatusCode.UNAVAILABLE, "the database does not answer")
    assert answer.status == 503 and answer.headers["Retry-After"] == "1"
    assert b'"TEMPORARILY_UNAVAILABLE"' in answer.body
