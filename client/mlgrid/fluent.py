"""The fluent API, as mlflow's: a stack of active runs per thread, and functions that log to the top one.

Metrics are buffered and sent in the background (see _batching); an error the
server returns for them is raised from the next log_metric, flush() or end_run().
"""
from __future__ import annotations

import atexit
import functools
import itertools
import logging
import os
import subprocess
import sys
import threading
import time

import grpc

from mlgrid import _object_files
from mlgrid._batching import MetricBatcher
from mlgrid.client import DEFAULT_TRACKING_URI, TRACKING_URI_ENV, MlgridClient, current_user, grpc_target
from mlgrid.entities import Experiment, ModelVersion, Param, Run, RunTag, ViewType
from mlgrid.exceptions import MlgridException

EXPERIMENT_NAME_ENV = "MLGRID_EXPERIMENT_NAME"
EXPERIMENT_ID_ENV = "MLGRID_EXPERIMENT_ID"
RUN_ID_ENV = "MLGRID_RUN_ID"  # set by `mlgrid run`: the first start_run() attaches to that run
DEFAULT_EXPERIMENT_ID = "0"
PARENT_RUN_ID_TAG = "mlflow.parentRunId"
SEARCH_PAGE_SIZE = 1000
GIT_TIMEOUT_S = 2

_logger = logging.getLogger(__name__)

_tracking_uri: str | None = None
_experiment_id: str | None = None  # set by set_experiment
_client: MlgridClient | None = None
_batcher: MetricBatcher | None = None
_session_lock = threading.Lock()


class _ThreadRuns(threading.local):
    def __init__(self):
        self.active: list[ActiveRun] = []  # innermost last
        self.last_run_id: str | None = None


_thread = _ThreadRuns()


class ActiveRun(Run):
    """The run start_run began; used with `with`, it ends FINISHED, FAILED if the block raised, KILLED on Ctrl-C."""

    __slots__ = ()

    def __init__(self, run: Run):
        Run.__init__(self, run.info, run.data, run.inputs)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "KILLED"
        else:
            status = "FAILED"
        while any(run is self for run in _thread.active):  # runs nested in it and left open end too
            end_run(status)


# tracking server and experiment

def set_tracking_uri(uri: str) -> None:
    """Use the tracking server at `uri` (grpc://host:port); points buffered for the previous one are sent first."""
    global _tracking_uri, _client, _batcher
    grpc_target(uri)  # refuse a malformed URI now
    if uri == _tracking_uri:
        return
    with _session_lock:
        old_client, old_batcher = _client, _batcher
        _tracking_uri, _client, _batcher = uri, None, None
    errors = []
    if old_batcher is not None:
        old_batcher.close()  # sends what was logged to the previous server
        errors = list(old_batcher.pop_errors().values())
    if old_client is not None:
        old_client.close()
    if errors:
        raise MlgridException("; ".join(e.message for e in errors), errors[0].code)


def get_tracking_uri() -> str:
    return _tracking_uri or os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


def _get_client() -> MlgridClient:
    global _client
    with _session_lock:
        if _client is None:
            _client = MlgridClient(get_tracking_uri())
        return _client


def _get_batcher() -> MetricBatcher:
    global _batcher
    client = _get_client()
    with _session_lock:
        if _batcher is None:
            _batcher = MetricBatcher(client)
        return _batcher


def set_experiment(experiment_name: str | None = None, experiment_id: str | None = None) -> Experiment:
    """Make the experiment (by name: created if missing) the one new runs go to."""
    global _experiment_id
    if (experiment_name is None) == (experiment_id is None):
        raise MlgridException("set_experiment needs exactly one of experiment_name and experiment_id",
                              grpc.StatusCode.INVALID_ARGUMENT)
    if experiment_id is not None:
        experiment = _get_client().get_experiment(str(experiment_id))
    else:
        experiment = _get_client().get_or_create_experiment(experiment_name)
    if experiment.lifecycle_stage == "deleted":
        raise MlgridException(
            f"Cannot set the deleted experiment {experiment.name!r} (id {experiment.experiment_id}) as the active "
            "experiment; restore it first", grpc.StatusCode.FAILED_PRECONDITION,
        )
    _experiment_id = experiment.experiment_id
    return experiment


