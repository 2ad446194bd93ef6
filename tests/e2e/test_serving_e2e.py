"""Serving end to end: a model logged and registered through a real `mlgrid server`, served by
`mlgrid models serve` as its own process, called over MLflow's /invocations (every input format),
OIP REST and OIP gRPC with the stock tritonclient, through an alias swap under load, with bad input."""
import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import pandas as pd
import pytest
from conftest import free_port, unique

import mlgrid
import mlgrid.sklearn
from mlgrid.exceptions import MlgridException

HERE = os.path.dirname(os.path.abspath(__file__))
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]


def iris():
    from sklearn.datasets import load_iris

    data = load_iris()
    return pd.DataFrame(data.data, columns=COLUMNS), data.target


def http(port: int, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def start_serving(tmp_path, tracking_uri: str, *model_args: str) -> dict:
    http_port, grpc_port = free_port(), free_port()
    log = open(tmp_path / f"serving-{http_port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlgrid.cli.main", "models", "serve", *model_args, "-p", str(http_port),
         "--grpc-port", str(grpc_port), "--tracking-uri", tracking_uri, "-w", "1"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLGRID_SERVING_MAX_BODY_MB": "1"},
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serving exited with {proc.returncode}:\n{open(log.name).read()}")
        try:
            if http(http_port, "GET", "/v2/health/ready")[0] == 200:
                return {"proc": proc, "http": http_port, "grpc": grpc_port, "log": log.name}
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"serving did not become ready:\n{open(log.name).read()}")


def stop_serving(serving: dict) -> None:
    serving["proc"].terminate()
    serving["proc"].wait(timeout=60)


@pytest.fixture(scope="module")
def served(server, tmp_path_factory):
    """Two versions of an iris classifier in the registry, @champion on version 1, served by alias."""
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = iris()
    mlgrid.set_tracking_uri(server["uri"])
    mlgrid.set_experiment(unique())
    name = unique("iris")
    with mlgrid.start_run():
        first = LogisticRegression(max_iter=500).fit(X, y)
        mlgrid.sklearn.log_model(first, name="model", input_example=X.head(3), registered_model_name=name)
        second = DummyClassifier(strategy="constant", constant=2).fit(X, y)
        mlgrid.sklearn.log_model(second, name="dummy", input_example=X.head(3), registered_model_name=name)
    client = mlgrid.MlgridClient(server["uri"])
    client.set_registered_model_alias(name, "champion", 1)
    serving = start_serving(tmp_path_factory.mktemp("serving"), server["uri"], "-m", f"models:/{name}@champion", "--name", "iris")
    yield {"name": name, "client": client, "first": first, "second": second, "X": X, **serving}
    stop_serving(serving)


def invoke(port: int, body, content_type="application/json"):
    status, raw = http(port, "POST", "/invocations", body if isinstance(body, bytes) else json.dumps(body).encode(), content_type)
    return status, json.loads(raw) if raw else None


def test_invocations_in_every_input_format(served):
    expected = served["first"].predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()
    frame = pd.DataFrame(ROWS, columns=COLUMNS)
    bodies = [
        {"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
        {"dataframe_records": frame.to_dict(orient="records")},
        {"instances": frame.to_dict(orient="records")},
        {"inputs": {c: frame[c].tolist() for c in COLUMNS}},
    ]
    for body in bodies:
        assert invoke(served["http"], body) == (200, {"predictions": expected}), body
    assert invoke(served["http"], frame.to_csv(index=False).encode(), "text/csv") == (200, {"predictions": expected})
    assert http(served["http"], "GET", "/ping")[0] == 200 and http(served["http"], "GET", "/health")[0] == 200
    status, version = http(served["http"], "GET", "/version")
    assert status == 200 and version.decode()[0].isdigit()


def test_bad_payloads_get_400_and_the_server_keeps_serving(served):
    port = served["http"]
    status, body = invoke(port, b"{not json")
    assert status == 400 and body["error_code"] == "BAD_REQUEST"
    status, body = invoke(port, {"dataframe_split": {"columns": COLUMNS[:3], "data": [r[:3] for r in ROWS]}})
    assert status == 400 and "petal_width" in body["message"]
    status, body = invoke(port, {"dataframe_split": {"columns": COLUMNS, "data": [["a", 1, 2, 3]]}})
    assert status == 400 and "sepal_length" in body["message"]
    status, body = invoke(port, {"instances": ROWS, "inputs": ROWS})
    assert status == 400
    status, body = http(port, "POST", "/invocations", b"<x/>", "application/xml")
    assert status == 415 and b"text/csv" in body  # as MLflow's scoring server
    assert http(port, "POST", "/invocations", b"{" + b" " * (2 * 1024 * 1024) + b"}")[0] == 413  # MLGRID_SERVING_MAX_BODY_MB=1
    status, body = http(port, "POST", "/v2/models/nope/infer", json.dumps({"inputs": []}).encode())
    assert status == 404 and "nope" in json.loads(body)["error"]
    assert invoke(port, {"dataframe_split": {"columns": COLUMNS, "data": ROWS}})[0] == 200


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_stock_oip_clients(served, protocol):
    url = f"127.0.0.1:{served['grpc'] if protocol == 'grpc' else served['http']}"
    output = subprocess.run(
        [sys.executable, os.path.join(HERE, "oip_client.py"), protocol, url, "iris", json.dumps(ROWS)],
        capture_output=True, text=True, timeout=120,
    )
    assert output.returncode == 0, output.stderr
    report = json.loads(output.stdout)
    expected = served["first"].predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()
    assert (report["live"], report["ready"], report["model_ready"]) == (True, True, True)
    assert report["tensor"] == expected and report["columns"] == expected
    assert [i["name"] for i in report["metadata"]["inputs"]] == COLUMNS
    assert "no-such-model" in report["missing_model_error"]


def test_alias_swap_under_load_loses_no_request(served):
    port, stop, results = served["http"], threading.Event(), []
    body = {"dataframe_split": {"columns": COLUMNS, "data": ROWS[:1]}}

    def fire():
        while not stop.is_set():
            results.append(invoke(port, body))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(fire)
        time.sleep(0.5)
        served["client"].set_registered_model_alias(served["name"], "champion", 2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (results and results[-1][1]["predictions"] == [2]):
            time.sleep(0.1)
        time.sleep(0.5)
        stop.set()
    statuses = {status for status, _ in results}
    answers = {tuple(body["predictions"]) for status, body in results if status == 200}
    assert statuses == {200}, [r for r in results if r[0] != 200][:3]  # zero failures through the swap
    assert answers == {(0,), (2,)} and results[-1][1]["predictions"] == [2]
    status, meta = http(port, "GET", "/v2/models/iris")
    assert json.loads(meta)["versions"] == ["2"]
    served["client"].set_registered_model_alias(served["name"], "champion", 1)


def test_a_served_model_cannot_be_deleted_and_metrics_show_batches(served):
    with pytest.raises(MlgridException) as error:
        served["client"].delete_registered_model(served["name"])
    assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION and "served by" in error.value.message
    assert served["client"].get_registered_model(served["name"]).followers
    body = {"dataframe_split": {"columns": COLUMNS, "data": ROWS[:1]}}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert {s for s, _ in pool.map(lambda _: invoke(served["http"], body), range(200))} == {200}
    metrics = http(served["http"], "GET", "/metrics")[1].decode()
    assert 'mlgrid_serving_requests_total{model="iris"' in metrics and "mlgrid_serving_model_load_seconds" in metrics
    single = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                 if line.startswith('mlgrid_serving_batch_requests_bucket{le="1.0",model="iris"}'))
    total = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                if line.startswith('mlgrid_serving_batch_requests_count{model="iris"}'))
    assert total > single  # some predict calls combined several requests


def test_several_models_at_once_one_saved_by_stock_mlflow(served, server, tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from sklearn.linear_model import LogisticRegression

    X, y = iris()
    estimator = LogisticRegression(max_iter=500, C=0.01).fit(X, y)
    mlflow.sklearn.save_model(estimator, str(tmp_path / "mlflow-model"), input_example=X.head(2), pip_requirements=[])
    serving = start_serving(
        tmp_path, server["uri"], "-m", f"stock={tmp_path / 'mlflow-model'}", "-m", f"pinned=models:/{served['name']}/2",
    )
    try:
        row = {"inputs": [{"name": c, "shape": [len(ROWS), 1], "datatype": "FP64", "data": [r[i] for r in ROWS]} for i, c in enumerate(COLUMNS)]}
        status, body = http(serving["http"], "POST", "/v2/models/stock/infer", json.dumps(row).encode())
        expected = estimator.predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()
        assert status == 200 and json.loads(body)["outputs"][0]["data"] == expected
        status, body = http(serving["http"], "POST", "/v2/models/pinned/versions/2/infer", json.dumps(row).encode())
        assert status == 200 and json.loads(body)["outputs"][0]["data"] == [2, 2, 2]
        assert http(serving["http"], "POST", "/v2/models/pinned/versions/1/infer", json.dumps(row).encode())[0] == 404
        status, body = invoke(serving["http"], {"dataframe_split": {"columns": COLUMNS, "data": ROWS}})
        assert status == 404 and "pinned" in body["message"] and "stock" in body["message"]
    finally:
        stop_serving(serving)
