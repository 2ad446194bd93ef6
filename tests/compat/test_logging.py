"""Params, metrics, tags and log_batch through the stock mlflow client."""
import math

import mlflow
import pytest
from conftest import unique
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException


@pytest.fixture
def run_id(client):
    return client.create_run(client.create_experiment(unique())).info.run_id


def test_fluent_logging(client):
    mlflow.set_experiment(unique())
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"batch_size": 64, "optimizer": "adam"})
        for step in range(3):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=2)
        mlflow.set_tag("stage", "dev")
        mlflow.set_tags({"a": "1", "b": "2"})
    data = client.get_run(run.info.run_id).data
    assert data.params == {"lr": "0.01", "batch_size": "64", "optimizer": "adam"}
    assert data.metrics == {"loss": pytest.approx(1 / 3), "acc": 0.9, "f1": 0.8}
    assert {k: data.tags[k] for k in ("stage", "a", "b")} == {"stage": "dev", "a": "1", "b": "2"}


def test_metric_values_timestamps_and_steps_round_trip(client, run_id):
    values = {"zero": 0.0, "negative": -1.5, "big": 1e300, "nan": math.nan, "inf": math.inf, "minus_inf": -math.inf}
    for key, value in values.items():
        client.log_metric(run_id, key, value, timestamp=1_700_000_000_123, step=7)
    metrics = client.get_run(run_id).data.metrics
    assert math.isnan(metrics.pop("nan"))
    assert metrics == {k: v for k, v in values.items() if k != "nan"}
    [point] = client.get_metric_history(run_id, "big")
    assert (point.key, point.value, point.timestamp, point.step) == ("big", 1e300, 1_700_000_000_123, 7)


def test_log_batch(client, run_id):
    metrics = [Metric("m", i / 10, 1_700_000_000_000 + i, i) for i in range(1000)]
    client.log_batch(run_id, metrics=metrics, params=[Param(f"p{i}", str(i)) for i in range(100)],
                     tags=[RunTag("t", "v")], synchronous=True)
    run = client.get_run(run_id)
    assert run.data.metrics == {"m": 99.9}
    assert len(run.data.params) == 100 and run.data.params["p42"] == "42"
    assert run.data.tags["t"] == "v"
    assert [m.step for m in client.get_metric_history(run_id, "m")] == list(range(1000))


def test_changing_a_logged_param_is_invalid_parameter_value(client, run_id):
    client.log_param(run_id, "lr", "0.1")
    client.log_param(run_id, "lr", "0.1")  # the same value again is fine
    with pytest.raises(MlflowException) as raised:
        client.log_param(run_id, "lr", "0.2")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    assert client.get_run(run_id).data.params == {"lr": "0.1"}


def test_logging_to_a_deleted_run_is_refused(client, run_id):
    client.delete_run(run_id)
    with pytest.raises(MlflowException) as raised:
        client.log_metric(run_id, "loss", 1.0)
    assert raised.value.error_code == "INVALID_STATE" and "is deleted" in raised.value.message
