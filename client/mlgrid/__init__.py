"""mlgrid: ML experiment tracking over gRPC, with MLflow's API.

    import mlgrid
    mlgrid.set_experiment("mnist")
    with mlgrid.start_run():
        mlgrid.log_param("lr", 0.01)
        mlgrid.log_metric("loss", 0.3, step=1)
"""
from mlgrid import entities, exceptions
from mlgrid.client import MlgridClient
from mlgrid.exceptions import MlgridException
from mlgrid.fluent import (
    ActiveRun,
    active_run,
    delete_tag,
    end_run,
    flush,
    get_run,
    get_tracking_uri,
    last_active_run,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    search_runs,
    set_experiment,
    set_tag,
    set_tags,
    set_tracking_uri,
    start_run,
)

__all__ = [
    "ActiveRun", "MlgridClient", "MlgridException", "active_run", "delete_tag", "end_run", "entities",
    "exceptions", "flush", "get_run", "get_tracking_uri", "last_active_run", "log_metric", "log_metrics",
    "log_param", "log_params", "search_runs", "set_experiment", "set_tag", "set_tags", "set_tracking_uri",
    "start_run",
]
