"""Errors: the MlflowException the stock client raises, and the raw HTTP answers for bad requests
(unknown path, malformed JSON, wrong types, oversize bodies) and for a backend that is down, from
`python -m services.gateway` in front of the session's server."""
import os
import sys

import mlflow
import pytest
import requests
from conftest import free_port, running, unique
from mlflow.exceptions import MlflowException

API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory):
    """A gateway whose tracking backend is the session's server, whose registry backend is down (a port
    nothing listens on) and which has no artifacts backend; request bodies over 1 MB are refused."""
    http_port, grpc_port = free_port(), free_port()
    env = dict(
        os.environ, MLGRID_HOST="127.0.0.1", MLGRID_GRPC_PORT=str(grpc_port), MLGRID_METRICS_PORT="0",
        MLGRID_GATEWAY_HTTP_PORT=str(http_port), MLGRID_GATEWAY_MAX_BODY_MB="1",
        MLGRID_GATEWAY_TRACKING_TARGET=server["uri"].removeprefix("grpc://"),
        MLGRID_GATEWAY_REGISTRY_TARGET=f"127.0.0.1:{free_port()}",
    )
    workdir = tmp_path_factory.mktemp("gateway")
    with running([sys.executable, "-m", "services.gateway"], http_port, workdir, env, "gateway"):
        yield f"http://127.0.0.1:{http_port}"


def test_client_errors(client):
    with pytest.raises(MlflowException) as raised:
        client.search_runs([client.create_experiment(unique())], "metrics.acc >>> 1")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE" and "metrics.acc" in raised.value.message
    with pytest.raises(MlflowException) as raised:
        client.create_experiment("")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


def test_statuses_of_backend_errors(mlflow_server_url):
    missing = requests.get(f"{mlflow_server_url}{API}/runs/get", params={"run_id": "0" * 32})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    name = unique()
    requests.post(f"{mlflow_server_url}{API}/experiments/create", json={"name": name}).raise_for_status()
    again = requests.post(f"{mlflow_server_url}{API}/experiments/create", json={"name": name})
    assert again.status_code == 400 and again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"

    experiment_id = requests.get(f"{mlflow_server_url}{API}/experiments/get-by-name", params={"experiment_name": name}).json()["experiment"]["experiment_id"]
    run_id = requests.post(f"{mlflow_server_url}{API}/runs/create", json={"experiment_id": experiment_id}).json()["run"]["info"]["run_id"]
    requests.post(f"{mlflow_server_url}{API}/runs/delete", json={"run_id": run_id}).raise_for_status()
    deleted = requests.post(f"{mlflow_server_url}{API}/runs/log-metric", json={"run_id": run_id, "key": "m", "value": 1, "timestamp": 0})
    assert deleted.status_code == 400 and deleted.json()["error_code"] == "INVALID_STATE"  # 400: the client does not retry it


def test_unknown_path_and_wrong_method(mlflow_server_url):
    unknown = requests.get(f"{mlflow_server_url}{API}/runs/nope")
    assert unknown.status_code == 404
    assert unknown.json() == {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API endpoint GET {API}/runs/nope"}
    wrong = requests.get(f"{mlflow_server_url}{API}/runs/create")
    assert wrong.status_code == 405 and wrong.json()["error_code"] == "ENDPOINT_NOT_FOUND" and "POST" in wrong.json()["message"]


@pytest.mark.parametrize("body, field", [
    (b'{"name": ', None),
    (b'["a list"]', None),
    (b'{"name": 5}', "name"),
    (b'{"name": "x", "tags": [{"key": "k", "value": 3}]}', "tags[0].value"),
    (b'{"name": "x", "tags": "k=v"}', "tags"),
])
def test_malformed_json_and_wrong_types(mlflow_server_url, body, field):
    response = requests.post(f"{mlflow_server_url}{API}/experiments/create", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json()
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    assert f"'{field}'" in error["message"] if field else "JSON" in error["message"]


def test_wrong_types_in_query_parameters_and_numbers(mlflow_server_url):
    response = requests.get(f"{mlflow_server_url}{API}/experiments/search", params={"max_results": "many"})
    assert response.status_code == 400 and "'max_results'" in response.json()["message"]
    response = requests.post(f"{mlflow_server_url}{API}/runs/log-metric", json={"run_id": "x", "key": "m", "value": "high"})
    assert response.status_code == 400 and "'value'" in response.json()["message"]
    response = requests.post(f"{mlflow_server_url}{API}/runs/update", json={"run_id": "x", "status": "SLEEPING"})
    assert response.status_code == 400 and "RUNNING" in response.json()["message"]


def test_ajax_api_paths_and_unknown_fields(mlflow_server_url):
    name = unique()
    created = requests.post(f"{mlflow_server_url}/ajax-api/2.0/mlflow/experiments/create", json={"name": name, "some_future_field": 1})
    assert created.status_code == 200
    got = requests.get(f"{mlflow_server_url}/ajax-api/2.0/mlflow/experiments/get", params={"experiment_id": created.json()["experiment_id"]})
    assert got.json()["experiment"]["name"] == name


def test_health_and_metrics(mlflow_server_url):
    assert requests.get(f"{mlflow_server_url}/health").text == "OK"
    requests.get(f"{mlflow_server_url}{API}/experiments/get", params={"experiment_id": "0"})
    metrics = requests.get(f"{mlflow_server_url}/metrics").text
    assert "mlgrid_grpc_requests_total" in metrics
    assert 'mlgrid_http_requests_total{method="GET",route="/api/2.0/mlflow/experiments/get",status="200"}' in metrics


def test_the_gateway_serves_its_backends_over_rest(gateway):
    name = unique()
    created = requests.post(f"{gateway}{API}/experiments/create", json={"name": name})
    assert created.status_code == 200
    got = requests.get(f"{gateway}{API}/experiments/get-by-name", params={"experiment_name": name}).json()
    assert got["experiment"]["experiment_id"] == created.json()["experiment_id"]


def test_a_backend_that_is_down_is_503_and_the_rest_keeps_serving(gateway, monkeypatch):
    down = requests.get(f"{gateway}{API}/registered-models/get", params={"name": "x"})
    assert down.status_code == 503
    assert down.json()["error_code"] == "TEMPORARILY_UNAVAILABLE" and "registry service" in down.json()["message"]
    assert requests.get(f"{gateway}{API}/experiments/search").status_code == 200

    # The client retries 5xx answers (with backoff) and then reports the status, as it does against MLflow.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException) as raised:
        mlflow.MlflowClient(gateway).get_registered_model("x")
    assert "503" in raised.value.message


def test_an_oversize_body_is_413(gateway):
    response = requests.post(f"{gateway}{API}/runs/log-batch", data=b"{" + b" " * (1024 * 1024 + 1) + b"}")
    assert response.status_code == 413
    assert response.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED" and "MLGRID_GATEWAY_MAX_BODY_MB" in response.json()["message"]
    assert requests.get(f"{gateway}{API}/experiments/search").status_code == 200
