"""The multi-process topology of `make up` (deploy/local/topology.py): every service its own process on
PostgreSQL and S3, the gateway in front, configured as the chart configures the pods. A training job
through the gateway, a model registered and served, metrics from every service, and a service killed
and restarted mid-run without losing acknowledged data."""
import json
import os
import re
import signal
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
from conftest import REPO, pg_execute, unique
from sqlalchemy.engine import make_url

import mlgrid
from mlgrid.exceptions import MlgridException
from mlgrid.inference.v2 import grpc_predict_v2_pb2 as oip
from mlgrid.inference.v2 import grpc_predict_v2_pb2_grpc as oip_grpc
from mlgrid.v1 import tracking_pb2, tracking_pb2_grpc

sys.path.insert(0, os.path.join(REPO, "deploy", "local"))
from topology import Topology  # noqa: E402


# One topology for the module: its tests run in one xdist worker (make test passes --dist loadgroup).
pytestmark = pytest.mark.xdist_group("topology")


@pytest.fixture(scope="module")
def topology(pg_url, s3_endpoint, tmp_path_factory):
    admin = make_url(pg_url).set(drivername="postgresql")
    name = f"mlgrid_topology_{uuid.uuid4().hex[:8]}"
    database_url = admin.set(database=name).render_as_string(hide_password=False)
    s3 = {"url": s3_endpoint["url"], "access_key": s3_endpoint["access_key"], "secret_key": s3_endpoint["secret_key"], "bucket": s3_endpoint["bucket"]}
    topology = Topology(tmp_path_factory.mktemp("topology"), free_ports=True)
    topology.plan(database_url, s3)
    try:
        topology.up()
        yield topology
    finally:
        topology.down()
        pg_execute(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def gateway_uri(topology: Topology) -> str:
    return f"grpc://{topology.processes['gateway'].grpc_target}"


def gateway_http(topology: Topology) -> str:
    return f"http://127.0.0.1:{topology.processes['gateway'].http_port}"


def test_a_training_job_through_the_gateway(topology, tmp_path):
    client = mlgrid.MlgridClient(gateway_uri(topology))
    experiment_id = client.create_experiment(unique("topology"))
    run = client.create_run(experiment_id, run_name="train")
    run_id = run.info.run_id
    client.log_batch(run_id, metrics=[mlgrid.entities.Metric("loss", 1.0 / (step + 1), 1_700_000_000_000 + step, step) for step in range(1500)],
                     params=[mlgrid.entities.Param("lr", "0.01")])
    (tmp_path / "weights.bin").write_bytes(os.urandom(3 << 20))
    client.log_artifact(run_id, str(tmp_path / "weights.bin"), "model")
    client.set_terminated(run_id)

    stored = client.get_run(run_id)
    assert stored.data.params == {"lr": "0.01"} and stored.info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "loss")) == 1500
    client.download_artifacts(run_id, "model/weights.bin", str(tmp_path / "back"))
    assert (tmp_path / "back" / "model" / "weights.bin").read_bytes() == (tmp_path / "weights.bin").read_bytes()


