"""Runs through the stock mlflow client: start and end (fluent and client), status, get, run names,
tags, delete and restore."""
import time

import mlflow
import pytest
from conftest import unique
from mlflow.entities import RunStatus, ViewType
from mlflow.exceptions import MlflowException


@pytest.fixture
def experiment_id(client):
    return client.create_experiment(unique())


def test_fluent_run_lifecycle(client, experiment_id):
    before = int(time.time() * 1000)
    with mlflow.start_run(experiment_id=experiment_id, run_name="baseline", tags={"team": "vision"}) as run:
        assert run.info.status == "RUNNING" and run.info.run_name == "baseline"
        assert run.info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{run.info.run_id}/artifacts"
    got = client.get_run(run.info.run_id)
    assert (got.info.status, got.info.run_name, got.info.experiment_id, got.info.lifecycle_stage) == (
        "FINISHED", "baseline", experiment_id, "active")
    assert before <= got.info.start_time <= got.info.end_time
    assert got.data.tags["team"] == "vision" and got.data.tags["mlflow.runName"] == "baseline"
    assert got.data.tags["mlflow.source.type"] == "LOCAL"


def test_a_failing_block_ends_the_run_failed(client, experiment_id):
    with pytest.raises(ZeroDivisionError):
        with mlflow.start_run(experiment_id=experiment_id) as run:
            1 / 0
    assert client.get_run(run.info.run_id).info.status == "FAILED"


def test_client_create_update_and_terminate(client, experiment_id):
    run = client.create_run(experiment_id, start_time=1_700_000_000_000, tags={"k": "v"}, run_name="trial-1")
    assert (run.info.start_time, run.info.end_time, run.info.run_name) == (1_700_000_000_000, None, "trial-1")
    assert run.info.user_id
    client.update_run(run.info.run_id, name="trial-renamed")
    assert client.get_run(run.info.run_id).info.run_name == "trial-renamed"
    client.set_terminated(run.info.run_id, "KILLED", end_time=1_700_000_001_000)
    info = client.get_run(run.info.run_id).info
    assert (info.status, info.end_time) == ("KILLED", 1_700_000_001_000)
    assert RunStatus.is_terminated(RunStatus.from_string(info.status))


def test_generated_run_names_are_unique(client, experiment_id):
    names = {client.create_run(experiment_id).info.run_name for _ in range(3)}
    assert len(names) == 3 and all(names)


def test_run_tags(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    client.set_tag(run_id, "stage", "dev")
    client.set_tag(run_id, "note", "x" * 5000)
    client.delete_tag(run_id, "stage")
    tags = client.get_run(run_id).data.tags
    assert "stage" not in tags and tags["note"] == "x" * 5000
    with pytest.raises(MlflowException) as raised:
        client.delete_tag(run_id, "never-set")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_delete_and_restore(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert client.search_runs([experiment_id]) == []
    assert [r.info.run_id for r in client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)] == [run_id]
    client.restore_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "active"
    assert [r.info.run_id for r in client.search_runs([experiment_id])] == [run_id]


def test_a_missing_run_is_resource_does_not_exist(client):
    with pytest.raises(MlflowException) as raised:
        client.get_run("0" * 32)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert raised.value.get_http_status_code() == 404


def test_a_run_without_an_experiment_goes_to_the_default_one_and_nests(client, monkeypatch):
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)  # as in a fresh process
    with mlflow.start_run() as parent:
        with mlflow.start_run(nested=True) as child:
            pass
    assert parent.info.experiment_id == "0" == client.get_experiment_by_name("Default").experiment_id
    assert client.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert mlflow.last_active_run().info.run_id == parent.info.run_id
