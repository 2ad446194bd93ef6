"""A real `mlgrid server` process, reached over its gRPC port by the client, the CLI and grpc tools."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import grpc
import pytest
from conftest import free_port, unique, wait_for_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

import mlgrid
from mlgrid.exceptions import MlgridException
from mlgrid.entities import Metric
from mlgrid.v1 import tracking_pb2 as pb
from mlgrid.v1 import tracking_pb2_grpc


def test_quickstart_from_the_readme(server):
    mlgrid.set_tracking_uri(server["uri"])
    mlgrid.set_experiment("mnist")
    with mlgrid.start_run(run_name="baseline") as run:
        mlgrid.log_params({"lr": 0.01, "batch_size": 64})
        for step in range(1000):
            mlgrid.log_metric("loss", 1 / (step + 1), step=step)
        mlgrid.log_metrics({"acc": 0.9, "f1": 0.8}, step=999)
        mlgrid.set_tag("stage", "dev")

    client = mlgrid.MlgridClient(server["uri"])
    stored = client.get_run(run.info.run_id)
    assert stored.info.status == "FINISHED" and stored.info.run_name == "baseline" and stored.info.end_time
    assert stored.data.params == {"lr": "0.01", "batch_size": "64"}
    assert stored.data.metrics == {"loss": 1 / 1000, "acc": 0.9, "f1": 0.8}
    assert stored.data.tags["stage"] == "dev" and stored.data.tags["mlflow.user"]
    assert stored.data.tags["mlflow.source.name"]
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(1000))
    assert [m.value for m in history] == [1 / (s + 1) for s in range(1000)]
    assert client.get_experiment_by_name("mnist").experiment_id == stored.info.experiment_id


def test_failed_block_marks_run_failed(server):
    mlgrid.set_tracking_uri(server["uri"])
    mlgrid.set_experiment(unique())
    with pytest.raises(ZeroDivisionError):
        with mlgrid.start_run() as run:
            mlgrid.log_metric("x", 1.0)
            1 / 0
    stored = mlgrid.MlgridClient(server["uri"]).get_run(run.info.run_id)
    assert stored.info.status == "FAILED" and stored.data.metrics == {"x": 1.0}


def test_errors_reach_the_client_with_their_status(server):
    client = mlgrid.MlgridClient(server["uri"])
    with pytest.raises(MlgridException) as err:
        client.get_run("0" * 32)
    assert err.value.code == grpc.StatusCode.NOT_FOUND and "does not exist" in err.value.message
    run = client.create_run(client.create_experiment(unique()))
    client.log_param(run.info.run_id, "lr", "0.1")
    with pytest.raises(MlgridException) as err:
        client.log_param(run.info.run_id, "lr", "0.2")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "immutable" in err.value.message
    with pytest.raises(MlgridException) as err:
        client.search_runs([run.info.experiment_id], "metrics.loss >> 1")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.1"}


def test_background_logging_error_surfaces(server):
    mlgrid.set_tracking_uri(server["uri"])
    mlgrid.set_experiment(unique())
    client = mlgrid.MlgridClient(server["uri"])
    run = mlgrid.start_run()
    client.delete_run(run.info.run_id)
    mlgrid.log_metric("loss", 1.0)
    with pytest.raises(MlgridException) as err:
        mlgrid.flush()
    assert "deleted" in err.value.message
    client.restore_run(run.info.run_id)
    mlgrid.end_run()


def test_health_reflection_and_metrics(server):
    channel = grpc.insecure_channel(server["uri"].removeprefix("grpc://"))
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "mlgrid.v1.TrackingService"):
        assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    (response,) = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in response.list_services_response.service}
    assert {"mlgrid.v1.TrackingService", "grpc.health.v1.Health"} <= names
    mlgrid.MlgridClient(server["uri"]).search_experiments()
    body = urllib.request.urlopen(f"http://127.0.0.1:{server['http_port']}/metrics", timeout=5).read().decode()
    assert 'mlgrid_grpc_requests_total{code="OK",method="SearchExperiments",service="mlgrid.v1.TrackingService"}' in body
    assert "mlgrid_grpc_request_duration_seconds_bucket" in body


def cli(server, *args):
    result = subprocess.run(
        [sys.executable, "-m", "mlgrid.cli.main", *args], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, MLGRID_TRACKING_URI=server["uri"]),
    )
    return result


def test_cli(server):
    name = unique()
    created = cli(server, "experiments", "create", "-n", name)
    assert created.returncode == 0, created.stderr
    experiment_id = created.stdout.strip().split()[-1]
    assert name in cli(server, "experiments", "list").stdout
    run = mlgrid.MlgridClient(server["uri"]).create_run(experiment_id, run_name="from-cli-test")
    listed = cli(server, "runs", "list", "--experiment-id", experiment_id)
    assert run.info.run_id in listed.stdout and "from-cli-test" in listed.stdout
    described = json.loads(cli(server, "runs", "describe", "--run-id", run.info.run_id).stdout)
    assert described["info"]["run_id"] == run.info.run_id
    missing = cli(server, "runs", "describe", "--run-id", "0" * 32)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr and "Traceback" not in missing.stderr


def start_server(tmp_path, db_path):
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlgrid.cli.main", "server", "--host", "127.0.0.1", "--grpc-port", str(port),
         "--port", str(free_port()), "--backend-store-uri", f"sqlite:///{db_path}", "--artifacts-destination", str(tmp_path / "a")],
        cwd=tmp_path, stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )
    wait_for_port(port, proc, log)
    return proc, f"grpc://127.0.0.1:{port}"


def test_graceful_shutdown_finishes_in_flight_stream(tmp_path):
    db_path = tmp_path / "mlgrid.db"
    proc, uri = start_server(tmp_path, db_path)
    client = mlgrid.MlgridClient(uri)
    run_id = client.create_run(client.create_experiment("shutdown")).info.run_id
    first_sent = threading.Event()

    def slow_stream():
        for b in range(10):
            steps = list(range(b * 100, (b + 1) * 100))
            yield pb.IngestBatch(batch_id=uuid.uuid4().hex, run_id=run_id,
                                 metrics=[pb.MetricSeries(key="m", steps=steps, timestamps=steps, values=steps)])
            first_sent.set()
            time.sleep(0.1)

    result = {}
    sender = threading.Thread(target=lambda: result.setdefault("summary", client.ingest(slow_stream())))
    sender.start()
    first_sent.wait(10)
    proc.send_signal(signal.SIGTERM)
    sender.join(30)
    assert proc.wait(30) == 0
    assert result["summary"].metrics == 1000  # acknowledged...
    proc, uri = start_server(tmp_path, db_path)
    try:
        assert len(mlgrid.MlgridClient(uri).get_metric_history(run_id, "m")) == 1000  # ...and stored
    finally:
        proc.terminate()
        proc.wait(30)


def tracking_service(db_path, **env):
    port = free_port()
    environment = dict(os.environ, MLGRID_BACKEND_STORE_URI=f"sqlite:///{db_path}", MLGRID_HOST="127.0.0.1",
                       MLGRID_GRPC_PORT=str(port), MLGRID_METRICS_PORT="0", **env)
    return subprocess.Popen([sys.executable, "-m", "services.tracking"], env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), port


def test_service_refuses_missing_or_stale_schema_until_db_upgrade(tmp_path):
    db_path = tmp_path / "tracking.db"
    sqlite3.connect(db_path).close()
    proc, _ = tracking_service(db_path, MLGRID_DB_AUTO_INIT="false")
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "no mlgrid schema" in output and "mlgrid db upgrade" in output

    upgrade = subprocess.run([sys.executable, "-m", "mlgrid.cli.main", "db", "upgrade", f"sqlite:///{db_path}"],
                             capture_output=True, text=True, timeout=60)
    assert upgrade.returncode == 0, upgrade.stderr
    proc, port = tracking_service(db_path, MLGRID_DB_AUTO_INIT="false")
    try:
        wait_for_port(port, proc, os.devnull)
        assert mlgrid.MlgridClient(f"grpc://127.0.0.1:{port}").get_experiment("0").name == "Default"
    finally:
        proc.terminate()
        proc.wait(30)

    with sqlite3.connect(db_path) as db:  # a schema this server does not know, e.g. from another version
        db.execute("UPDATE alembic_version SET version_num = 'ffff'")
    proc, _ = tracking_service(db_path)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "revision ffff" in output


def test_service_says_when_the_database_cannot_be_reached():
    port = free_port()
    env = dict(os.environ, MLGRID_BACKEND_STORE_URI=f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere",
               MLGRID_GRPC_PORT=str(port), MLGRID_METRICS_PORT="0")
    result = subprocess.run([sys.executable, "-m", "services.tracking"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "cannot use the backend store" in result.stderr and "MLGRID_BACKEND_STORE_URI" in result.stderr
    assert "Traceback" not in result.stderr


def test_iter_runs_streams_all_pages_in_order(server):
    client = mlgrid.MlgridClient(server["uri"])
    experiment_id = client.create_experiment(unique())
    created = [client.create_run(experiment_id, start_time=1000 + i).info.run_id for i in range(25)]
    for run_id in created[::2]:
        client.log_metric(run_id, "score", 1.0)
    streamed = [r.info.run_id for r in client.iter_runs(experiment_id, page_size=10)]
    assert streamed == created[::-1]  # default order: newest first
    scored = [r.info.run_id for r in client.iter_runs(experiment_id, "metrics.score = 1", page_size=4)]
    assert scored == created[::2][::-1]
    assert list(client.iter_runs(experiment_id, "metrics.score > 5")) == []


def test_cli_model_registry(server):
    name = unique()
    run = mlgrid.MlgridClient(server["uri"]).create_run("0")
    for expected_version in ("1", "2"):
        registered = cli(server, "models", "register", "-m", f"runs:/{run.info.run_id}/model", "-n", name)
        assert registered.returncode == 0, registered.stderr
        assert registered.stdout.strip() == f"Registered {name} version {expected_version} from runs:/{run.info.run_id}/model"
    assert cli(server, "model-versions", "set-alias", "-n", name, "-a", "champion", "-v", "1").returncode == 0

    listed = cli(server, "registered-models", "list", "--filter", f"name = '{name}'").stdout.splitlines()
    assert listed[0].split() == ["Name", "Latest", "Versions", "Aliases", "Last", "Updated"]
    assert len(listed) == 2 and listed[1].startswith(name) and "None: 2" in listed[1] and "champion: 1" in listed[1]
    described = json.loads(cli(server, "registered-models", "describe", "-n", name).stdout)
    assert described["aliases"] == {"champion": "1"} and [v["version"] for v in described["latest_versions"]] == ["2"]
    versions = cli(server, "model-versions", "list", "-n", name).stdout.splitlines()
    assert [line.split()[0] for line in versions[1:]] == ["2", "1"] and "champion" in versions[2]
    version = mlgrid.MlgridClient(server["uri"]).get_model_version(name, "2")
    assert version.run_id == run.info.run_id and version.source == f"runs:/{run.info.run_id}/model"

    assert cli(server, "model-versions", "delete-alias", "-n", name, "-a", "champion").returncode == 0
    assert json.loads(cli(server, "registered-models", "describe", "-n", name).stdout)["aliases"] == {}
    for args, code in [(("model-versions", "list", "-n", name + "-missing"), "NOT_FOUND"),
                       (("model-versions", "set-alias", "-n", name, "-a", "latest", "-v", "1"), "INVALID_ARGUMENT"),
                       (("models", "register", "-m", "/etc/passwd", "-n", name), "INVALID_ARGUMENT")]:
        refused = cli(server, *args)
        assert refused.returncode == 1 and code in refused.stderr and "Traceback" not in refused.stderr
    assert [line.split()[0] for line in cli(server, "model-versions", "list", "-n", name).stdout.splitlines()[1:]] == ["2", "1"]


def test_downsampled_history_over_grpc(server):
    client = mlgrid.MlgridClient(server["uri"])
    run = client.create_run(client.create_experiment(unique()))
    for first in (0, 1000):
        points = [Metric("m", 9.0 if step == 1234 else 0.0, 0, step) for step in range(first, first + 1000)]
        client.log_batch(run.info.run_id, metrics=points)
    with grpc.insecure_channel(server["uri"].removeprefix("grpc://")) as channel:
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        reply = stub.GetMetricHistoryBulkInterval(
            pb.GetMetricHistoryBulkIntervalRequest(run_ids=[run.info.run_id], metric_key="m", max_results=100)
        )
        assert 0 < len(reply.metrics) <= 100 and {m.run_id for m in reply.metrics} == {run.info.run_id}
        assert [m.step for m in reply.metrics if m.value == 9.0] == [1234]
        zoomed = stub.GetMetricHistoryBulkInterval(
            pb.GetMetricHistoryBulkIntervalRequest(run_ids=[run.info.run_id], metric_key="m", start_step=10, end_step=59)
        )
        assert [m.step for m in zoomed.metrics] == list(range(10, 60))
        with pytest.raises(grpc.RpcError) as error:
            stub.GetMetricHistoryBulkInterval(pb.GetMetricHistoryBulkIntervalRequest(run_ids=[run.info.run_id], metric_key="m", start_step=1))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
