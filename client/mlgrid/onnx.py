"""The onnx flavor: an ONNX model (onnx.ModelProto or a .onnx file) run with onnxruntime. As a
python_function, predict takes a dict of arrays by input name, one array for a one-input model,
or a DataFrame (the whole frame for a one-input model, else a column per input); it returns a
dict of outputs by name (a DataFrame for a DataFrame).

    info = mlgrid.onnx.log_model(onnx_model, name="model", input_example=x[:4])
    onnx_model = mlgrid.onnx.load_model(info.model_uri)
"""
from __future__ import annotations

import os

import grpc
import numpy as np

from mlgrid.exceptions import MlgridException
from mlgrid.models import Model, ModelInfo, ModelSignature, saving
from mlgrid.models.environment import pinned
from mlgrid.models.uri import download_model

FLAVOR = "onnx"
MODEL_FILE = "model.onnx"
DEFAULT_PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]
# onnxruntime's element type names and numpy's
ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_, "tensor(string)": object,
}


def _invalid(message: str) -> MlgridException:
    return MlgridException(message, grpc.StatusCode.INVALID_ARGUMENT)


def save_model(
    onnx_model,
    path: str,
    onnx_execution_providers: list[str] | None = None,
    code_paths: list[str] | None = None,
    signature: ModelSignature | None = None,
    input_example=None,
    pip_requirements=None,
    extra_pip_requirements=None,
    conda_env=None,
    mlmodel: Model | None = None,
) -> Model:
    """Save an ONNX model (a ModelProto, or the path of a .onnx file) into a new folder at `path`;
    the model is checked with onnx.checker first."""
    import onnx

    if isinstance(onnx_model, (str, os.PathLike)):
        onnx_model = onnx.load(os.fspath(onnx_model))
    if not isinstance(onnx_model, onnx.ModelProto):
        raise _invalid(f"onnx_model must be an onnx.ModelProto or the path of a .onnx file, not {type(onnx_model).__name__}")
    try:
        onnx.checker.check_model(onnx_model)
    except onnx.checker.ValidationError as error:
        raise _invalid(f"the ONNX model is not valid: {error}") from None
    with saving.new_model_dir(path) as model_dir:
        code = saving.copy_code_paths(model_dir, code_paths)
        onnx.save_model(onnx_model, os.path.join(model_dir, MODEL_FILE))
        providers = list(onnx_execution_providers or DEFAULT_PROVIDERS)
        model = mlmodel or Model()
        model.add_flavor(saving.PYFUNC, **saving.pyfunc_flavor("mlgrid.onnx", code, data=MODEL_FILE))
        model.add_flavor(FLAVOR, onnx_version=onnx.__version__, data=MODEL_FILE, providers=providers, code=code)
        predictor = _OnnxPredictor(os.path.join(model_dir, MODEL_FILE), providers)
        return saving.finish_model_dir(
            model_dir, model, pinned("mlgrid", "onnx", "onnxruntime", "numpy", "pandas"), signature=signature,
            input_example=input_example, predict=predictor.predict, pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements, conda_env=conda_env,
        )


def log_model(onnx_model, name: str = "model", registered_model_name: str | None = None, **kwargs) -> ModelInfo:
    """Save the ONNX model as the active run's artifacts `name`, and register it when asked; kwargs as save_model's."""
    return saving.log_model(save_model, name, registered_model_name, onnx_model=onnx_model, **kwargs)


def load_model(model_uri: str, dst_path: str | None = None):
    """The onnx.ModelProto at `model_uri` (local folder, runs:/, models:/...)."""
    import onnx

    model_dir = download_model(model_uri, dst_path)
    conf = Model.load(model_dir).flavors.get(FLAVOR)
    if conf is None:
        raise _invalid(f"the model at {model_dir} has no onnx flavor")
    return onnx.load(os.path.join(model_dir, conf.get("data", MODEL_FILE)))


class _OnnxPredictor:
    def __init__(self, path: str, providers: list[str]):
        import onnxruntime

        available = set(onnxruntime.get_available_providers())
        self.raw_model = onnxruntime.InferenceSession(path, providers=[p for p in providers if p in available] or None)
        self._inputs = self.raw_model.get_inputs()
        self._outputs = [output.name for output in self.raw_model.get_outputs()]

    def _feed(self, data) -> dict:
        import pandas as pd

        names = [i.name for i in self._inputs]
        if isinstance(data, pd.DataFrame):
            data = {names[0]: data.to_numpy()} if len(names) == 1 else {n: data[n].to_numpy() for n in names if n in data}
        elif not isinstance(data, dict):
            if len(names) != 1:
                raise _invalid(f"this ONNX model takes {len(names)} inputs {names}; send a dict of arrays by name")
            data = {names[0]: data}
        missing = [n for n in names if n not in data]
        if missing:
            raise _invalid(f"the input is missing {missing}; this ONNX model takes {names}")
        return {i.name: np.asarray(data[i.name]).astype(ORT_TYPES.get(i.type, None), copy=False) for i in self._inputs}

    def predict(self, data, params: dict | None = None):
        import pandas as pd

        try:
            outputs = self.raw_model.run(self._outputs, self._feed(data))
        except MlgridException:
            raise
        except Exception as error:  # onnxruntime's errors about shapes and types
            raise _invalid(f"the ONNX model refused the input: {error}") from None
        if isinstance(data, pd.DataFrame):
            return pd.DataFrame({
                name: value.reshape(-1) if value.ndim == 1 or value.shape[1:] == (1,) else list(value)
                for name, value in zip(self._outputs, outputs)
            })
        return dict(zip(self._outputs, outputs))


def _load_pyfunc(path: str, model_config: dict | None = None):
    """Loader of the python_function flavor: `path` is the .onnx file (mlgrid's and mlflow.onnx's models)."""
    conf = Model.load(os.path.dirname(path)).flavors.get(FLAVOR) or {}
    return _OnnxPredictor(path, conf.get("providers") or DEFAULT_PROVIDERS)
