"""What every flavor's save_model and log_model share: the model folder, code paths, signature and
example, environment files, and logging the folder to a run (optionally registering it)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc

from mlgrid.exceptions import MlgridException
from mlgrid.models import environment
from mlgrid.models.input_example import save_input_example
from mlgrid.models.model import PYFUNC, Model
from mlgrid.models.signature import ModelSignature, infer_signature

CODE_DIR = "code"
LOG_MODEL_HISTORY_TAG = "mlflow.log-model.history"
MAX_TAG_VALUE = 8000
_log = logging.getLogger(__name__)


@contextlib.contextmanager
def new_model_dir(path: str) -> Iterator[str]:
    """The (absent or empty) folder a model is saved into, removed again if saving fails."""
    path = os.path.abspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise MlgridException(f"cannot save a model at {path}: it already exists; choose a new path", grpc.StatusCode.ALREADY_EXISTS)
    os.makedirs(path, exist_ok=True)
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def copy_code_paths(model_dir: str, code_paths: list[str] | None) -> str | None:
    """Copy each file or folder of `code_paths` into the model's code/ folder (put on sys.path when
    the model loads); returns "code", or None when there is none."""
    if not code_paths:
        return None
    code_dir = os.path.join(model_dir, CODE_DIR)
    os.makedirs(code_dir, exist_ok=True)
    for source in code_paths:
        target = os.path.join(code_dir, os.path.basename(os.path.normpath(source)))
        if os.path.isdir(source):
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif os.path.isfile(source):
            shutil.copy2(source, target)
        else:
            raise MlgridException(f"code path {source} does not exist", grpc.StatusCode.INVALID_ARGUMENT)
    return CODE_DIR


def pyfunc_flavor(loader_module: str, code: str | None = None, **conf) -> dict:
    """The python_function flavor entry: how any tool loads the model as a generic predictor."""
    return {
        "loader_module": loader_module,
        "code": code,
        "env": dict(environment.ENV_FILES),
        "python_version": platform.python_version(),
        **conf,
    }


def _signature(signature, input_example, predict: Callable | None) -> ModelSignature | None:
    if signature is not None or input_example is None:
        return signature
    inputs_only = infer_signature(input_example)
    if predict is None:
        return inputs_only
    try:
        return infer_signature(input_example, predict(input_example))
    except Exception as error:  # the output schema is optional: say why it is missing
        _log.warning("inferred the model's input schema but not its output schema (%s)", error)
        return inputs_only


def finish_model_dir(
    model_dir: str,
    model: Model,
    default_requirements: list[str],
    *,
    signature: ModelSignature | None = None,
    input_example=None,
    predict: Callable | None = None,
    pip_requirements=None,
    extra_pip_requirements=None,
    conda_env=None,
) -> Model:
    """Write the example, the environment files and the MLmodel into a folder that holds the model's
    files; the signature is inferred from the input example (and `predict` on it) when not given."""
    model.signature = _signature(signature, input_example, predict)
    if input_example is not None:
        model.saved_input_example_info = save_input_example(model_dir, input_example)
    environment.write_environment(model_dir, default_requirements, pip_requirements, extra_pip_requirements, conda_env)
    model.model_size_bytes = sum(
        os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(model_dir) for name in names
    )
    model.save(model_dir)
    return model


@dataclass(frozen=True)
class ModelInfo:
    """What log_model returns, as mlflow's ModelInfo."""

    artifact_path: str
    run_id: str
    model_uri: str
    model_uuid: str
    flavors: dict
    signature: ModelSignature | None
    saved_input_example_info: dict | None
    utc_time_created: str
    metadata: Model
    registered_model_version: int | None = None


def _check_name(name: str) -> str:
    if not name or name != posixpath.normpath(name) or name.startswith("/") or "\\" in name or name == "..":
        raise MlgridException(
            f"invalid model name {name!r}: a relative path within the run's artifacts, such as 'model'",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    return name


def _record_history(client, run_id: str, model: Model) -> None:
    """Append the model to the run's mlflow.log-model.history tag, which MLflow's UI reads."""
    entry = {k: v for k, v in model.to_dict().items() if k not in ("signature", "saved_input_example_info")}
    history = json.loads(client.get_run(run_id).data.tags.get(LOG_MODEL_HISTORY_TAG, "[]"))
    history.append(entry)
    value = json.dumps(history)
    if len(value) <= MAX_TAG_VALUE:
        client.set_tag(run_id, LOG_MODEL_HISTORY_TAG, value)


def log_model(save: Callable[..., Model], name: str, registered_model_name: str | None = None, run_id: str | None = None, **save_kwargs) -> ModelInfo:
    """Save the model with the flavor's `save` into a temporary folder, store the folder as the
    artifacts `name` of the run (the active run, or `run_id`), and register it when asked."""
    from mlgrid.fluent import _active_run_id, _get_client

    name = _check_name(name)
    client = _get_client()
    run_id = run_id or _active_run_id()
    with tempfile.TemporaryDirectory(prefix="mlgrid-model-") as tmp:
        model_dir = os.path.join(tmp, "model")
        model = save(path=model_dir, mlmodel=Model(artifact_path=name, run_id=run_id), **save_kwargs)
        client.log_artifacts(run_id, model_dir, name)
    _record_history(client, run_id, model)
    model_uri = f"runs:/{run_id}/{name}"
    version = client.register_model(model_uri, registered_model_name).version if registered_model_name else None
    return ModelInfo(
        artifact_path=name, run_id=run_id, model_uri=model_uri, model_uuid=model.model_uuid, flavors=model.flavors,
        signature=model.signature, saved_input_example_info=model.saved_input_example_info,
        utc_time_created=model.utc_time_created, metadata=model,
        registered_model_version=int(version) if version is not None else None,
    )


__all__ = ["PYFUNC", "ModelInfo", "copy_code_paths", "finish_model_dir", "log_model", "new_model_dir", "pyfunc_flavor"]
