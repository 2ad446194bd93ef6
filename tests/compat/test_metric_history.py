"""Metric history through the stock mlflow client: MLflow pages it (25,000 points a request) where
mlgrid streams it; the gateway cuts the pages."""
import gzip
import json
import urllib.request

import mlflow
from conftest import unique
from mlflow.entities import Metric


def test_history_in_step_order(client):
    run_id = client.create_run(client.create_experiment(unique())).info.run_id
    for step in (2, 0, 1):
        client.log_metric(run_id, "loss", step / 10, timestamp=1000 + step, step=step)
    history = client.get_metric_history(run_id, "loss")
    assert [(m.key, m.value, m.timestamp, m.step) for m in history] == [("loss", s / 10, 1000 + s, s) for s in range(3)]
    assert client.get_metric_history(run_id, "never-logged") == []


def test_a_history_longer_than_one_page(client):
    run_id = client.create_run(client.create_experiment(unique())).info.run_id
    points = 60_001  # MLflow's client asks for 25,000 points a page: three pages
    for start in range(0, points, 1000):
        batch = [Metric("x", float(i), 1_700_000_000_000 + i, i) for i in range(start, min(start + 1000, points))]
        client.log_batch(run_id, metrics=batch, synchronous=True)
    history = client.get_metric_history(run_id, "x")
    assert len(history) == points
    assert [m.step for m in history] == list(range(points))
    assert history[-1].value == float(points - 1)


def test_the_rest_store_pages(client, mlflow_server_url):
    run_id = client.create_run(client.create_experiment(unique())).info.run_id
    client.log_batch(run_id, metrics=[Metric("y", i, 0, i) for i in range(5)], synchronous=True)
    store = mlflow.tracking._tracking_service.utils._get_store(mlflow_server_url)
    first = store.get_metric_history(run_id, "y", max_results=2)
    assert [m.step for m in first] == [0, 1] and first.token
    second = store.get_metric_history(run_id, "y", max_results=2, page_token=first.token)
    third = store.get_metric_history(run_id, "y", max_results=2, page_token=second.token)
    assert [m.step for m in second] == [2, 3] and [m.step for m in third] == [4] and third.token is None


def test_large_answers_to_the_ui_are_gzipped(client, mlflow_server_url):
    run_id = client.create_run(client.create_experiment(unique())).info.run_id
    client.log_batch(run_id, metrics=[Metric("z", i * 0.5, 1_700_000_000_000 + i, i) for i in range(1000)], synchronous=True)
    query = f"get-history?run_id={run_id}&metric_key=z"
    for prefix, encoding in (("/ajax-api", "gzip"), ("/api", None)):
        request = urllib.request.Request(f"{mlflow_server_url}{prefix}/2.0/mlflow/metrics/{query}", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request) as response:
            assert response.headers.get("Content-Encoding") == encoding, prefix
            body = response.read()
        points = json.loads(gzip.decompress(body) if encoding else body)["metrics"]
        assert len(points) == 1000 and points[0] == {"key": "z", "value": 0.0, "timestamp": 1_700_000_000_000, "step": 0}
