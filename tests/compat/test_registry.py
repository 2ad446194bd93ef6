"""The model registry through the stock mlflow client: registered models, versions from runs:/
sources, latest versions, stages, aliases, tags, search, rename and delete."""
import pytest
from conftest import unique
from mlflow.exceptions import MlflowException


@pytest.fixture
def run_id(client):
    return client.create_run(client.create_experiment(unique())).info.run_id


def test_registered_model_lifecycle(client):
    name = unique("model")
    created = client.create_registered_model(name, tags={"team": "risk"}, description="fraud scores")
    assert (created.name, created.description, created.tags) == (name, "fraud scores", {"team": "risk"})
    client.update_registered_model(name, description="v2")
    client.set_registered_model_tag(name, "stage", "dev")
    client.delete_registered_model_tag(name, "team")
    model = client.get_registered_model(name)
    assert (model.description, model.tags) == ("v2", {"stage": "dev"})
    assert model.creation_timestamp <= model.last_updated_timestamp

    new_name = unique("renamed")
    client.rename_registered_model(name, new_name)
    assert client.get_registered_model(new_name).name == new_name
    client.delete_registered_model(new_name)
    with pytest.raises(MlflowException) as raised:
        client.get_registered_model(new_name)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_a_duplicate_model_is_resource_already_exists(client):
    name = unique("model")
    client.create_registered_model(name)
    with pytest.raises(MlflowException) as raised:
        client.create_registered_model(name)
    assert raised.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_versions_stages_and_latest(client, run_id):
    name = unique("model")
    client.create_registered_model(name)
    source = f"runs:/{run_id}/model"
    versions = [client.create_model_version(name, source, run_id=run_id, tags={"n": str(i)}, description=f"d{i}") for i in range(3)]
    assert [v.version for v in versions] == ["1", "2", "3"]
    assert (versions[0].source, versions[0].run_id, versions[0].status, versions[0].tags) == (source, run_id, "READY", {"n": "0"})

    client.transition_model_version_stage(name, "1", "Production")
    client.transition_model_version_stage(name, "2", "Staging")
    moved = client.transition_model_version_stage(name, "3", "Production", archive_existing_versions=True)
    assert moved.current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Archived"
    latest = {v.current_stage: v.version for v in client.get_latest_versions(name)}
    assert latest == {"Production": "3", "Staging": "2", "Archived": "1"}
    assert [v.version for v in client.get_latest_versions(name, stages=["Staging"])] == ["2"]

    client.update_model_version(name, "2", description="better")
    client.set_model_version_tag(name, "2", "validated", "yes")
    client.delete_model_version_tag(name, "2", "n")
    version = client.get_model_version(name, "2")
    assert (version.description, version.tags) == ("better", {"validated": "yes"})
    assert client.get_model_version_download_uri(name, "2") == source
    client.delete_model_version(name, "1")
    assert [v.version for v in client.search_model_versions(f"name = '{name}'")] == ["3", "2"]


def test_aliases(client, run_id):
    name = unique("model")
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", "1")
    by_alias = client.get_model_version_by_alias(name, "champion")
    assert (by_alias.version, by_alias.aliases) == ("1", ["champion"])
    assert client.get_registered_model(name).aliases == {"champion": "1"}
    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(MlflowException) as raised:
        client.get_model_version_by_alias(name, "champion")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_a_version_of_a_missing_run_is_refused(client):
    name = unique("model")
    client.create_registered_model(name)
    with pytest.raises(MlflowException) as raised:
        client.create_model_version(name, f"runs:/{'0' * 32}/model", run_id="0" * 32)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_search(client, run_id):
    prefix = unique("search")
    names = [f"{prefix}-{i}" for i in range(3)]
    for i, name in enumerate(names):
        client.create_registered_model(name, tags={"i": str(i)})
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    found = client.search_registered_models(f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [m.name for m in found] == names[::-1]
    assert [m.latest_versions[0].version for m in found] == ["1", "1", "1"]
    assert [m.name for m in client.search_registered_models(f"tags.i = '1' AND name LIKE '{prefix}%'")] == [names[1]]
    first = client.search_registered_models(f"name LIKE '{prefix}-%'", max_results=2)
    rest = client.search_registered_models(f"name LIKE '{prefix}-%'", max_results=2, page_token=first.token)
    assert [m.name for m in first + rest] == names and not rest.token
    assert {v.name for v in client.search_model_versions(f"run_id = '{run_id}'")} == set(names)
