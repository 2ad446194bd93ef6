"""mlgrid: ML experiment tracking and artifacts over gRPC, with MLflow's API.

    import mlgrid
    mlgrid.set_experiment("mnist")
    with mlgrid.start_run():
        mlgrid.log_param("lr", 0.01)
        mlgrid.log_metric("loss", 0.3, step=1)
        mlgrid.log_artifact("model.pt")
        mlgrid.sklearn.log_model(estimator, name="model", registered_model_name="fraud")

    model = mlgrid.pyfunc.load_model("models:/fraud@champion")
"""
import importlib

from mlgrid import artifacts, entities, exceptions
from mlgrid.artifacts import download_artifacts, list_artifacts, load_dict, load_image, load_text
from mlgrid.client import MlgridClient
from mlgrid.exceptions import MlgridException
from mlgrid.fluent import (
    ActiveRun,
    active_run,
    delete_tag,
    end_run,
    flush,
    get_artifact_uri,
    get_run,
    get_tracking_uri,
    last_active_run,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_image,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    register_model,
    search_runs,
    set_experiment,
    set_tag,
    set_tags,
    set_tracking_uri,
    start_run,
)

__all__ = [
    "ActiveRun", "MlgridClient", "MlgridException", "active_run", "artifacts", "delete_tag",
    "download_artifacts", "end_run", "entities", "exceptions", "flush", "get_artifact_uri", "get_run",
    "get_tracking_uri", "last_active_run", "list_artifacts", "load_dict", "load_image", "load_text",
    "log_artifact", "log_artifacts", "log_dict", "log_figure", "log_image", "log_metric", "log_metrics",
    "log_param", "log_params", "log_text", "register_model", "search_runs", "set_experiment", "set_tag", "set_tags",
    "set_tracking_uri", "start_run",
]

# Model flavors import numpy, pandas and their libraries: loaded on first use (mlgrid.sklearn...).
_LAZY_MODULES = ("models", "onnx", "pyfunc", "pytorch", "sklearn")


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"mlgrid.{name}")
    raise AttributeError(f"module 'mlgrid' has no attribute {name!r}")
