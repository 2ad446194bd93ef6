"""MLflow interop both ways, with the stock `mlflow` package: models MLflow saves load and predict
in mlgrid, and models mlgrid saves load and predict in MLflow (pyfunc and native flavors)."""
import numpy as np
import pandas as pd
import pytest

import mlgrid.onnx
import mlgrid.pyfunc
import mlgrid.pytorch
import mlgrid.sklearn
from mlgrid.models import Model, ModelSignature
from test_models_flavors import AddN, _linear_onnx

mlflow = pytest.importorskip("mlflow")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")

X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1, 0, 1, 0]})


@pytest.fixture(autouse=True)
def mlflow_may_unpickle(monkeypatch):
    # MLflow 3 refuses to deserialize its own model files unless told the source is trusted.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")


@pytest.fixture(scope="module")
def estimator():
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression().fit(X, [0, 1, 0, 1])


class MlflowAddN(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["n"]) as f:
            self.n = float(f.read())

    def predict(self, context, model_input, params=None):
        return model_input["a"] + self.n


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))


@pytest.mark.parametrize("serialization_format", ["skops", "cloudpickle"])
def test_mlflow_sklearn_loads_in_mlgrid(tmp_path, estimator, serialization_format):
    mlflow.sklearn.save_model(estimator, str(tmp_path / "m"), serialization_format=serialization_format, input_example=X.head(2), pip_requirements=[])
    expected = estimator.predict(X)
    assert (mlgrid.sklearn.load_model(str(tmp_path / "m")).predict(X) == expected).all()
    model = mlgrid.pyfunc.load_model(str(tmp_path / "m"))
    assert (model.predict(X) == expected).all()
    assert model.metadata.signature == ModelSignature.from_dict(mlflow.models.Model.load(str(tmp_path / "m")).signature.to_dict())
    assert model.metadata.other["mlflow_version"] == mlflow.__version__  # keys mlgrid does not use are kept
    with pytest.raises(mlgrid.MlgridException, match="missing column"):
        model.predict(X[["a"]])


def test_mlflow_python_model_loads_in_mlgrid(tmp_path):
    (tmp_path / "n.txt").write_text("5")
    mlflow.pyfunc.save_model(str(tmp_path / "m"), python_model=MlflowAddN(), artifacts={"n": str(tmp_path / "n.txt")}, pip_requirements=[])
    assert list(mlgrid.pyfunc.load_model(str(tmp_path / "m")).predict(X)) == [6.0, 7.0, 8.0, 9.0]


@pytest.mark.parametrize("serialization_format", ["pickle", "pt2"])
def test_mlflow_pytorch_loads_in_mlgrid(tmp_path, serialization_format):
    net, x = _net(), np.random.default_rng(1).random((4, 2), dtype=np.float32)
    mlflow.pytorch.save_model(net, str(tmp_path / "m"), serialization_format=serialization_format, input_example=x, pip_requirements=[])
    expected = net(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(mlgrid.pyfunc.load_model(str(tmp_path / "m")).predict(x), expected, atol=1e-6)
    assert np.allclose(mlgrid.pytorch.load_model(str(tmp_path / "m"))(torch.from_numpy(x)).detach().numpy(), expected, atol=1e-6)


def test_mlflow_onnx_loads_in_mlgrid(tmp_path):
    mlflow.onnx.save_model(_linear_onnx(), str(tmp_path / "m"), pip_requirements=[])
    x = np.array([[1.0, 1.0]], dtype=np.float32)
    assert np.allclose(mlgrid.pyfunc.load_model(str(tmp_path / "m")).predict(x)["y"], [[3.0]])


def test_mlgrid_sklearn_loads_in_mlflow(tmp_path, estimator):
    mlgrid.sklearn.save_model(estimator, tmp_path / "m", input_example=X.head(2))
    expected = estimator.predict(X)
    assert (mlflow.pyfunc.load_model(str(tmp_path / "m")).predict(X) == expected).all()
    assert (mlflow.sklearn.load_model(str(tmp_path / "m")).predict(X) == expected).all()
    info = mlflow.models.Model.load(str(tmp_path / "m"))
    assert info.load_input_example(str(tmp_path / "m")).equals(X.head(2))
    assert info.signature.inputs.input_names() == ["a", "b"]
    with pytest.raises(mlflow.exceptions.MlflowException):
        mlflow.pyfunc.load_model(str(tmp_path / "m")).predict(X[["a"]])  # MLflow enforces mlgrid's signature


def test_mlgrid_python_model_loads_in_mlflow(tmp_path):
    (tmp_path / "n.txt").write_text("10")
    mlgrid.pyfunc.save_model(tmp_path / "m", python_model=AddN(), artifacts={"n": str(tmp_path / "n.txt")}, input_example=X.head(2))
    assert list(mlflow.pyfunc.load_model(str(tmp_path / "m")).predict(X.head(2))) == [11.0, 12.0]


def test_mlgrid_pytorch_and_onnx_load_in_mlflow(tmp_path):
    net, x = _net(), np.random.default_rng(2).random((3, 2), dtype=np.float32)
    mlgrid.pytorch.save_model(net, tmp_path / "pt", input_example=x)
    expected = net(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(mlflow.pyfunc.load_model(str(tmp_path / "pt")).predict(x), expected, atol=1e-6)
    assert np.allclose(mlflow.pytorch.load_model(str(tmp_path / "pt"))(torch.from_numpy(x)).detach().numpy(), expected, atol=1e-6)
    mlgrid.onnx.save_model(_linear_onnx(), tmp_path / "onnx", input_example=x)
    assert np.allclose(mlflow.pyfunc.load_model(str(tmp_path / "onnx")).predict(x)["y"], x @ [[1.0], [2.0]])
    assert mlflow.onnx.load_model(str(tmp_path / "onnx")).graph.name == "linear"
    assert Model.load(str(tmp_path / "onnx")).flavors["onnx"]["providers"]
