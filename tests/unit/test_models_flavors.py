"""Each flavor saved to a folder and loaded back, natively and as python_function: same
predictions, MLmodel and environment files as MLflow lays them out, clear errors on bad input."""
import os

import grpc
import numpy as np
import pandas as pd
import pytest
import yaml

import mlgrid.onnx
import mlgrid.pyfunc
import mlgrid.pytorch
import mlgrid.sklearn
from mlgrid.exceptions import MlgridException
from mlgrid.models import Model

X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "b": [0, 1, 0, 1, 1, 0]})
Y = [0, 0, 1, 1, 1, 0]


def _error(call, code, *needles):
    with pytest.raises(MlgridException) as error:
        call()
    assert error.value.code == code, error.value
    for needle in needles:
        assert needle in error.value.message
    return error.value


def halve(x):
    return x / 2


@pytest.fixture(scope="module")
def estimator():
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y)


@pytest.mark.parametrize("serialization_format", ["skops", "pickle", "cloudpickle"])
def test_sklearn_round_trip(tmp_path, estimator, serialization_format):
    path = tmp_path / "model"
    mlgrid.sklearn.save_model(estimator, path, serialization_format=serialization_format, input_example=X.head(3))
    expected = estimator.predict(X)
    assert (mlgrid.sklearn.load_model(str(path)).predict(X) == expected).all()
    pyfunc = mlgrid.pyfunc.load_model(str(path))
    assert (pyfunc.predict(X) == expected).all()
    assert pyfunc.get_raw_model().__class__.__name__ == "RandomForestClassifier"
    model = Model.load(str(path))
    assert model.flavors["sklearn"]["serialization_format"] == serialization_format
    assert model.get_input_schema().names() == ["a", "b"]
    assert model.load_input_example(str(path)).equals(X.head(3))
    requirements = (path / "requirements.txt").read_text().split()
    assert any(r.startswith("scikit-learn==") for r in requirements)
    assert ("skops" in " ".join(requirements)) == (serialization_format == "skops")
    assert yaml.safe_load((path / "python_env.yaml").read_text())["dependencies"] == ["-r requirements.txt"]
    _error(lambda: pyfunc.predict(X[["a"]]), grpc.StatusCode.INVALID_ARGUMENT, "missing column(s) ['b']")


def test_sklearn_pyfunc_predict_fn_and_untrusted_types(tmp_path, estimator):
    mlgrid.sklearn.save_model(estimator, tmp_path / "proba", pyfunc_predict_fn="predict_proba")
    assert mlgrid.pyfunc.load_model(str(tmp_path / "proba")).predict(X).shape == (6, 2)
    from sklearn.preprocessing import FunctionTransformer

    custom = FunctionTransformer(halve).fit(np.array([[1.0]]))
    _error(lambda: mlgrid.sklearn.save_model(custom, tmp_path / "custom", pyfunc_predict_fn="transform"), grpc.StatusCode.INVALID_ARGUMENT,
           "skops does not trust", "halve", "skops_trusted_types")
    assert not (tmp_path / "custom").exists()  # nothing half-saved
    mlgrid.sklearn.save_model(custom, tmp_path / "trusted", skops_trusted_types=[f"{__name__}.halve"], pyfunc_predict_fn="transform")
    assert mlgrid.pyfunc.load_model(str(tmp_path / "trusted")).predict(np.array([[3.0]])).tolist() == [[1.5]]
    _error(lambda: mlgrid.sklearn.save_model(estimator, tmp_path / "x", serialization_format="joblib"),
           grpc.StatusCode.INVALID_ARGUMENT, "serialization_format")
    _error(lambda: mlgrid.sklearn.save_model(estimator, tmp_path / "trusted"), grpc.StatusCode.ALREADY_EXISTS, "already exists")


class AddN(mlgrid.pyfunc.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["n"]) as f:
            self.n = float(f.read())
        self.scale = context.model_config.get("scale", 1)

    def predict(self, context, model_input, params=None):
        shift = (params or {}).get("shift", 0)
        return (model_input["a"] + self.n) * self.scale + shift