def _experiment_id_for_runs() -> str:
    if _experiment_id is not None:
        return _experiment_id
    if os.environ.get(EXPERIMENT_NAME_ENV):
        return _get_client().get_or_create_experiment(os.environ[EXPERIMENT_NAME_ENV]).experiment_id
    return os.environ.get(EXPERIMENT_ID_ENV) or DEFAULT_EXPERIMENT_ID


# runs

def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    tags: dict | None = None,
) -> ActiveRun:
    """Start a run (or resume run `run_id`) and make it this thread's active run. As mlflow with
    MLFLOW_RUN_ID, a run named by MLGRID_RUN_ID (`mlgrid run` sets it) is resumed by the first call."""
    active = _thread.active
    if active and not nested:
        raise MlgridException(
            f"Run with UUID {active[-1].info.run_id} is already active. To start a new run, first end the current "
            "run with mlgrid.end_run(). To start a nested run, call start_run with nested=True",
            grpc.StatusCode.FAILED_PRECONDITION,
        )
    client = _get_client()
    if not run_id and not active and os.environ.get(RUN_ID_ENV):
        run_id = os.environ.pop(RUN_ID_ENV)
    if run_id:
        run = _resume_run(client, run_id, experiment_id, run_name, tags)
    else:
        run_tags = _system_tags()
        if active:
            run_tags[PARENT_RUN_ID_TAG] = active[-1].info.run_id
        run_tags.update(tags or {})
        run = client.create_run(experiment_id or _experiment_id_for_runs(), tags=run_tags, run_name=run_name)
    active_run = ActiveRun(run)
    active.append(active_run)
    return active_run


