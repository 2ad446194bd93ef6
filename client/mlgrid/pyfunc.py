"""python_function: any model as a predictor, and custom models written as PythonModel subclasses.

    class AddN(mlgrid.pyfunc.PythonModel):
        def load_context(self, context):
            self.n = float(open(context.artifacts["n"]).read())
        def predict(self, context, model_input, params=None):
            return model_input["x"] + self.n

    info = mlgrid.pyfunc.log_model(python_model=AddN(), name="model", artifacts={"n": "n.txt"})
    model = mlgrid.pyfunc.load_model(info.model_uri)   # also models:/name@alias, local folders
    model.predict(pandas.DataFrame({"x": [1.0]}))

Models saved by MLflow load too: its loader modules (mlflow.sklearn, mlflow.pyfunc.model,
mlflow.pytorch, mlflow.onnx) are read by mlgrid's own, others by the named module when installed."""
from __future__ import annotations

import importlib
import inspect
import logging
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field

import grpc

from mlgrid.exceptions import MlgridException
from mlgrid.models import Model, ModelInfo, ModelSignature
from mlgrid.models import saving
from mlgrid.models.environment import pinned
from mlgrid.models.signature import enforce_input, enforce_params
from mlgrid.models.uri import download_model

PYTHON_MODEL_FILE = "python_model.pkl"
ARTIFACTS_DIR = "artifacts"
# MLflow's loader modules that mlgrid reads itself, so MLflow's models load without mlflow installed.
MLFLOW_LOADERS = {
    "mlflow.sklearn": "mlgrid.sklearn",
    "mlflow.pyfunc.model": "mlgrid.pyfunc",
    "mlflow.pytorch": "mlgrid.pytorch",
    "mlflow.onnx": "mlgrid.onnx",
}
_log = logging.getLogger(__name__)


def _cloudpickle():
    try:
        import cloudpickle
    except ImportError:
        raise MlgridException("python_function models need cloudpickle: pip install 'mlgrid[models]'",
                              grpc.StatusCode.FAILED_PRECONDITION) from None
    return cloudpickle


@dataclass
class PythonModelContext:
    """What load_context and predict get: the local paths of the model's artifacts, by name, and its model_config."""

    artifacts: dict[str, str] = field(default_factory=dict)
    model_config: dict = field(default_factory=dict)


class PythonModel:
    """A custom model: subclass it, override predict (and load_context to read artifacts)."""

    def load_context(self, context: PythonModelContext) -> None:
        """Called once when the model loads, before any predict."""

    def predict(self, context: PythonModelContext, model_input, params: dict | None = None):
        raise NotImplementedError("a PythonModel must implement predict(self, context, model_input, params=None)")


