"""Logged models (MLflow 3) over gRPC against a real `mlgrid server`, and the gateway's artifact
endpoints when the artifact service does not answer."""
import json
import os
import sys
import urllib.error
import urllib.request

import grpc
import pytest
from conftest import free_port, running, unique

from mlgrid.v1 import registry_pb2, registry_pb2_grpc
from mlgrid.v1 import tracking_pb2 as pb
from mlgrid.v1 import tracking_pb2_grpc


@pytest.fixture
def stubs(server):
    channel = grpc.insecure_channel(server["uri"].removeprefix("grpc://"))
    yield tracking_pb2_grpc.TrackingServiceStub(channel), registry_pb2_grpc.ModelRegistryServiceStub(channel)
    channel.close()


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code()


def test_logged_model_rpcs(stubs):
    tracking, registry = stubs
    experiment_id = tracking.CreateExperiment(pb.CreateExperimentRequest(name=unique())).experiment_id
    run_id = tracking.CreateRun(pb.CreateRunRequest(experiment_id=experiment_id)).run.info.run_id
    model = tracking.CreateLoggedModel(pb.CreateLoggedModelRequest(
        experiment_id=experiment_id, name="m", source_run_id=run_id, params=[pb.LoggedModelParameter(key="C", value="1")],
    )).model
    model_id = model.info.model_id
    assert model.info.artifact_uri == f"mlgrid-artifacts:/{experiment_id}/models/{model_id}/artifacts"

    tracking.LogOutputs(pb.LogOutputsRequest(run_id=run_id, models=[pb.ModelOutput(model_id=model_id, step=3)]))
    tracking.LogMetric(pb.LogMetricRequest(run_id=run_id, key="acc", value=0.9, step=3, model_id=model_id, dataset_name="eval"))
    tracking.SetLoggedModelTags(pb.SetLoggedModelTagsRequest(model_id=model_id, tags=[pb.LoggedModelTag(key="k", value="v")]))
    ready = tracking.FinalizeLoggedModel(pb.FinalizeLoggedModelRequest(model_id=model_id, status=pb.LOGGED_MODEL_READY)).model
    assert ready.info.status == pb.LOGGED_MODEL_READY and [t.key for t in ready.info.tags] == ["k"]
    assert [(m.key, m.step, m.dataset_name, m.run_id) for m in ready.data.metrics] == [("acc", 3, "eval", run_id)]
    run = tracking.GetRun(pb.GetRunRequest(run_id=run_id)).run
    assert [(o.model_id, o.step) for o in run.outputs.model_outputs] == [(model_id, 3)]
    found = tracking.SearchLoggedModels(pb.SearchLoggedModelsRequest(experiment_ids=[experiment_id], filter="metrics.acc > 0.5"))
    assert [m.info.model_id for m in found.models] == [model_id]

    name = unique("model")
    registry.CreateRegisteredModel(registry_pb2.CreateRegisteredModelRequest(name=name))
    version = registry.CreateModelVersion(registry_pb2.CreateModelVersionRequest(
        name=name, source=f"models:/{model_id}", model_id=model_id,
    )).model_version
    assert (version.run_id, version.model_id, version.storage_location) == (run_id, model_id, model.info.artifact_uri)
    resolved = registry.ResolveModelUri(registry_pb2.ResolveModelUriRequest(uri=f"models:/{name}/1")).model_version
    assert resolved.storage_location == model.info.artifact_uri

    missing = "m-" + "0" * 32
    assert _code(lambda: tracking.GetLoggedModel(pb.GetLoggedModelRequest(model_id=missing))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: tracking.GetLoggedModel(pb.GetLoggedModelRequest(model_id="m-x"))) == grpc.StatusCode.INVALID_ARGUMENT
    assert _code(lambda: tracking.LogOutputs(pb.LogOutputsRequest(
        run_id=run_id, models=[pb.ModelOutput(model_id=missing)],
    ))) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: tracking.FinalizeLoggedModel(pb.FinalizeLoggedModelRequest(
        model_id=model_id, status=pb.LOGGED_MODEL_PENDING,
    ))) == grpc.StatusCode.INVALID_ARGUMENT
    tracking.DeleteLoggedModel(pb.DeleteLoggedModelRequest(model_id=model_id))
    assert _code(lambda: tracking.GetLoggedModel(pb.GetLoggedModelRequest(model_id=model_id))) == grpc.StatusCode.NOT_FOUND
    assert tracking.GetLoggedModel(pb.GetLoggedModelRequest(model_id=model_id, allow_deleted=True)).model.info.model_id == model_id


@pytest.mark.parametrize("artifacts_target", ["down", "unset"])
def test_artifact_endpoints_answer_503_while_the_artifact_service_is_away(tmp_path, artifacts_target):
    grpc_port, http_port = free_port(), free_port()
    target = f"127.0.0.1:{free_port()}" if artifacts_target == "down" else ""  # nothing listens there
    env = dict(
        os.environ, MLGRID_HOST="127.0.0.1", MLGRID_METRICS_PORT="0", MLGRID_GRPC_PORT=str(grpc_port),
        MLGRID_GATEWAY_HTTP_PORT=str(http_port), MLGRID_GATEWAY_ARTIFACTS_TARGET=target,
    )
    with running([sys.executable, "-m", "services.gateway"], http_port, tmp_path, env, "gateway"):
        base = f"http://127.0.0.1:{http_port}/api/2.0/mlflow-artifacts/artifacts"
        for method, url in (("GET", f"{base}?path=0"), ("GET", f"{base}/0/a.txt"), ("PUT", f"{base}/0/a.txt"), ("DELETE", f"{base}/0/a.txt")):
            request = urllib.request.Request(url, method=method, data=b"bytes" if method == "PUT" else None)
            with pytest.raises(urllib.error.HTTPError) as raised:
                urllib.request.urlopen(request, timeout=30)
            body = json.loads(raised.value.read())
            assert (raised.value.code, body["error_code"]) == (503, "TEMPORARILY_UNAVAILABLE"), (method, url)
            assert "artifacts" in body["message"]
