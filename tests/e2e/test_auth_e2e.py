"""Identity and permissions end to end: a real `mlgrid server --auth` (default permission NO_PERMISSIONS,
caches of one second), reached by the stock mlflow client (username/password and tokens), MLflow's
AuthServiceClient, plain HTTP and the mlgrid client over gRPC."""
import base64
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import mlflow
import pandas as pd
import pytest
import requests
from conftest import ADMIN, ADMIN_PASSWORD, unique
from conftest import AUTH_CACHE_SECONDS as CACHE_SECONDS
from mlflow.exceptions import MlflowException, RestException
from mlflow.server import get_app_client

import mlgrid
from mlgrid.exceptions import MlgridException

PASSWORD = "correct horse battery staple"


@pytest.fixture
def as_user(monkeypatch, auth_server):
    """Point the stock mlflow client at the server as a given user (or token)."""
    mlflow.set_tracking_uri(auth_server["url"])

    def switch(username=None, password=None, token=None):
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        if token:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
        elif username:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", username)
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        return mlflow.MlflowClient(auth_server["url"])

    yield switch
    while mlflow.active_run():
        mlflow.end_run()


def basic(username, password) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


@pytest.fixture
def admin(as_user, auth_server):
    as_user(ADMIN, ADMIN_PASSWORD)
    return get_app_client("basic-auth", tracking_uri=auth_server["url"])


def new_user(admin) -> str:
    name = unique("user")
    admin.create_user(name, PASSWORD)
    return name


def test_no_or_wrong_credentials_are_401_with_a_challenge(auth_server):
    url = f"{auth_server['url']}/api/2.0/mlflow/experiments/search"
    for headers in ({}, basic(ADMIN, "wrong password!!"), {"Authorization": "Bearer mlg_not-a-token"}):
        answer = requests.get(url, headers=headers, timeout=10)
        assert answer.status_code == 401, headers
        assert answer.json()["error_code"] == "UNAUTHENTICATED"
        assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
    answer = requests.get(f"{auth_server['url']}/ajax-api/2.0/mlflow/experiments/search", timeout=10)
    assert answer.status_code == 401 and not answer.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(url, headers=basic(ADMIN, ADMIN_PASSWORD), timeout=10).status_code == 200
    assert requests.get(f"{auth_server['url']}/health", timeout=10).status_code == 200  # public


