"""The gateway in front of tracking, artifacts and registry running as separate processes:
the mlgrid client talks to the gateway's one port only; health and reflection answer for all."""
import contextlib
import os
import sys

import grpc
import pytest
from conftest import free_port, running, unique
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import mlgrid
from mlgrid.exceptions import MlgridException

SERVICES = ["mlgrid.v1.TrackingService", "mlgrid.v1.ArtifactService", "mlgrid.v1.ModelRegistryService"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """tracking, artifacts and registry as `python -m services.<name>`, and the gateway before them."""
    workdir = tmp_path_factory.mktemp("gateway")
    ports = {name: free_port() for name in ("tracking", "artifacts", "registry", "gateway")}
    common = dict(os.environ, MLGRID_HOST="127.0.0.1", MLGRID_METRICS_PORT="0", MLGRID_BACKEND_STORE_URI=f"sqlite:///{workdir}/mlgrid.db")
    envs = {
        "tracking": {},
        "artifacts": {"MLGRID_TRACKING_TARGET": f"127.0.0.1:{ports['tracking']}", "MLGRID_ARTIFACTS_DESTINATION": str(workdir / "artifacts")},
        "registry": {},
        "gateway": {
            **{f"MLGRID_GATEWAY_{name.upper()}_TARGET": f"127.0.0.1:{ports[name]}" for name in ("tracking", "artifacts", "registry")},
            "MLGRID_GATEWAY_HTTP_PORT": str(free_port()),  # not 5000, which `make dev` may hold
        },
    }
    with contextlib.ExitStack() as stack:
        for name in ("tracking", "artifacts", "registry", "gateway"):  # tracking first: it creates the schema
            env = dict(common, MLGRID_GRPC_PORT=str(ports[name]), **envs[name])
            stack.enter_context(running([sys.executable, "-m", f"services.{name}"], ports[name], workdir, env, name))
        yield {"uri": f"grpc://127.0.0.1:{ports['gateway']}", "target": f"127.0.0.1:{ports['gateway']}", "workdir": workdir}


def test_the_client_through_the_gateway_only(gateway, tmp_path):
    client = mlgrid.MlgridClient(gateway["uri"])
    experiment_id = client.create_experiment(unique())
    run_id = client.create_run(experiment_id).info.run_id
    for step in range(5):
        client.log_metric(run_id, "loss", 1 / (step + 1), step=step)
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [0, 1, 2, 3, 4]

    (tmp_path / "notes.txt").write_text("through the gateway\n" * 10_000)
    client.log_artifact(run_id, str(tmp_path / "notes.txt"), "docs")
    assert [f.path for f in client.list_artifacts(run_id, "docs")] == ["docs/notes.txt"]
    local = client.download_artifacts(run_id, "docs/notes.txt", str(tmp_path / "down"))
    assert open(local).read() == (tmp_path / "notes.txt").read_text()

    watch = client.watch_registry_events(0)  # a server stream that stays open
    name = unique("model")
    client.create_registered_model(name)
    assert client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version == "1"
    ours = (event.type for event in watch if event.name == name)
    assert [next(ours), next(ours)] == ["REGISTERED_MODEL_CREATED", "MODEL_VERSION_CREATED"]
    watch.close()

    with pytest.raises(MlgridException) as error:
        client.get_registered_model(name + "-missing")
    assert error.value.code == grpc.StatusCode.NOT_FOUND


def test_health_answers_for_each_service(gateway):
    with grpc.insecure_channel(gateway["target"]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ["", *SERVICES]:
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING, name
        serving = health.Check(health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService"), timeout=10)
        assert serving.status == health_pb2.HealthCheckResponse.NOT_SERVING  # no serving backend configured


def test_reflection_lists_the_whole_suite(gateway):
    with grpc.insecure_channel(gateway["target"]) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="mlgrid.v1.ModelRegistryService"),
        ]
        listed, described = list(stub.ServerReflectionInfo(iter(requests), timeout=10))
    names = {service.name for service in listed.list_services_response.service}
    assert names >= {*SERVICES, "inference.GRPCInferenceService", "grpc.health.v1.Health"}
    assert described.file_descriptor_response.file_descriptor_proto