def test_the_stock_mlflow_client_through_the_gateway(topology, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    mlflow.set_tracking_uri(gateway_http(topology))
    try:
        mlflow.set_experiment(unique("mlflow-topology"))
        (tmp_path / "notes.txt").write_text("through every pod")
        with mlflow.start_run() as run:
            mlflow.log_param("optimizer", "adam")
            for step in range(5):
                mlflow.log_metric("acc", step / 5, step=step)
            mlflow.log_artifact(str(tmp_path / "notes.txt"))
        stored = mlflow.get_run(run.info.run_id)
        assert stored.data.params == {"optimizer": "adam"} and stored.data.metrics == {"acc": 0.8}
        assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes.txt") == "through every pod"
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def served(topology):
    """An iris model trained, logged and registered through the gateway, @champion served by its own process."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    name = unique("topology-iris")
    mlgrid.set_tracking_uri(gateway_uri(topology))
    mlgrid.set_experiment(unique("topology-models"))
    with mlgrid.start_run():
        info = mlgrid.sklearn.log_model(model, name="model", input_example=x.head(2), registered_model_name=name)
    mlgrid.MlgridClient(gateway_uri(topology)).set_registered_model_alias(name, "champion", info.registered_model_version)

    serving = topology.add_serving(f"iris=models:/{name}@champion")
    topology.start("serving", timeout=120)
    topology.stop("gateway")
    topology.start("gateway")  # now with its route to serving
    return {"model": model, "rows": x.head(3), "serving": serving}


def test_a_registered_model_served(topology, served):
    model, rows = served["model"], served["rows"]
    body = json.dumps({"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}})
    request = urllib.request.Request(f"http://127.0.0.1:{served['serving'].http_port}/invocations", body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert json.loads(response.read()) == {"predictions": model.predict(rows).tolist()}

    with grpc.insecure_channel(topology.processes["gateway"].grpc_target) as channel:  # OIP through the gateway
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        inputs = [
            oip.ModelInferRequest.InferInputTensor(name=column, datatype="FP64", shape=[3], contents=oip.InferTensorContents(fp64_contents=rows[column].tolist()))
            for column in rows.columns
        ]
        response = stub.ModelInfer(oip.ModelInferRequest(model_name="iris", inputs=inputs), timeout=30)
    predicted = np.frombuffer(response.raw_output_contents[0], dtype=np.int64) if response.raw_output_contents else np.array(response.outputs[0].contents.int64_contents)
    assert predicted.tolist() == model.predict(rows).tolist()


def scrape(process) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{process.http_port}/metrics", timeout=10) as response:
        return response.read().decode()


def test_every_service_exports_metrics(topology, served):
    for name, process in topology.processes.items():
        assert re.search(r"^mlgrid_(grpc|http|serving)_requests_total", scrape(process), re.M), f"{name} exports no request counter"


def test_the_dashboard_queries_only_metrics_the_services_export(topology, served):
    dashboard = json.loads((Path(REPO) / "deploy/helm/mlgrid/dashboards/mlgrid.json").read_text())
    queried = set(re.findall(r"\b(mlgrid_[a-z0-9_]+)", json.dumps(dashboard)))
    exported = set()
    for process in topology.processes.values():
        exported |= set(re.findall(r"^# TYPE (mlgrid_[a-z0-9_]+)", scrape(process), re.M))
    families = {re.sub(r"_(bucket|sum|count|total|created)$", "", name) for name in exported} | exported
    assert queried and {re.sub(r"_(bucket|sum|count)$", "", name) for name in queried} <= families, queried - families


def test_a_killed_service_comes_back_without_losing_acknowledged_data(topology):
    client = mlgrid.MlgridClient(gateway_uri(topology))
    run_id = client.create_run(client.create_experiment(unique("chaos"))).info.run_id
    acknowledged = 0
    for step in range(200):
        client.log_metric(run_id, "before", float(step), step=step)
        acknowledged += 1

    topology.stop("tracking", sig=signal.SIGKILL)
    with grpc.insecure_channel(topology.processes["gateway"].grpc_target) as channel:
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.LogMetric(tracking_pb2.LogMetricRequest(run_id=run_id, key="during", value=1.0), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "tracking" in refused.value.details()

    topology.start("tracking")
    deadline = time.monotonic() + 10  # the gateway reconnects to a restarted backend within about a second
    while True:
        try:
            client.log_metric(run_id, "after", 1.0, step=0)
            break
        except MlgridException as error:
            assert error.code == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, error
            time.sleep(0.2)
    history = client.get_metric_history(run_id, "before")
    assert [point.step for point in history] == list(range(acknowledged))
    assert [point.key for point in client.get_metric_history(run_id, "after")] == ["after"]