def test_grpc_without_credentials_is_unauthenticated(auth_server, monkeypatch):
    for name in ("MLGRID_TRACKING_TOKEN", "MLGRID_TRACKING_USERNAME", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(MlgridException) as error:
        mlgrid.MlgridClient(auth_server["grpc"]).search_experiments()
    assert error.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_the_stock_client_works_with_a_password_and_the_creator_manages(admin, as_user, tmp_path):
    alice = new_user(admin)
    client = as_user(alice, PASSWORD)
    experiment = client.create_experiment(unique())
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_param("lr", 0.1)
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        (tmp_path / "notes.txt").write_text("hello")
        mlflow.log_artifact(str(tmp_path / "notes.txt"))
    stored = client.get_run(run.info.run_id)
    assert stored.data.params == {"lr": "0.1"} and stored.data.metrics == {"loss": 1 / 3}
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["notes.txt"]
    target = client.download_artifacts(run.info.run_id, "notes.txt", str(tmp_path / "back"))
    assert Path(target).read_text() == "hello"
    assert admin.get_user_permission(alice, "experiment", experiment).permission == "MANAGE"
    client.delete_experiment(experiment)  # MANAGE: the creator may delete


def test_a_user_without_read_sees_neither_the_experiment_nor_its_runs(admin, as_user, auth_server):
    alice, bob = new_user(admin), new_user(admin)
    owner = as_user(alice, PASSWORD)
    name = unique("private")
    experiment = owner.create_experiment(name)
    run = owner.create_run(experiment)
    owner.log_metric(run.info.run_id, "loss", 0.5)

    other = as_user(bob, PASSWORD)
    assert experiment not in [e.experiment_id for e in other.search_experiments()]
    every_run = requests.post(f"{auth_server['url']}/api/2.0/mlflow/runs/search", json={"experiment_ids": []},
                              headers=basic(bob, PASSWORD), timeout=10)
    assert every_run.status_code == 200 and run.info.run_id not in every_run.text
    for attempt in (lambda: other.get_experiment(experiment), lambda: other.get_run(run.info.run_id),
                    lambda: other.search_runs([experiment]), lambda: other.log_metric(run.info.run_id, "loss", 9.0)):
        with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
            attempt()
    assert other.get_experiment_by_name(name) is None  # the stock client's answer for an absent name
    assert as_user(alice, PASSWORD).get_run(run.info.run_id).data.metrics == {"loss": 0.5}  # nothing stored

    as_user(ADMIN, ADMIN_PASSWORD)
    admin.grant_user_permission(bob, "experiment", experiment, "READ")
    reader = as_user(bob, PASSWORD)
    assert reader.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    assert experiment in [e.experiment_id for e in reader.search_experiments()]
    assert [r.info.run_id for r in reader.search_runs([experiment])] == [run.info.run_id]
    with pytest.raises(MlflowException, match="PERMISSION_DENIED") as error:
        reader.log_metric(run.info.run_id, "loss", 9.0)
    assert "EDIT" in str(error.value)

    as_user(ADMIN, ADMIN_PASSWORD)
    admin.revoke_user_permission(bob, "experiment", experiment)
    time.sleep(CACHE_SECONDS + 0.2)  # the server keeps looked-up permissions that long
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        as_user(bob, PASSWORD).get_run(run.info.run_id)


def test_tokens_sign_in_the_stock_client_and_the_mlgrid_client_and_stop_when_revoked(admin, as_user, auth_server, monkeypatch):
    carol = new_user(admin)
    created = requests.post(f"{auth_server['url']}/api/2.0/mlgrid/tokens/create", json={"name": "ci", "expires_in_seconds": 3600},
                            headers=basic(carol, PASSWORD), timeout=10)
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]
    assert secret.startswith("mlg_")

    client = as_user(token=secret)
    experiment = client.create_experiment(unique("tokened"))
    assert client.get_experiment(experiment).name.startswith("tokened")

    monkeypatch.setenv("MLGRID_TRACKING_TOKEN", secret)
    mlgrid.set_tracking_uri(auth_server["grpc"])
    mlgrid.set_experiment(experiment_id=experiment)
    with mlgrid.start_run() as run:
        for step in range(100):
            mlgrid.log_metric("acc", step / 100, step=step)
        mlgrid.log_text("from the mlgrid client", "hello.txt")
    history = mlgrid.MlgridClient(auth_server["grpc"]).get_metric_history(run.info.run_id, "acc")
    assert len(history) == 100
    assert [a.path for a in as_user(token=secret).list_artifacts(run.info.run_id)] == ["hello.txt"]

    revoked = requests.post(f"{auth_server['url']}/api/2.0/mlgrid/tokens/revoke", json={"name": "ci"},
                            headers=basic(carol, PASSWORD), timeout=10)
    assert revoked.status_code == 200, revoked.text
    time.sleep(CACHE_SECONDS + 0.2)
    with pytest.raises(MlflowException, match="UNAUTHENTICATED|401"):
        as_user(token=secret).get_experiment(experiment)
    with pytest.raises(MlgridException) as error:
        mlgrid.MlgridClient(auth_server["grpc"]).get_experiment(experiment)
    assert error.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_the_auth_service_client_needs_an_admin(admin, as_user, auth_server):
    dave = new_user(admin)
    as_user(dave, PASSWORD)
    as_dave = get_app_client("basic-auth", tracking_uri=auth_server["url"])
    with pytest.raises(RestException, match="PERMISSION_DENIED"):
        as_dave.create_user(unique("eve"), PASSWORD)
    assert as_dave.get_user(dave).username == dave