def _takes(function, name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(p.kind == p.VAR_KEYWORD for p in parameters.values())


class PyFuncModel:
    """A loaded model: predict() checks the input against the signature, then calls the flavor."""

    def __init__(self, metadata: Model, implementation, model_dir: str, loader_module: str):
        self.metadata = metadata
        self.model_dir = model_dir
        self.loader_module = loader_module
        self._implementation = implementation
        self._takes_params = _takes(implementation.predict, "params")

    def predict(self, data, params: dict | None = None):
        data = enforce_input(data, self.metadata.get_input_schema())
        params = enforce_params(params, self.metadata.get_params_schema())
        if self._takes_params:
            return self._implementation.predict(data, params=params)
        return self._implementation.predict(data)

    def unwrap_python_model(self) -> PythonModel:
        """The PythonModel object of a python_function model."""
        python_model = getattr(self._implementation, "python_model", None)
        if python_model is None:
            raise MlgridException(f"this model's loader is {self.loader_module}; it has no PythonModel to unwrap",
                                  grpc.StatusCode.FAILED_PRECONDITION)
        return python_model

    def get_raw_model(self):
        """The flavor's own model object (the estimator, the torch module, the ONNX session...)."""
        return getattr(self._implementation, "raw_model", self._implementation)

    def __repr__(self) -> str:
        return f"PyFuncModel(loader_module={self.loader_module!r}, run_id={self.metadata.run_id!r}, path={self.metadata.artifact_path!r})"


def _check_python_version(conf: dict) -> None:
    saved = str(conf.get("python_version", ""))
    if saved and saved.split(".")[:2] != platform.python_version().split(".")[:2]:
        _log.warning("the model was saved with Python %s and loads in Python %s; it may not work", saved, platform.python_version())


def _loader(conf: dict) -> str:
    name = conf.get("loader_module")
    if not name:
        raise MlgridException("the model's python_function flavor names no loader_module", grpc.StatusCode.INVALID_ARGUMENT)
    if name == "mlflow.pyfunc.model" and "python_model" not in conf:
        return name  # MLflow's models-from-code: only mlflow itself loads them
    return MLFLOW_LOADERS.get(name, name)


def load_pyfunc_from_dir(model_dir: str, model_config: dict | None = None) -> PyFuncModel:
    """The model in a local folder, as a PyFuncModel."""
    metadata = Model.load(model_dir)
    conf = metadata.pyfunc_conf()
    if conf is None:
        raise MlgridException(
            f"the model at {model_dir} has no python_function flavor (it has {sorted(metadata.flavors)}); "
            "load it with its flavor's load_model", grpc.StatusCode.INVALID_ARGUMENT,
        )
    _check_python_version(conf)
    if conf.get("code"):
        code_dir = os.path.join(model_dir, conf["code"])
        if code_dir not in sys.path:
            sys.path.insert(0, code_dir)
    loader = _loader(conf)
    try:
        module = importlib.import_module(loader)
    except ImportError as error:
        raise MlgridException(f"cannot load the model: its loader module {loader} does not import ({error})",
                              grpc.StatusCode.FAILED_PRECONDITION) from None
    data_path = os.path.join(model_dir, conf["data"]) if conf.get("data") else model_dir
    config = {**(conf.get("config") or {}), **(model_config or {})}
    if _takes(module._load_pyfunc, "model_config"):
        implementation = module._load_pyfunc(data_path, model_config=config)
    else:
        implementation = module._load_pyfunc(data_path)
    return PyFuncModel(metadata, implementation, model_dir, loader)


def load_model(model_uri: str, dst_path: str | None = None, model_config: dict | None = None) -> PyFuncModel:
    """The model at `model_uri` (a local folder, runs:/<run_id>/<path>, models:/<name>/<version>,
    models:/<name>@<alias>, models:/<logged model id>, mlgrid-artifacts:/...) as a PyFuncModel."""
    return load_pyfunc_from_dir(download_model(model_uri, dst_path), model_config)


# ---------------------------------------------------------------- the python_function flavor itself


class _PythonModelWrapper:
    def __init__(self, python_model, context: PythonModelContext):
        self.python_model = python_model
        self.raw_model = python_model
        self._context = context
        self._with_context = "context" in inspect.signature(python_model.predict).parameters
        self._with_params = _takes(python_model.predict, "params")

    def predict(self, data, params: dict | None = None):
        args = (self._context, data) if self._with_context else (data,)
        return self.python_model.predict(*args, params=params) if self._with_params else self.python_model.predict(*args)


def _model_dir_of(path: str) -> str:
    """The model folder, given the path a loader is called with (the folder or a file in it)."""
    return path if os.path.isdir(path) else os.path.dirname(path)


def _load_pyfunc(path: str, model_config: dict | None = None):
    """Loader of python_function models (mlgrid's and MLflow's PythonModel pickles)."""
    model_dir = _model_dir_of(path)
    conf = Model.load(model_dir).pyfunc_conf()
    try:
        with open(os.path.join(model_dir, conf.get("python_model", PYTHON_MODEL_FILE)), "rb") as f:
            python_model = _cloudpickle().load(f)
    except ModuleNotFoundError as error:
        raise MlgridException(
            f"cannot unpickle the model's PythonModel: module {error.name!r} is missing "
            "(models saved with mlflow.pyfunc need mlflow installed; custom code belongs in code_paths)",
            grpc.StatusCode.FAILED_PRECONDITION,
        ) from None
    artifacts = {name: os.path.join(model_dir, entry["path"]) for name, entry in (conf.get("artifacts") or {}).items()}
    context = PythonModelContext(artifacts, dict(model_config or {}))
    python_model.load_context(context)
    return _PythonModelWrapper(python_model, context)


def _copy_artifacts(model_dir: str, artifacts: dict[str, str] | None) -> dict:
    """Copy each artifact (a local path, or a runs:/ or mlgrid-artifacts:/ URI) into artifacts/."""
    from mlgrid.artifacts import download_artifacts

    if not artifacts:
        return {}
    target_dir = os.path.join(model_dir, ARTIFACTS_DIR)
    os.makedirs(target_dir, exist_ok=True)
    entries = {}
    for name, uri in artifacts.items():
        uri = os.fspath(uri)
        if "://" in uri or uri.split(":", 1)[0] in ("runs", "mlgrid-artifacts", "mlflow-artifacts"):
            local = download_artifacts(artifact_uri=uri, dst_path=os.path.join(target_dir, name))
        elif os.path.exists(uri):
            local = os.path.join(target_dir, os.path.basename(os.path.normpath(uri)))
            if os.path.exists(local):
                local = os.path.join(target_dir, name, os.path.basename(os.path.normpath(uri)))
            os.makedirs(os.path.dirname(local), exist_ok=True)
            (shutil.copytree if os.path.isdir(uri) else shutil.copy2)(uri, local)
        else:
            raise MlgridException(f"artifact {name!r}: {uri} does not exist", grpc.StatusCode.INVALID_ARGUMENT)
        entries[name] = {"path": os.path.relpath(local, model_dir).replace(os.sep, "/"), "uri": uri}
    return entries


def save_model(
    path: str,
    python_model: PythonModel,
    artifacts: dict[str, str] | None = None,
    code_paths: list[str] | None = None,
    signature: ModelSignature | None = None,
    input_example=None,
    pip_requirements=None,
    extra_pip_requirements=None,
    conda_env=None,
    model_config: dict | None = None,
    mlmodel: Model | None = None,
) -> Model:
    """Save a PythonModel (cloudpickled), its artifacts and code into a new folder at `path`."""
    cloudpickle = _cloudpickle()
    if not callable(getattr(python_model, "predict", None)):
        raise MlgridException("python_model must be a PythonModel (an object with predict)", grpc.StatusCode.INVALID_ARGUMENT)
    with saving.new_model_dir(path) as model_dir:
        code = saving.copy_code_paths(model_dir, code_paths)
        artifact_entries = _copy_artifacts(model_dir, artifacts)
        with open(os.path.join(model_dir, PYTHON_MODEL_FILE), "wb") as f:
            cloudpickle.dump(python_model, f)
        model = mlmodel or Model()
        model.add_flavor(saving.PYFUNC, **saving.pyfunc_flavor(
            "mlgrid.pyfunc", code, python_model=PYTHON_MODEL_FILE, artifacts=artifact_entries or None,
            cloudpickle_version=cloudpickle.__version__, config=model_config,
        ))

        def predict(example):
            return _load_pyfunc(model_dir, model_config).predict(example)

        return saving.finish_model_dir(
            model_dir, model, pinned("mlgrid", "cloudpickle", "numpy", "pandas"), signature=signature,
            input_example=input_example, predict=predict, pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements, conda_env=conda_env,
        )


def log_model(python_model: PythonModel, name: str = "model", registered_model_name: str | None = None, **kwargs) -> ModelInfo:
    """Save the PythonModel as the run's artifacts `name` (the active run) and optionally register it;
    kwargs as save_model's."""
    return saving.log_model(save_model, name, registered_model_name, python_model=python_model, **kwargs)
