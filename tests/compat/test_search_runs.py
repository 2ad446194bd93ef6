"""search_runs through the stock mlflow client: filter, order_by, pages, view types, and
mlflow.search_runs' DataFrame."""
import mlflow
import pytest
from conftest import unique
from mlflow.entities import ViewType


@pytest.fixture
def runs(client):
    """Five runs in a new experiment: metric acc = i/10, param optimizer adam for even i, tag i."""
    experiment_id = client.create_experiment(unique())
    ids = []
    for i in range(5):
        run = client.create_run(experiment_id, run_name=f"run-{i}", start_time=1_700_000_000_000 + i)
        client.log_metric(run.info.run_id, "acc", i / 10)
        client.log_param(run.info.run_id, "optimizer", "adam" if i % 2 == 0 else "sgd")
        client.set_tag(run.info.run_id, "i", str(i))
        ids.append(run.info.run_id)
    return experiment_id, ids


def test_filter_and_order(client, runs):
    experiment_id, ids = runs
    found = client.search_runs([experiment_id], "metrics.acc > 0.15 and params.optimizer = 'adam'", order_by=["metrics.acc DESC"])
    assert [r.info.run_id for r in found] == [ids[4], ids[2]]
    by_name = client.search_runs([experiment_id], "attributes.run_name LIKE 'run-%'", order_by=["attributes.start_time ASC"])
    assert [r.info.run_id for r in by_name] == ids
    assert [r.info.run_id for r in client.search_runs([experiment_id], "tags.i = '3'")] == [ids[3]]
    assert client.search_runs([experiment_id], "metrics.acc > 5") == []
    [run] = client.search_runs([experiment_id], "tags.i = '1'")
    assert run.data.metrics == {"acc": 0.1} and run.data.params == {"optimizer": "sgd"} and run.data.tags["i"] == "1"


def test_pages(client, runs):
    experiment_id, ids = runs
    first = client.search_runs([experiment_id], order_by=["metrics.acc ASC"], max_results=2)
    assert [r.info.run_id for r in first] == ids[:2] and first.token
    second = client.search_runs([experiment_id], order_by=["metrics.acc ASC"], max_results=2, page_token=first.token)
    third = client.search_runs([experiment_id], order_by=["metrics.acc ASC"], max_results=2, page_token=second.token)
    assert [r.info.run_id for r in second + third] == ids[2:] and not third.token


def test_view_types(client, runs):
    experiment_id, ids = runs
    client.delete_run(ids[0])
    assert {r.info.run_id for r in client.search_runs([experiment_id])} == set(ids[1:])
    assert [r.info.run_id for r in client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)] == [ids[0]]
    assert len(client.search_runs([experiment_id], run_view_type=ViewType.ALL)) == 5


def test_search_runs_dataframe(client, runs):
    experiment_id, ids = runs
    frame = mlflow.search_runs([experiment_id], order_by=["metrics.acc DESC"])
    assert list(frame["run_id"]) == ids[::-1]
    assert list(frame["metrics.acc"]) == [0.4, 0.3, 0.2, 0.1, 0.0]
    assert list(frame["params.optimizer"]) == ["adam", "sgd", "adam", "sgd", "adam"]
    assert list(frame["tags.mlflow.runName"]) == [f"run-{i}" for i in range(4, -1, -1)]
    assert set(frame["status"]) == {"RUNNING"}
    as_list = mlflow.search_runs([experiment_id], filter_string="params.optimizer = 'sgd'", output_format="list")
    assert {r.info.run_id for r in as_list} == {ids[1], ids[3]}
