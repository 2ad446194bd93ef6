"""The model registry through a real `mlgrid server`, with the client: register a run's model,
promote it, follow an alias, and watch the changes as they happen."""
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest
from conftest import free_port, unique, wait_for_port
from grpc_health.v1 import health_pb2, health_pb2_grpc

import mlgrid
from mlgrid.exceptions import MlgridException


def test_register_promote_and_resolve(server):
    client = mlgrid.MlgridClient(server["uri"])
    mlgrid.set_tracking_uri(server["uri"])
    mlgrid.set_experiment(unique())
    with mlgrid.start_run() as run:
        mlgrid.log_param("lr", 0.1)
    name = unique("model")
    model = client.create_registered_model(name, tags={"team": "risk"}, description="fraud")
    assert (model.name, model.tags, model.description) == (name, {"team": "risk"}, "fraud")
    v1 = client.create_model_version(name, f"runs:/{run.info.run_id}/model")
    v2 = client.create_model_version(name, "s3://bucket/models/fraud", tags={"k": "v"})
    assert (v1.version, v1.run_id, v1.status, v1.current_stage) == ("1", run.info.run_id, "READY", "None")
    assert (v2.version, v2.tags) == ("2", {"k": "v"})

    client.transition_model_version_stage(name, 1, "Production")
    client.transition_model_version_stage(name, 2, "Production", archive_existing_versions=True)
    assert client.get_model_version(name, 1).current_stage == "Archived"
    assert [v.version for v in client.get_latest_versions(name, ["Production"])] == ["2"]
    client.set_registered_model_alias(name, "champion", 1)
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    assert client.resolve_model_uri(f"models:/{name}/Production").version == "2"
    assert client.resolve_model_uri(f"models:/{name}@champion").version == "1"

    client.set_registered_model_tag(name, "owner", "me")
    client.delete_registered_model_tag(name, "team")
    client.set_model_version_tag(name, 2, "validated", True)
    client.delete_model_version_tag(name, 2, "k")
    assert client.get_model_version(name, 2).tags == {"validated": "True"}
    assert client.update_model_version(name, 2, "better").description == "better"
    assert client.update_registered_model(name, "new").description == "new"
    found = client.search_model_versions(f"name = '{name}'")
    assert [v.version for v in found] == ["2", "1"] and found.token is None
    assert [m.name for m in client.search_registered_models(f"name = '{name}' AND tags.owner = 'me'")] == [name]
    client.delete_registered_model_alias(name, "champion")
    client.delete_model_version(name, 1)
    new_name = unique("renamed")
    assert client.rename_registered_model(name, new_name).latest_versions[0].version == "2"
    client.delete_registered_model(new_name)
    assert client.search_registered_models(f"name = '{new_name}'") == []


@pytest.mark.parametrize("call, code, words", [
    (lambda c, n: c.create_registered_model(n), grpc.StatusCode.ALREADY_EXISTS, "already exists"),
    (lambda c, n: c.get_registered_model(n + "-missing"), grpc.StatusCode.NOT_FOUND, "not found"),
    (lambda c, n: c.get_model_version(n, 5), grpc.StatusCode.NOT_FOUND, "no version 5"),
    (lambda c, n: c.transition_model_version_stage(n, 1, "prod"), grpc.StatusCode.INVALID_ARGUMENT, "Staging"),
    (lambda c, n: c.set_registered_model_alias(n, "latest", 1), grpc.StatusCode.INVALID_ARGUMENT, "reserved"),
    (lambda c, n: c.create_model_version(n, "file:///etc/passwd"), grpc.StatusCode.INVALID_ARGUMENT, "source"),
])
def test_errors_are_statuses_with_messages(server, call, code, words):
    client = mlgrid.MlgridClient(server["uri"])
    name = unique("model")
    client.create_registered_model(name)
    client.create_model_version(name, "s3://bucket/m")
    with pytest.raises(MlgridException) as err:
        call(client, name)
    assert err.value.code == code and words in err.value.message
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["1"]


def test_watch_events_live_and_resumed(server):
    client = mlgrid.MlgridClient(server["uri"])
    name = unique("watched")
    received: queue.Queue = queue.Queue()
    events = client.watch_registry_events(0)

    def consume():
        for event in events:
            if event.name == name:
                received.put(event)

    threading.Thread(target=consume, daemon=True).start()
    client.create_registered_model(name)
    client.create_model_version(name, "s3://bucket/m")
    created = received.get(timeout=10)
    version = received.get(timeout=10)
    assert (created.type, version.type, version.version) == ("REGISTERED_MODEL_CREATED", "MODEL_VERSION_CREATED", "1")
    events.close()

    client.set_registered_model_alias(name, "champion", 1)  # while nobody watches
    resumed = client.watch_registry_events(version.event_id)
    alias_set = next(resumed)
    resumed.close()
    assert (alias_set.type, alias_set.details, alias_set.event_id) == ("ALIAS_SET", {"alias": "champion"}, version.event_id + 1)


def test_registry_alone_ends_watches_when_stopped(tmp_path):
    """`python -m services.registry` on its own: health, a watch, and a SIGTERM that ends the
    watch with UNAVAILABLE at once instead of waiting out the shutdown grace period."""
    port = free_port()
    env = {**os.environ, "MLGRID_BACKEND_STORE_URI": f"sqlite:///{tmp_path}/mlgrid.db", "MLGRID_HOST": "127.0.0.1",
           "MLGRID_GRPC_PORT": str(port), "MLGRID_METRICS_PORT": "0"}
    log_path = tmp_path / "registry.log"
    proc = subprocess.Popen([sys.executable, "-m", "services.registry"], env=env, cwd=tmp_path,
                            stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log_path)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="mlgrid.v1.ModelRegistryService"), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        client = mlgrid.MlgridClient(f"grpc://127.0.0.1:{port}")
        client.create_registered_model("alone")
        events = client.watch_registry_events()
        assert next(events).name == "alone"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        with pytest.raises(MlgridException) as err:
            next(events)
        assert err.value.code == grpc.StatusCode.UNAVAILABLE and "after_event_id=1" in err.value.message
        assert proc.wait(timeout=20) == 0 and time.monotonic() - started < 10
    finally:
        proc.kill()
        proc.wait()


def test_fluent_register_model_creates_the_model_once_and_records_the_run(server):
    mlgrid.set_tracking_uri(server["uri"])
    name = unique()
    with mlgrid.start_run() as run:
        first = mlgrid.register_model(f"runs:/{run.info.run_id}/model", name)
    second = mlgrid.register_model(f"runs:/{run.info.run_id}/model", name, tags={"stage": "candidate"})
    assert (first.version, second.version) == ("1", "2")
    assert second.run_id == run.info.run_id and second.tags == {"stage": "candidate"}
    with pytest.raises(mlgrid.MlgridException, match="INVALID_ARGUMENT"):
        mlgrid.register_model("/etc/passwd", name)
    assert [v.version for v in mlgrid.MlgridClient(server["uri"]).iter_model_versions(f"name = '{name}'")] == ["2", "1"]