def _resume_run(client: MlgridClient, run_id: str, experiment_id: str | None, run_name: str | None, tags: dict | None) -> Run:
    run = client.get_run(run_id)
    if run.info.lifecycle_stage == "deleted":
        raise MlgridException(f"Cannot start run with ID {run_id} because it is in the deleted state",
                              grpc.StatusCode.FAILED_PRECONDITION)
    if experiment_id is not None and str(experiment_id) != run.info.experiment_id:
        raise MlgridException(
            f"run {run_id} belongs to experiment {run.info.experiment_id}, not {experiment_id}",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    client.update_run(run_id, status="RUNNING", name=run_name)
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return client.get_run(run_id)


def end_run(status: str = "FINISHED") -> None:
    """Store the metrics still buffered, then end this thread's active run with `status`."""
    active = _thread.active
    if not active:
        return
    run_id = active[-1].info.run_id
    try:
        if _batcher is not None:
            _batcher.flush()
        _get_client().set_terminated(run_id, status)
    finally:
        active.pop()
        _thread.last_run_id = run_id
    if _batcher is not None:
        _batcher.raise_pending((run_id,))


def active_run() -> ActiveRun | None:
    return _thread.active[-1] if _thread.active else None


def last_active_run() -> Run | None:
    """The active run, else the last run this thread ended (as stored now), else None."""
    if _thread.active:
        return _thread.active[-1]
    return get_run(_thread.last_run_id) if _thread.last_run_id else None


def get_run(run_id: str) -> Run:
    return _get_client().get_run(run_id)


def register_model(model_uri: str, name: str, tags: dict | None = None) -> ModelVersion:
    """Register `model_uri` (e.g. runs:/<run_id>/model) as a new version of `name`, created when missing."""
    return _get_client().register_model(model_uri, name, tags)


def search_runs(
    experiment_ids: list[str] | None = None,
    filter_string: str = "",
    run_view_type: int = ViewType.ACTIVE_ONLY,
    max_results: int = 100_000,
    order_by: list[str] | None = None,
) -> list[Run]:
    """Up to max_results matching runs of `experiment_ids` (default: the active experiment)."""
    runs = _get_client().iter_runs(
        experiment_ids or [_experiment_id_for_runs()], filter_string, run_view_type, order_by,
        page_size=min(max_results, SEARCH_PAGE_SIZE),
    )
    return list(itertools.islice(runs, max_results))


def _active_run_id() -> str:
    """The active run's id; a run is started when there is none, as in mlflow."""
    active = _thread.active
    return active[-1].info.run_id if active else start_run().info.run_id


# logging

def log_metric(key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
    """Buffer a point of metric `key` (step 0 and the current time unless given); it is sent in the background."""
    active = _thread.active  # _active_run_id() inlined: this runs once per training step
    run_id = active[-1].info.run_id if active else _active_run_id()
    (_batcher or _get_batcher()).add(run_id, key, value, step, timestamp)


def log_metrics(metrics: dict[str, float], step: int | None = None, timestamp: int | None = None) -> None:
    run_id = _active_run_id()
    batcher = _batcher or _get_batcher()
    timestamp = int(time.time() * 1000) if timestamp is None else timestamp
    for key, value in metrics.items():
        batcher.add(run_id, key, value, step, timestamp)


def log_param(key: str, value):
    """Log a param now; logging a different value for the same key raises INVALID_ARGUMENT."""
    return _get_client().log_param(_active_run_id(), key, value)


def log_params(params: dict) -> None:
    _get_client().log_batch(_active_run_id(), params=[Param(k, str(v)) for k, v in params.items()])


def set_tag(key: str, value) -> None:
    _get_client().set_tag(_active_run_id(), key, value)


def set_tags(tags: dict) -> None:
    _get_client().log_batch(_active_run_id(), tags=[RunTag(k, str(v)) for k, v in tags.items()])


def delete_tag(key: str) -> None:
    _get_client().delete_tag(_active_run_id(), key)


# artifacts of the active run (a run is started when there is none, as in mlflow)

def log_artifact(local_path: str, artifact_path: str | None = None) -> None:
    """Store a local file in the run's artifacts, in folder `artifact_path` (default: the root)."""
    _get_client().log_artifact(_active_run_id(), local_path, artifact_path)


def log_artifacts(local_dir: str, artifact_path: str | None = None) -> None:
    """Store every file under a local folder in the run's folder `artifact_path`."""
    _get_client().log_artifacts(_active_run_id(), local_dir, artifact_path)


def log_text(text: str, artifact_file: str) -> None:
    """Store `text` as the artifact file `artifact_file` (e.g. "notes/summary.txt")."""
    _object_files.log_object(_get_client(), _active_run_id(), artifact_file, _object_files.write_text, text)


def log_dict(dictionary: dict, artifact_file: str) -> None:
    """Store `dictionary` as JSON, or YAML when artifact_file ends in .yaml or .yml."""
    _object_files.log_object(_get_client(), _active_run_id(), artifact_file, _object_files.write_dict, dictionary)


def log_image(image, artifact_file: str) -> None:
    """Store a numpy array or PIL image in the format the file name says (needs pillow)."""
    _object_files.log_object(_get_client(), _active_run_id(), artifact_file, _object_files.write_image, image)


def log_figure(figure, artifact_file: str) -> None:
    """Store a matplotlib figure in the format the file name says (.png, .svg, .pdf...)."""
    _object_files.log_object(_get_client(), _active_run_id(), artifact_file, _object_files.write_figure, figure)


def get_artifact_uri(artifact_path: str | None = None) -> str:
    """The active run's artifact URI, or that of `artifact_path` under it."""
    active = _thread.active
    uri = active[-1].info.artifact_uri if active else get_run(_active_run_id()).info.artifact_uri
    return f"{uri.rstrip('/')}/{artifact_path.lstrip('/')}" if artifact_path else uri


def flush() -> None:
    """Block until every metric point logged so far is stored; raise an error the server returned for them."""
    if _batcher is None:
        return
    _batcher.flush()
    _batcher.raise_pending([run.info.run_id for run in _thread.active])


# system tags (MLflow's keys)

def _system_tags() -> dict[str, str]:
    source = _source_name()
    tags = {"mlflow.user": current_user(), "mlflow.source.name": source, "mlflow.source.type": "LOCAL"}
    commit = _git_commit(source)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


def _source_name() -> str:
    main_file = getattr(sys.modules.get("__main__"), "__file__", None) or (sys.argv[0] if sys.argv else "")
    if main_file and os.path.isfile(main_file):
        return os.path.abspath(main_file)
    return main_file or "<console>"


@functools.cache
def _git_commit(source: str) -> str | None:
    if not os.path.isfile(source):
        return None
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=os.path.dirname(source),
            capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


@atexit.register
def _end_runs_at_exit() -> None:
    """At exit, as mlflow: store the buffered points and end the runs left active, FINISHED."""
    while _thread.active:
        run_id = _thread.active[-1].info.run_id
        try:
            end_run()
        except Exception as error:  # nobody is left to raise it to
            _logger.warning("mlgrid: ending run %s at exit failed: %s", run_id, error)
    if _batcher is not None:
        _batcher.close()
        for error in _batcher.pop_errors().values():
            _logger.warning("mlgrid: %s", error)
