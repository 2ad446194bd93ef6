"""The gate in the interceptor chain, on a real grpc.aio server: credentials required, the rule's permission
checked on each resource the request names (each message of a streamed request), what the caller may not
read answered as absent, no servicer code run for a refused call, the creator granted MANAGE.

The authority here is a table (the database-backed one is tested in tests/integration): these tests are
about what the chain does with its answers."""
import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import PermissionDenied, Unauthenticated
from services.common.server import Service, free_port, start_grpc
from services.identity import caller
from services.identity.access import RuleBook
from services.identity.gate import Gate, gate_for
from services.identity.model import EXPERIMENT, RUN, Identity, Permission
from services.tracking.access import RULES

TRACKING = "mlgrid.v1.TrackingService"
ALICE = Identity("alice", 1)
ADMIN = Identity("root", 2, is_admin=True)
RUN_A, RUN_B = "a" * 32, "b" * 32


class TableAuthority:
    """Credentials and permissions from dicts; counts what it is asked."""

    def __init__(self):
        self.identities = {"Bearer alice": ALICE, "Bearer root": ADMIN}
        self.permissions = {(RUN, RUN_A): Permission.EDIT, (RUN, RUN_B): Permission.READ}
        self.granted = []

    async def identify(self, credentials):
        if credentials not in self.identities:
            raise Unauthenticated("the credentials given do not verify")
        return self.identities[credentials]

    async def decide(self, credentials, identity, resource_type, resource_id, needed):
        permission = self.permissions.get((resource_type, resource_id), Permission.NO_PERMISSIONS)
        return permission.allows(needed), permission.allows(Permission.READ)

    async def grant_creator(self, identity, resource_type, resource_id):
        self.granted.append((identity.username, resource_type, resource_id))


@pytest.fixture
async def served():
    authority = TableAuthority()
    handled = []

    async def log_metric(request, context):
        handled.append(("LogMetric", request.run_id, caller.current()))
        return pb.Empty()

    async def ingest(request_iterator, context):
        async for batch in request_iterator:
            handled.append(("IngestMetrics", batch.run_id, caller.current()))
        return pb.IngestSummary(batches=1)

    async def create_experiment(request, context):
        return pb.CreateExperimentResponse(experiment_id="7")

    handlers = grpc.method_handlers_generic_handler(TRACKING, {
        "LogMetric": grpc.unary_unary_rpc_method_handler(
            log_metric, pb.LogMetricRequest.FromString, pb.Empty.SerializeToString),
        "IngestMetrics": grpc.stream_unary_rpc_method_handler(
            ingest, pb.IngestBatch.FromString, pb.IngestSummary.SerializeToString),
        "CreateExperiment": grpc.unary_unary_rpc_method_handler(
            create_experiment, pb.CreateExperimentRequest.FromString, pb.CreateExperimentResponse.SerializeToString),
        "GetRun": grpc.unary_unary_rpc_method_handler(
            log_metric, pb.GetRunRequest.FromString, pb.Empty.SerializeToString),
    })
    gate = gate_for({TRACKING: RULES}, authority)
    service = Service(TRACKING, lambda server: server.add_generic_rpc_handlers((handlers,)), gate=gate)
    server, _, port = await start_grpc([service], "127.0.0.1", free_port())
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield channel, authority, handled
    await channel.close()
    await server.stop(None)


def unary(channel, method, request_cls, response_cls):
    return channel.unary_unary(f"/{TRACKING}/{method}", request_serializer=request_cls.SerializeToString,
                               response_deserializer=response_cls.FromString)


async def call_log_metric(channel, run_id, token=None):
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    return await unary(channel, "LogMetric", pb.LogMetricRequest, pb.Empty)(
        pb.LogMetricRequest(run_id=run_id, key="loss", value=1.0), metadata=metadata)


async def test_no_credentials_is_unauthenticated_and_runs_no_servicer_code(served):
    channel, _, handled = served
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call_log_metric(channel, RUN_A)
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "MLFLOW_TRACKING_TOKEN" in error.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call_log_metric(channel, RUN_A, token="mallory")
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert handled == []


async def test_the_permission_is_checked_and_the_caller_recorded(served):
    channel, _, handled = served
    await call_log_metric(channel, RUN_A, token="alice")
    assert handled == [("LogMetric", RUN_A, ALICE)]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call_log_metric(channel, RUN_B, token="alice")  # READ only
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "EDIT" in error.value.details() and RUN_B in error.value.details()
    assert len(handled) == 1


async def test_what_the_caller_may_not_read_does_not_exist_for_them(served):
    channel, _, handled = served
    hidden = "c" * 32
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call_log_metric(channel, hidden, token="alice")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert error.value.details() == f"run {hidden} does not exist"
    await call_log_metric(channel, hidden, token="root")  # admins pass
    assert handled == [("LogMetric", hidden, ADMIN)]


async def test_every_message_of_a_streamed_request_is_checked(served):
    channel, _, handled = served
    ingest = channel.stream_unary(f"/{TRACKING}/IngestMetrics", request_serializer=pb.IngestBatch.SerializeToString,
                                  response_deserializer=pb.IngestSummary.FromString)

    async def batches(*run_ids):
        for run_id in run_ids:
            yield pb.IngestBatch(batch_id=run_id[:4], run_id=run_id)

    await ingest(batches(RUN_A, RUN_A), metadata=(("authorization", "Bearer alice"),))
    assert [h[1] for h in handled] == [RUN_A, RUN_A]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await ingest(batches(RUN_A, RUN_B), metadata=(("authorization", "Bearer alice"),))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert [h[1] for h in handled] == [RUN_A, RUN_A, RUN_A]  # the servicer never saw the batch for RUN_B


async def test_the_creator_gets_manage(served):
    channel, authority, _ = served
    create = unary(channel, "CreateExperiment", pb.CreateExperimentRequest, pb.CreateExperimentResponse)
    await create(pb.CreateExperimentRequest(name="e"), metadata=(("authorization", "Bearer alice"),))
    assert authority.granted == [("alice", EXPERIMENT, "7")]


async def test_health_is_public(served):
    channel, _, _ = served
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_method_without_a_rule_is_refused_to_everyone():
    guard = Gate(RuleBook(), TableAuthority()).guard(f"/{TRACKING}/Unclassified")
    with pytest.raises(PermissionDenied, match="no access rule"):
        await guard.first(None, None)


async def test_a_stream_refused_at_its_first_message_gets_its_status_while_the_client_still_writes(served):
    """The server waits for the client to finish sending before it ends the call: ended earlier, grpc's client
    reported INTERNAL ("Internal error from Core") for ~15% of refused uploads instead of the status sent."""
    channel, _, handled = served
    ingest = channel.stream_unary(f"/{TRACKING}/IngestMetrics", request_serializer=pb.IngestBatch.SerializeToString,
                                  response_deserializer=pb.IngestSummary.FromString)
    codes = {}
    for attempt in range(200):
        call = ingest()
        try:
            for n in range(4):
                await call.write(pb.IngestBatch(batch_id=f"{attempt}-{n}", run_id=RUN_A))
            await call.done_writing()
            await call
        except asyncio.InvalidStateError:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await call
            codes[error.value.code()] = codes.get(error.value.code(), 0) + 1
        except grpc.aio.AioRpcError as error:
            codes[error.code()] = codes.get(error.code(), 0) + 1
    assert codes == {grpc.StatusCode.UNAUTHENTICATED: 200} and handled == []
