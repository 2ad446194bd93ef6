"""MLflow 3's logged models through the stock mlflow client: sklearn log_model(name=...), the
logged-models endpoints, metrics linked to a model, registering models:/<model_id>, and loading
models:/<model_id> and models:/<name>@<alias> with mlflow.pyfunc (and with mlgrid.pyfunc)."""
import mlflow
import numpy as np
import pytest
from conftest import unique
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import mlgrid
import mlgrid.pyfunc


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, LogisticRegression(max_iter=300).fit(X, y)


def test_log_register_alias_and_load(client, server, iris):
    X, model = iris
    mlflow.set_experiment(unique("logged"))
    with mlflow.start_run() as run:
        mlflow.log_param("C", 1.0)
        mlflow.log_metric("acc", 0.97)
        info = mlflow.sklearn.log_model(model, name="iris-model", input_example=X[:2])
        mlflow.log_metric("eval_acc", 0.95, model_id=info.model_id)
    model_id = info.model_id
    assert model_id.startswith("m-")
    assert info.artifact_path == f"mlflow-artifacts:/{run.info.experiment_id}/models/{model_id}/artifacts"

    logged = client.get_logged_model(model_id)
    assert (logged.name, logged.source_run_id, logged.status) == ("iris-model", run.info.run_id, LoggedModelStatus.READY)
    assert logged.params == {"C": "1.0"}
    assert {m.key: m.value for m in logged.metrics} == {"acc": 0.97, "eval_acc": 0.95}
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == set()  # the model's files are its own
    assert [(o.model_id, o.step) for o in client.get_run(run.info.run_id).outputs.model_outputs] == [(model_id, 0)]
    history = client.get_metric_history(run.info.run_id, "acc")
    assert [m.value for m in history] == [0.97]  # log_model's repeat of the step's metrics is not a new point

    found = client.search_logged_models([run.info.experiment_id])
    assert [m.model_id for m in found] == [model_id]
    assert mlflow.search_logged_models(filter_string="metrics.eval_acc > 0.9", output_format="list")[0].model_id == model_id
    assert client.search_logged_models([run.info.experiment_id], filter_string="name = 'other'") == []

    name = unique("iris")
    version = mlflow.register_model(f"models:/{model_id}", name)
    assert (version.version, version.source, version.run_id) == ("1", f"models:/{model_id}", run.info.run_id)
    assert client.get_model_version_download_uri(name, "1") == info.artifact_path
    client.set_registered_model_alias(name, "champion", "1")

    expected = model.predict(X[:10])
    for uri in (f"models:/{name}@champion", f"models:/{model_id}", f"models:/{name}/1"):
        assert np.array_equal(mlflow.pyfunc.load_model(uri).predict(X[:10]), expected), uri
    # The same version through mlgrid's own client (gRPC), from the logged model's location.
    mlgrid.set_tracking_uri(server["uri"])
    for uri in (f"models:/{name}@champion", f"models:/{model_id}"):
        assert np.array_equal(np.asarray(mlgrid.pyfunc.load_model(uri).predict(X[:10])).ravel(), expected), uri
    with mlgrid.MlgridClient(server["uri"]) as grpc_client:
        logged_over_grpc = grpc_client.get_logged_model(model_id)
    assert (logged_over_grpc.status, logged_over_grpc.params) == ("READY", {"C": "1.0"})
    assert logged_over_grpc.artifact_location == f"mlgrid-artifacts:/{run.info.experiment_id}/models/{model_id}/artifacts"


def test_registered_model_name_on_log_model(client, iris):
    X, model = iris
    name = unique("direct")
    mlflow.set_experiment(unique("logged"))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="m", registered_model_name=name)
    version = client.get_model_version(name, info.registered_model_version)
    assert version.source == f"models:/{info.model_id}"
    assert np.array_equal(mlflow.pyfunc.load_model(f"models:/{name}/{version.version}").predict(X[:5]), model.predict(X[:5]))


def test_logged_model_api(client):
    experiment_id = client.create_experiment(unique("logged"))
    created = client.create_logged_model(experiment_id, name="bare", params={"p": "1"}, tags={"t": "1"}, model_type="agent")
    assert created.status == LoggedModelStatus.PENDING
    assert created.artifact_location == f"mlflow-artifacts:/{experiment_id}/models/{created.model_id}/artifacts"

    client.set_logged_model_tags(created.model_id, {"a": "x", "t": "2"})
    client.delete_logged_model_tag(created.model_id, "a")
    finalized = client.finalize_logged_model(created.model_id, LoggedModelStatus.READY)
    assert finalized.status == LoggedModelStatus.READY and finalized.model_type == "agent"
    assert client.get_logged_model(created.model_id).tags == {"t": "2"}
    with pytest.raises(MlflowException) as raised:
        client.delete_logged_model_tag(created.model_id, "a")
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    many = {f"p{i:03d}": str(i) for i in range(250)}  # more than one request of params (100 per call)
    with_many = client.create_logged_model(experiment_id, name="many", params=many)
    assert client.get_logged_model(with_many.model_id).params == many

    client.delete_logged_model(created.model_id)
    with pytest.raises(MlflowException) as raised:
        client.get_logged_model(created.model_id)
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert [m.model_id for m in client.search_logged_models([experiment_id])] == [with_many.model_id]
    with pytest.raises(MlflowException) as raised:
        client.get_logged_model("m-nope")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as raised:
        client.search_logged_models([experiment_id], filter_string="metrics.x >")
    assert raised.value.error_code == "INVALID_PARAMETER_VALUE"


def test_search_order_and_pages(client):
    experiment_id = client.create_experiment(unique("logged"))
    run = client.create_run(experiment_id)
    ids = []
    for i, score in enumerate((0.3, 0.9, 0.6)):
        model = client.create_logged_model(experiment_id, name=f"m{i}", source_run_id=run.info.run_id)
        client.log_metric(run.info.run_id, "score", score, model_id=model.model_id)
        ids.append(model.model_id)
    by_score = client.search_logged_models([experiment_id], order_by=[{"field_name": "metrics.score", "ascending": False}])
    assert [m.model_id for m in by_score] == [ids[1], ids[2], ids[0]]
    first = client.search_logged_models([experiment_id], max_results=2)
    rest = client.search_logged_models([experiment_id], max_results=2, page_token=first.token)
    assert [m.model_id for m in first] + [m.model_id for m in rest] == ids[::-1] and rest.token is None