def test_python_model_with_artifacts_code_params_and_config(tmp_path):
    (tmp_path / "n.txt").write_text("10")
    helper = tmp_path / "src" / "helper_module_for_mlgrid_test.py"
    helper.parent.mkdir()
    helper.write_text("def double(x):\n    return 2 * x\n")
    from mlgrid.models import infer_signature

    signature = infer_signature(X, params={"shift": 0.0})
    mlgrid.pyfunc.save_model(
        tmp_path / "model", python_model=AddN(), artifacts={"n": str(tmp_path / "n.txt")},
        code_paths=[str(helper)], signature=signature, input_example=X.head(2), model_config={"scale": 2},
    )
    model = mlgrid.pyfunc.load_model(str(tmp_path / "model"))
    assert list(model.predict(X.head(2))) == [22.0, 24.0]
    assert list(model.predict(X.head(2), params={"shift": 1})) == [23.0, 25.0]
    assert list(mlgrid.pyfunc.load_model(str(tmp_path / "model"), model_config={"scale": 1}).predict(X.head(1))) == [11.0]
    assert isinstance(model.unwrap_python_model(), AddN)
    assert (tmp_path / "model" / "artifacts" / "n.txt").read_text() == "10"
    assert (tmp_path / "model" / "code" / helper.name).exists()
    conf = Model.load(str(tmp_path / "model")).pyfunc_conf()
    assert conf["loader_module"] == "mlgrid.pyfunc" and conf["artifacts"]["n"]["path"] == "artifacts/n.txt"
    _error(lambda: model.predict(X.head(1), params={"shift": "up"}), grpc.StatusCode.INVALID_ARGUMENT, "'shift' takes double")


class Contextless(mlgrid.pyfunc.PythonModel):
    def predict(self, model_input):
        return model_input * 2


def test_python_model_without_context_or_params(tmp_path):
    mlgrid.pyfunc.save_model(tmp_path / "m", python_model=Contextless())
    assert list(mlgrid.pyfunc.load_model(str(tmp_path / "m")).predict(np.array([1, 2]))) == [2, 4]
    _error(lambda: mlgrid.pyfunc.save_model(tmp_path / "bad", python_model=object()), grpc.StatusCode.INVALID_ARGUMENT, "PythonModel")
    _error(lambda: mlgrid.pyfunc.save_model(tmp_path / "art", python_model=Contextless(), artifacts={"x": "/no/such/file"}),
           grpc.StatusCode.INVALID_ARGUMENT, "does not exist")


def test_environment_options(tmp_path, estimator):
    mlgrid.sklearn.save_model(estimator, tmp_path / "pip", pip_requirements=["scikit-learn", "mypkg==1"])
    assert (tmp_path / "pip" / "requirements.txt").read_text().split() == ["scikit-learn", "mypkg==1"]
    mlgrid.sklearn.save_model(estimator, tmp_path / "extra", extra_pip_requirements=["mypkg==2"])
    assert (tmp_path / "extra" / "requirements.txt").read_text().split()[-1] == "mypkg==2"
    conda = {"name": "env", "dependencies": ["python=3.11", {"pip": ["scikit-learn", "other"]}]}
    mlgrid.sklearn.save_model(estimator, tmp_path / "conda", conda_env=conda)
    assert yaml.safe_load((tmp_path / "conda" / "conda.yaml").read_text()) == conda
    assert (tmp_path / "conda" / "requirements.txt").read_text().split() == ["scikit-learn", "other"]
    _error(lambda: mlgrid.sklearn.save_model(estimator, tmp_path / "both", pip_requirements=["a"], conda_env=conda),
           grpc.StatusCode.INVALID_ARGUMENT, "not both")


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_pytorch_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x = np.random.default_rng(0).random((5, 3), dtype=np.float32)
    mlgrid.pytorch.save_model(net, tmp_path / "eager", input_example=x)
    mlgrid.pytorch.save_model(torch.jit.script(net), tmp_path / "scripted")
    expected = net(torch.from_numpy(x)).detach().numpy()
    for name in ("eager", "scripted"):
        assert np.allclose(mlgrid.pytorch.load_model(str(tmp_path / name))(torch.from_numpy(x)).detach().numpy(), expected)
        model = mlgrid.pyfunc.load_model(str(tmp_path / name))
        assert np.allclose(model.predict(x), expected)
        assert np.allclose(np.asarray(model.predict(pd.DataFrame(x))), expected)
    signature = Model.load(str(tmp_path / "eager")).signature
    assert signature.outputs.inputs[0].shape == (-1, 2)
    _error(lambda: mlgrid.pyfunc.load_model(str(tmp_path / "eager")).predict(np.zeros((2, 5), np.float32)),
           grpc.StatusCode.INVALID_ARGUMENT, "shape")
    _error(lambda: mlgrid.pytorch.save_model("not a module", tmp_path / "bad"), grpc.StatusCode.INVALID_ARGUMENT, "torch.nn.Module")


