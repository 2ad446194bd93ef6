"""Experiments through the stock mlflow client: create, get, get by name, search (filter, order,
pages, view types), rename, delete, restore, tags."""
import mlflow
import pytest
from conftest import unique
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException


def test_create_get_and_get_by_name(client):
    name = unique()
    experiment_id = client.create_experiment(name, tags={"team": "vision", "empty": ""})
    experiment = client.get_experiment(experiment_id)
    assert (experiment.experiment_id, experiment.name, experiment.lifecycle_stage) == (experiment_id, name, "active")
    assert experiment.tags == {"team": "vision", "empty": ""}
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment_id}"
    assert experiment.creation_time > 0 and experiment.last_update_time >= experiment.creation_time
    assert client.get_experiment_by_name(name).experiment_id == experiment_id
    assert client.get_experiment_by_name(unique("missing")) is None


def test_a_duplicate_name_and_a_missing_experiment_are_mlflow_errors(client):
    name = unique()
    client.create_experiment(name)
    with pytest.raises(MlflowException) as raised:
        client.create_experiment(name)
    assert raised.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as raised:
        client.get_experiment("987654321")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_fluent_set_experiment_creates_it_once(client):
    name = unique()
    created = mlflow.set_experiment(name)
    assert mlflow.set_experiment(name).experiment_id == created.experiment_id


def test_search_filter_order_and_pages(client):
    prefix = unique("search")
    ids = [client.create_experiment(f"{prefix}-{i}", tags={"i": str(i)}) for i in range(5)]
    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [e.experiment_id for e in found] == ids[::-1]
    assert [e.name for e in client.search_experiments(filter_string=f"name LIKE '{prefix}-%' AND tags.i = '3'")] == [f"{prefix}-3"]

    first = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name ASC"], max_results=2)
    assert [e.experiment_id for e in first] == ids[:2] and first.token
    rest = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name ASC"], max_results=10, page_token=first.token)
    assert [e.experiment_id for e in rest] == ids[2:] and not rest.token
    assert {e.experiment_id for e in mlflow.search_experiments(filter_string=f"name LIKE '{prefix}-%'")} == set(ids)


def test_rename_delete_restore_and_view_types(client):
    name, new_name = unique(), unique("renamed")
    experiment_id = client.create_experiment(name)
    client.rename_experiment(experiment_id, new_name)
    assert client.get_experiment(experiment_id).name == new_name

    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    search = f"name = '{new_name}'"
    assert client.search_experiments(filter_string=search) == []
    assert [e.experiment_id for e in client.search_experiments(ViewType.DELETED_ONLY, filter_string=search)] == [experiment_id]
    assert [e.experiment_id for e in client.search_experiments(ViewType.ALL, filter_string=search)] == [experiment_id]

    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"
    assert [e.experiment_id for e in client.search_experiments(filter_string=search)] == [experiment_id]


def test_experiment_tags(client):
    experiment_id = client.create_experiment(unique())
    client.set_experiment_tag(experiment_id, "owner", "ada")
    client.set_experiment_tag(experiment_id, "stage", "dev")
    client.delete_experiment_tag(experiment_id, "stage")
    assert client.get_experiment(experiment_id).tags == {"owner": "ada"}
    mlflow.set_experiment(experiment_id=experiment_id)
    mlflow.set_experiment_tags({"a": "1", "b": "2"})
    assert client.get_experiment(experiment_id).tags == {"owner": "ada", "a": "1", "b": "2"}
