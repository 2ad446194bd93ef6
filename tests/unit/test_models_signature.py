"""Signatures: inferred from examples as MLflow infers them, written in MLflow's JSON, and enforced
at predict with INVALID_ARGUMENT errors that name what is wrong."""
import json

import grpc
import numpy as np
import pandas as pd
import pytest

from mlgrid.exceptions import MlgridException
from mlgrid.models import ColSpec, ModelSignature, ParamSpec, Schema, TensorSpec, infer_signature
from mlgrid.models.signature import enforce_input, enforce_params

FRAME = pd.DataFrame({
    "f64": [1.5, 2.5], "f32": np.array([1, 2], dtype=np.float32), "i64": [1, 2],
    "i32": np.array([1, 2], dtype=np.int32), "flag": [True, False], "name": ["a", "b"],
    "raw": [b"x", b"y"], "when": pd.to_datetime(["2026-01-01", "2026-01-02"]),
})


def test_column_types_inferred_as_mlflow_does():
    import mlflow.models

    ours = infer_signature(FRAME).to_dict()
    theirs = mlflow.models.infer_signature(FRAME).to_dict()
    assert json.loads(ours["inputs"]) == json.loads(theirs["inputs"])


@pytest.mark.parametrize("example", [
    np.zeros((3, 4), dtype=np.float32),
    {"a": np.zeros((2, 3), dtype=np.int64), "b": np.ones((2,), dtype=np.float64)},
    pd.DataFrame({"x": [1.0, None], "s": ["a", None]}),
])
def test_tensor_and_optional_schemas_match_mlflow(example):
    import mlflow.models

    assert json.loads(infer_signature(example).to_dict()["inputs"]) == json.loads(
        mlflow.models.infer_signature(example).to_dict()["inputs"])


def test_mlflow_signatures_read_back_and_round_trip():
    import mlflow.models

    theirs = mlflow.models.infer_signature(FRAME, np.array([1, 2]), params={"k": 3, "temp": 0.5, "tags": ["a"]}).to_dict()
    ours = ModelSignature.from_dict(theirs)
    assert ours.inputs.names() == list(FRAME.columns)
    assert ours.outputs.inputs == (TensorSpec(np.dtype("int64"), (-1,)),)
    assert ours.params == (ParamSpec("k", "long", 3), ParamSpec("temp", "double", 0.5), ParamSpec("tags", "string", ["a"], (-1,)))
    assert ModelSignature.from_dict(ours.to_dict()) == ours
    assert mlflow.models.ModelSignature.from_dict(ours.to_dict()).to_dict() == theirs


def test_torch_tensors_infer_tensor_specs():
    torch = pytest.importorskip("torch")
    schema = infer_signature(torch.zeros(5, 3)).inputs
    assert schema.inputs == (TensorSpec(np.dtype("float32"), (-1, 3)),)


def _invalid(call, *needles):
    with pytest.raises(MlgridException) as error:
        call()
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    for needle in needles:
        assert needle in error.value.message
    return error.value.message


COLUMNS = Schema((ColSpec("double", "x"), ColSpec("long", "n"), ColSpec("string", "s"), ColSpec("float", "opt", required=False)))


def test_columns_converted_and_extras_dropped():
    frame = enforce_input(pd.DataFrame({"x": [1, 2], "n": np.array([3, 4], dtype=np.int32), "s": ["a", "b"], "extra": [0, 0]}), COLUMNS)
    assert list(frame.columns) == ["x", "n", "s"]
    assert (frame["x"].dtype, frame["n"].dtype) == (np.float64, np.int64)
    assert enforce_input({"x": 1.0, "n": 2, "s": "a"}, COLUMNS).shape == (1, 3)
    assert enforce_input([{"x": 1.0, "n": 2, "s": "a", "opt": 0.5}], COLUMNS)["opt"].dtype == np.float32


def test_bad_columns_are_invalid_argument():
    _invalid(lambda: enforce_input(pd.DataFrame({"x": [1.0], "s": ["a"]}), COLUMNS), "missing column(s) ['n']")
    _invalid(lambda: enforce_input(pd.DataFrame({"x": ["a"], "n": [1], "s": ["a"]}), COLUMNS), "column 'x'", "to double")
    _invalid(lambda: enforce_input(pd.DataFrame({"x": [1.0], "n": [1.5], "s": ["a"]}), COLUMNS), "column 'n'", "float64 to long")
    _invalid(lambda: enforce_input(pd.DataFrame({"x": [1.0], "n": [1], "s": [3]}), COLUMNS), "column 's'", "to string")
    _invalid(lambda: enforce_input(np.zeros((2, 2)), COLUMNS), "takes 4 column(s)")
    _invalid(lambda: enforce_input(object(), COLUMNS), "unsupported input type")
    big = Schema((ColSpec("integer", "i"),))
    _invalid(lambda: enforce_input(pd.DataFrame({"i": [2**40]}), big), "int64 to integer")
    assert enforce_input(pd.DataFrame({"i": [7]}), big)["i"].dtype == np.int32


def test_tensors_checked_for_dtype_and_shape():
    schema = Schema((TensorSpec(np.dtype("float32"), (-1, 3)),))
    assert enforce_input(np.zeros((2, 3), dtype=np.float64), schema).dtype == np.float32  # JSON numbers
    assert enforce_input(pd.DataFrame(np.zeros((2, 3))), schema).shape == (2, 3)
    _invalid(lambda: enforce_input(np.zeros((2, 4), dtype=np.float32), schema), "got (2, 4)", "(-1, 3)")
    _invalid(lambda: enforce_input(np.zeros((3,), dtype=np.float32), schema), "shape")
    _invalid(lambda: enforce_input(np.array([["a", "b", "c"]]), schema), "dtype")
    named = Schema((TensorSpec(np.dtype("int64"), (-1,), "a"), TensorSpec(np.dtype("float64"), (-1, 2), "b")))
    checked = enforce_input({"a": [1, 2], "b": np.zeros((2, 2))}, named)
    assert checked["a"].dtype == np.int64
    _invalid(lambda: enforce_input({"a": [1]}, named), "missing tensor(s) ['b']")
    _invalid(lambda: enforce_input({"a": np.array([1.5]), "b": np.zeros((1, 2))}, named), "tensor 'a'", "float64")


def test_params_defaults_conversion_and_errors(caplog):
    specs = (ParamSpec("k", "long", 3), ParamSpec("t", "double", 0.5), ParamSpec("tags", "string", ["a"], (-1,)))
    assert enforce_params(None, specs) == {"k": 3, "t": 0.5, "tags": ["a"]}
    assert enforce_params({"t": 1, "tags": ["x", "y"]}, specs) == {"k": 3, "t": 1.0, "tags": ["x", "y"]}
    _invalid(lambda: enforce_params({"k": "ten"}, specs), "'k' takes long")
    _invalid(lambda: enforce_params({"tags": "x"}, specs), "list of string")
    assert enforce_params({"k": 1, "typo": 2}, specs)["k"] == 1
    assert "typo" in caplog.text  # dropped with a warning, as in MLflow
    assert enforce_params({"a": 1}, ()) is None