class AddOne(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input + 1


def test_the_registry_follows_its_models_grants_through_rename_and_delete(admin, as_user, auth_server):
    alice, bob, carol = new_user(admin), new_user(admin), new_user(admin)
    owner = as_user(alice, PASSWORD)
    name = unique("model")
    owner.create_registered_model(name)
    with mlflow.start_run(experiment_id=owner.create_experiment(unique())):
        logged = mlflow.pyfunc.log_model(name="m", python_model=AddOne())
    version = owner.create_model_version(name, logged.model_uri, run_id=logged.run_id)
    owner.set_registered_model_alias(name, "champion", version.version)

    assert name not in [m.name for m in as_user(bob, PASSWORD).search_registered_models()]
    as_user(alice, PASSWORD)
    admin_of_model = get_app_client("basic-auth", tracking_uri=auth_server["url"])
    admin_of_model.grant_user_permission(bob, "registered_model", name, "READ")  # alice holds MANAGE on it
    reader = as_user(bob, PASSWORD)
    assert [m.name for m in reader.search_registered_models(f"name = '{name}'")] == [name]
    assert [v.version for v in reader.search_model_versions(f"name = '{name}'")] == [version.version]
    with pytest.raises(MlflowException, match="PERMISSION_DENIED"):
        reader.set_registered_model_alias(name, "champion", version.version)  # moving an alias needs EDIT

    as_user(alice, PASSWORD).rename_registered_model(name, name + "-v2")
    assert as_user(bob, PASSWORD).get_registered_model(name + "-v2").name == name + "-v2"  # the grant followed

    as_user(alice, PASSWORD).delete_registered_model(name + "-v2")
    as_user(carol, PASSWORD).create_registered_model(name + "-v2")  # the name again, someone else's
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        as_user(bob, PASSWORD).get_registered_model(name + "-v2")


def test_a_token_loads_a_registered_model_with_the_stock_client(admin, as_user, auth_server, monkeypatch):
    dora = new_user(admin)
    owner = as_user(dora, PASSWORD)
    name = unique("model")
    owner.create_registered_model(name)
    with mlflow.start_run(experiment_id=owner.create_experiment(unique())):
        logged = mlflow.pyfunc.log_model(name="m", python_model=AddOne())
    owner.create_model_version(name, logged.model_uri, run_id=logged.run_id)
    secret = requests.post(f"{auth_server['url']}/api/2.0/mlgrid/tokens/create", json={"name": "load"},
                           headers=basic(dora, PASSWORD), timeout=10).json()["secret"]
    as_user(token=secret)
    model = mlflow.pyfunc.load_model(f"models:/{name}/1")
    assert list(model.predict(pd.DataFrame({"x": [1, 2]}))["x"]) == [2, 3]
    as_user()  # no credentials at all
    with pytest.raises(MlflowException, match="UNAUTHENTICATED|401"):
        mlflow.pyfunc.load_model(f"models:/{name}/1")


def test_the_registry_event_stream_shows_a_token_holder_only_the_models_they_may_read(admin, as_user, auth_server):
    erin, frank = new_user(admin), new_user(admin)
    tokens = {}
    for user in (erin, frank):
        tokens[user] = requests.post(f"{auth_server['url']}/api/2.0/mlgrid/tokens/create", json={"name": "watch"},
                                     headers=basic(user, PASSWORD), timeout=10).json()["secret"]
    mine, theirs = unique("erins"), unique("franks")
    erin_client = mlgrid.MlgridClient(auth_server["grpc"], token=tokens[erin])
    frank_client = mlgrid.MlgridClient(auth_server["grpc"], token=tokens[frank])
    erin_client.create_registered_model(mine)
    frank_client.create_registered_model(theirs)
    erin_client.set_registered_model_tag(mine, "last", "yes")  # an event after the other model's

    seen = []
    with erin_client.watch_registry_events(after_event_id=0) as events:
        for event in events:
            seen.append(event.name)
            if event.name == mine and len([s for s in seen if s == mine]) == 2:
                break
    assert mine in seen and theirs not in seen


def test_auth_without_a_first_admin_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLGRID_")}
    done = subprocess.run(
        [sys.executable, "-m", "mlgrid.cli.main", "server", "--auth", "--grpc-port", "0", "--port", "0",
         "--backend-store-uri", f"sqlite:///{tmp_path}/x.db", "--artifacts-destination", str(tmp_path / "a")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "MLGRID_ADMIN_USERNAME and MLGRID_ADMIN_PASSWORD" in done.stderr