def _linear_onnx(inputs=("x",)):
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.array([[1.0], [2.0]], dtype=np.float32), "W")
    nodes = [helper.make_node("MatMul", [inputs[0], "W"], ["y"])]
    graph_inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 2]) for name in inputs]
    if len(inputs) == 2:
        nodes = [helper.make_node("Add", list(inputs), ["s"]), helper.make_node("MatMul", ["s", "W"], ["y"])]
    graph = helper.make_graph(nodes, "linear", graph_inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def test_onnx_round_trip(tmp_path):
    pytest.importorskip("onnxruntime")
    x = np.array([[1.0, 1.0], [2.0, 0.5]], dtype=np.float32)
    mlgrid.onnx.save_model(_linear_onnx(), tmp_path / "one", input_example=x)
    model = mlgrid.pyfunc.load_model(str(tmp_path / "one"))
    assert np.allclose(model.predict(x)["y"], [[3.0], [3.0]])
    assert mlgrid.onnx.load_model(str(tmp_path / "one")).graph.name == "linear"
    mlgrid.onnx.save_model(_linear_onnx(("p", "q")), tmp_path / "two")
    two = mlgrid.pyfunc.load_model(str(tmp_path / "two"))
    assert np.allclose(two.predict({"p": x, "q": x})["y"], [[6.0], [6.0]])
    _error(lambda: two.predict(x), grpc.StatusCode.INVALID_ARGUMENT, "takes 2 inputs")
    _error(lambda: two.predict({"p": x}), grpc.StatusCode.INVALID_ARGUMENT, "missing ['q']")
    _error(lambda: two.predict({"p": x, "q": np.zeros((2, 3), np.float32)}), grpc.StatusCode.INVALID_ARGUMENT, "refused the input")
    broken = _linear_onnx()
    broken.graph.node[0].input[1] = "missing"
    _error(lambda: mlgrid.onnx.save_model(broken, tmp_path / "broken"), grpc.StatusCode.INVALID_ARGUMENT, "not valid")


def test_loading_what_is_not_a_model(tmp_path, estimator):
    _error(lambda: mlgrid.pyfunc.load_model(str(tmp_path / "nothing")), grpc.StatusCode.NOT_FOUND, "no model folder")
    (tmp_path / "empty").mkdir()
    _error(lambda: mlgrid.pyfunc.load_model(str(tmp_path / "empty")), grpc.StatusCode.NOT_FOUND, "no MLmodel")
    mlgrid.sklearn.save_model(estimator, tmp_path / "native")
    mlmodel = tmp_path / "native" / "MLmodel"
    conf = yaml.safe_load(mlmodel.read_text())
    del conf["flavors"]["python_function"]
    mlmodel.write_text(yaml.safe_dump(conf))
    _error(lambda: mlgrid.pyfunc.load_model(str(tmp_path / "native")), grpc.StatusCode.INVALID_ARGUMENT, "no python_function flavor")
    assert mlgrid.sklearn.load_model(str(tmp_path / "native")).n_estimators == 5
    _error(lambda: mlgrid.pytorch.load_model(str(tmp_path / "native")), grpc.StatusCode.INVALID_ARGUMENT, "no pytorch flavor")
    _error(lambda: mlgrid.pyfunc.load_model("s3://bucket/model"), grpc.StatusCode.INVALID_ARGUMENT, "cannot load a model from")
    assert os.listdir(tmp_path / "empty") == []
