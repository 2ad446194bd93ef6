"""Models through a real `mlgrid server`: log a model to a run, register it, and load it back by
runs:/, models:/<name>/<version>, models:/<name>@<alias> and stage."""
import json

import grpc
import numpy as np
import pandas as pd
import pytest
from conftest import unique

import mlgrid
import mlgrid.pyfunc
import mlgrid.sklearn
from mlgrid.exceptions import MlgridException
from mlgrid.models import Model

X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1, 0, 1, 0]})


@pytest.fixture()
def tracking(server):
    mlgrid.set_tracking_uri(server["uri"])
    mlgrid.set_experiment(unique())
    yield mlgrid.MlgridClient(server["uri"])


def test_log_register_and_load_by_every_uri(tracking):
    from sklearn.linear_model import LogisticRegression

    estimator = LogisticRegression().fit(X, [0, 1, 0, 1])
    name = unique("model")
    with mlgrid.start_run() as run:
        info = mlgrid.sklearn.log_model(estimator, name="clf", input_example=X.head(2), registered_model_name=name)
    run_id = run.info.run_id
    assert (info.model_uri, info.run_id, info.artifact_path, info.registered_model_version) == (f"runs:/{run_id}/clf", run_id, "clf", 1)
    assert {f.path for f in tracking.list_artifacts(run_id, "clf")} >= {
        "clf/MLmodel", "clf/model.skops", "clf/requirements.txt", "clf/python_env.yaml", "clf/conda.yaml", "clf/input_example.json",
    }
    history = json.loads(tracking.get_run(run_id).data.tags["mlflow.log-model.history"])
    assert [(h["artifact_path"], h["run_id"]) for h in history] == [("clf", run_id)]
    version = tracking.get_model_version(name, 1)
    assert (version.source, version.run_id) == (f"runs:/{run_id}/clf", run_id)

    tracking.set_registered_model_alias(name, "champion", 1)
    tracking.transition_model_version_stage(name, 1, "Production")
    expected = estimator.predict(X)
    for uri in (info.model_uri, f"models:/{name}/1", f"models:/{name}@champion", f"models:/{name}/Production", f"models:/{name}/latest"):
        model = mlgrid.pyfunc.load_model(uri)
        assert (model.predict(X) == expected).all(), uri
        assert model.metadata.run_id == run_id and model.metadata.artifact_path == "clf"
    assert (mlgrid.sklearn.load_model(f"models:/{name}@champion").predict(X) == expected).all()
    assert Model.load(mlgrid.models.download_model(info.model_uri)).model_uuid == info.model_uuid


class Doubler(mlgrid.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.asarray(model_input) * 2


def test_python_model_with_run_artifact_and_second_version(tracking, tmp_path):
    name = unique("model")
    with mlgrid.start_run() as run:
        mlgrid.log_text("3", "config/n.txt")
        first = mlgrid.pyfunc.log_model(Doubler(), name="m1", registered_model_name=name)
        second = mlgrid.pyfunc.log_model(
            Doubler(), name="m2", registered_model_name=name, artifacts={"n": f"runs:/{run.info.run_id}/config/n.txt"},
        )
    assert (first.registered_model_version, second.registered_model_version) == (1, 2)
    model = mlgrid.pyfunc.load_model(f"models:/{name}/2", dst_path=str(tmp_path))
    assert model.predict(np.array([1, 2])).tolist() == [2, 4]
    assert model.unwrap_python_model().__class__.__name__ == "Doubler"
    n_path = Model.load(model.model_dir).pyfunc_conf()["artifacts"]["n"]["path"]
    assert open(f"{model.model_dir}/{n_path}").read() == "3"
    assert len(json.loads(tracking.get_run(run.info.run_id).data.tags["mlflow.log-model.history"])) == 2


def test_bad_model_uris_and_names(tracking):
    def code_of(call):
        with pytest.raises(MlgridException) as error:
            call()
        return error.value.code

    assert code_of(lambda: mlgrid.pyfunc.load_model(f"models:/{unique('missing')}/1")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: mlgrid.pyfunc.load_model("models:/only-a-name")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: mlgrid.pyfunc.load_model("runs:/" + "0" * 32 + "/model")) == grpc.StatusCode.NOT_FOUND
    with mlgrid.start_run() as run:
        for bad in ("../escape", "/abs", "a/../../b", ""):
            assert code_of(lambda: mlgrid.pyfunc.log_model(Doubler(), name=bad)) == grpc.StatusCode.INVALID_ARGUMENT
    assert tracking.list_artifacts(run.info.run_id) == []
