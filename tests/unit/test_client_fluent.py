"""The fluent API over an in-memory stand-in for MlgridClient."""
import itertools
import os
import subprocess
import threading

import grpc
import pytest

import mlgrid
from mlgrid import fluent
from mlgrid.entities import Experiment, PagedList, Run, RunData, RunInfo
from mlgrid.exceptions import MlgridException

NOT_FOUND = grpc.StatusCode.NOT_FOUND


class InMemoryTracking:
    """The MlgridClient methods the fluent API calls, over dicts; `calls` records their order."""

    def __init__(self, uri):
        self.uri = uri
        self.experiments = {"0": Experiment("0", "Default", "a/0", "active")}
        self.runs: dict[str, Run] = {}
        self.points: dict[tuple[str, str], list[tuple[int, int, float]]] = {}
        self.batch_ids = set()
        self.calls = []
        self._ids = itertools.count(1)

    def close(self):
        pass

    def get_experiment(self, experiment_id):
        if experiment_id not in self.experiments:
            raise MlgridException(f"experiment {experiment_id} does not exist", NOT_FOUND)
        return self.experiments[experiment_id]

    def get_experiment_by_name(self, name):
        return next((e for e in self.experiments.values() if e.name == name), None)

    def create_experiment(self, name):
        experiment_id = str(len(self.experiments))
        self.experiments[experiment_id] = Experiment(experiment_id, name, f"a/{experiment_id}", "active")
        return experiment_id

    get_or_create_experiment = mlgrid.MlgridClient.get_or_create_experiment  # the real one, over these methods

    def create_run(self, experiment_id, tags=None, run_name=None):
        self.get_experiment(experiment_id)
        run_id = f"{next(self._ids):032x}"
        info = RunInfo(run_id, experiment_id, run_name or "generated", "u", "RUNNING", 1, None, "active", "")
        self.runs[run_id] = Run(info, RunData(tags=dict(tags or {})))
        return self.get_run(run_id)

    def get_run(self, run_id):
        if run_id not in self.runs:
            raise MlgridException(f"run {run_id} does not exist", NOT_FOUND)
        run = self.runs[run_id]
        metrics = {key: max(points)[2] for (rid, key), points in self.points.items() if rid == run_id}
        info = RunInfo(*(getattr(run.info, f) for f in RunInfo.__dataclass_fields__))
        return Run(info, RunData(metrics, dict(run.data.params), dict(run.data.tags)))

    def update_run(self, run_id, status=None, name=None):
        self.calls.append(("update_run", run_id, status))
        self.runs[run_id].info.status = status or self.runs[run_id].info.status

    def set_terminated(self, run_id, status="FINISHED"):
        self.calls.append(("set_terminated", run_id, status))
        self.runs[run_id].info.status = status
        self.runs[run_id].info.end_time = 2

    def log_param(self, run_id, key, value):
        self.log_batch(run_id, params=[mlgrid.entities.Param(key, str(value))])
        return value

    def set_tag(self, run_id, key, value):
        self.runs[run_id].data.tags[key] = str(value)

    def delete_tag(self, run_id, key):
        del self.runs[run_id].data.tags[key]

    def log_batch(self, run_id, metrics=(), params=(), tags=()):
        data = self.runs[run_id].data
        for param in params:
            if data.params.get(param.key, param.value) != param.value:
                raise MlgridException(f"param {param.key!r} is immutable", grpc.StatusCode.INVALID_ARGUMENT)
            data.params[param.key] = param.value
        data.tags.update({t.key: t.value for t in tags})

    def search_runs(self, experiment_ids, filter_string, run_view_type, max_results, order_by, page_token):
        self.calls.append(("search_runs", max_results, page_token))
        matching = sorted(r for r, run in self.runs.items() if run.info.experiment_id in experiment_ids)
        start = int(page_token or 0)
        end = start + max_results
        return PagedList([self.get_run(r) for r in matching[start:end]], str(end) if end < len(matching) else None)

    def iter_runs(self, experiment_ids, filter_string="", run_view_type=1, order_by=None, page_size=1000):
        token = None
        while True:
            page = self.search_runs(experiment_ids, filter_string, run_view_type, page_size, order_by, token)
            yield from page
            token = page.token
            if token is None:
                return

    def ingest(self, batches, timeout=None):
        self.calls.append(("ingest",))
        for batch in batches:
            if self.runs[batch.run_id].info.lifecycle_stage == "deleted":
                raise MlgridException(f"run {batch.run_id} is deleted", grpc.StatusCode.FAILED_PRECONDITION)
            if batch.batch_id not in self.batch_ids:
                self.batch_ids.add(batch.batch_id)
                for s in batch.metrics:
                    self.points.setdefault((batch.run_id, s.key), []).extend(zip(s.steps, s.timestamps, s.values))


@pytest.fixture
def tracking(monkeypatch):
    """A fresh fluent state whose client is an InMemoryTracking."""
    servers = {}
    monkeypatch.setattr(fluent, "MlgridClient", lambda uri: servers.setdefault(uri, InMemoryTracking(uri)))
    for name in ("_tracking_uri", "_experiment_id", "_client", "_batcher"):
        monkeypatch.setattr(fluent, name, None)
    for name in ("MLGRID_TRACKING_URI", "MLGRID_EXPERIMENT_NAME", "MLGRID_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)
    yield fluent._get_client()
    if fluent._batcher is not None:
        fluent._batcher.close()
    fluent._thread.active.clear()
    fluent._thread.last_run_id = None


def test_quickstart(tracking):
    experiment = mlgrid.set_experiment("mnist")
    with mlgrid.start_run(run_name="baseline") as run:
        mlgrid.log_params({"lr": 0.01, "batch_size": 64})
        for step in range(1000):
            mlgrid.log_metric("loss", 1 / (step + 1), step=step)
        mlgrid.log_metrics({"acc": 0.9, "f1": 0.8}, step=999)
        mlgrid.set_tag("stage", "dev")
        assert mlgrid.active_run() is run
    stored = tracking.get_run(run.info.run_id)
    assert stored.info.experiment_id == experiment.experiment_id and stored.info.run_name == "baseline"
    assert stored.info.status == "FINISHED" and stored.data.params == {"lr": "0.01", "batch_size": "64"}
    assert stored.data.metrics == {"loss": 1 / 1000, "acc": 0.9, "f1": 0.8}
    assert [p[0] for p in tracking.points[(run.info.run_id, "loss")]] == list(range(1000))
    assert mlgrid.active_run() is None and mlgrid.last_active_run().info.run_id == run.info.run_id


def test_end_run_stores_every_point_before_ending_the_run(tracking):
    with mlgrid.start_run() as run:
        mlgrid.log_metric("loss", 1.0)
    assert tracking.calls[-2:] == [("ingest",), ("set_terminated", run.info.run_id, "FINISHED")]


def test_log_metrics_share_one_timestamp_and_default_step(tracking):
    with mlgrid.start_run() as run:
        mlgrid.log_metrics({"a": 1, "b": 2})
    (a,), (b,) = tracking.points[(run.info.run_id, "a")], tracking.points[(run.info.run_id, "b")]
    assert a[0] == b[0] == 0 and a[1] == b[1] and (a[2], b[2]) == (1.0, 2.0)


@pytest.mark.parametrize("raised, status", [(ZeroDivisionError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_run_status_when_the_block_raises(tracking, raised, status):
    with pytest.raises(raised):
        with mlgrid.start_run() as run:
            raise raised()
    assert tracking.get_run(run.info.run_id).info.status == status and mlgrid.active_run() is None


def test_system_tags(tracking):
    with mlgrid.start_run(tags={"team": "vision"}) as run:
        pass
    tags = tracking.get_run(run.info.run_id).data.tags
    assert tags["team"] == "vision" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"] and tags["mlflow.source.name"] and "mlflow.runName" not in tags


def test_git_commit_of_the_source_file(tmp_path):
    here = os.path.abspath(__file__)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(here), capture_output=True, text=True)
    assert fluent._git_commit(here) == (head.stdout.strip() if head.returncode == 0 else None)
    outside = tmp_path / "train.py"
    outside.write_text("")
    assert fluent._git_commit(str(outside)) is None
    assert fluent._git_commit(str(tmp_path / "missing.py")) is None


def test_nested_runs(tracking):
    with mlgrid.start_run() as parent:
        with pytest.raises(MlgridException, match="is already active"):
            mlgrid.start_run()
        with mlgrid.start_run(nested=True) as child:
            assert mlgrid.active_run() is child
        assert mlgrid.active_run() is parent
    assert tracking.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert "mlflow.parentRunId" not in tracking.get_run(parent.info.run_id).data.tags


def test_leaving_a_run_ends_the_nested_runs_left_open(tracking):
    with mlgrid.start_run() as parent:
        child = mlgrid.start_run(nested=True)
    assert tracking.get_run(child.info.run_id).info.status == "FINISHED"
    assert tracking.get_run(parent.info.run_id).info.status == "FINISHED"


def test_logging_without_a_run_starts_one(tracking):
    mlgrid.log_metric("loss", 1.0)
    run = mlgrid.active_run()
    assert run is not None and run.info.experiment_id == "0"
    mlgrid.end_run()
    assert tracking.get_run(run.info.run_id).data.metrics == {"loss": 1.0}


def test_resume_a_run(tracking):
    with mlgrid.start_run() as run:
        pass
    with mlgrid.start_run(run_id=run.info.run_id, tags={"resumed": "yes"}) as resumed:
        assert resumed.info.status == "RUNNING" and resumed.data.tags["resumed"] == "yes"
    assert tracking.get_run(run.info.run_id).info.status == "FINISHED"


def test_params_are_sent_at_once_and_errors_raised_there(tracking):
    with mlgrid.start_run() as run:
        assert mlgrid.log_param("lr", 0.1) == 0.1
        with pytest.raises(MlgridException) as err:
            mlgrid.log_params({"lr": 0.2})
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        mlgrid.set_tags({"a": 1, "b": "x"})
        mlgrid.delete_tag("a")
    assert tracking.get_run(run.info.run_id).data.tags == {**fluent._system_tags(), "b": "x"}


def test_background_error_surfaces_from_flush(tracking):
    run = mlgrid.start_run()
    tracking.runs[run.info.run_id].info.lifecycle_stage = "deleted"
    mlgrid.log_metric("loss", 1.0)
    with pytest.raises(MlgridException) as err:
        mlgrid.flush()
    assert "deleted" in err.value.message
    mlgrid.flush()  # reported once
    tracking.runs[run.info.run_id].info.lifecycle_stage = "active"
    mlgrid.end_run()


def test_background_error_surfaces_from_the_next_log_metric(tracking):
    run = mlgrid.start_run()
    tracking.runs[run.info.run_id].info.lifecycle_stage = "deleted"
    mlgrid.log_metric("loss", 1.0)
    fluent._batcher.flush()  # as the sender thread would
    with pytest.raises(MlgridException, match="deleted"):
        mlgrid.log_metric("loss", 2.0)
    tracking.runs[run.info.run_id].info.lifecycle_stage = "active"
    mlgrid.end_run()


def test_end_run_raises_the_error_and_still_ends_the_run(tracking):
    run = mlgrid.start_run()
    tracking.runs[run.info.run_id].info.lifecycle_stage = "deleted"
    mlgrid.log_metric("loss", 1.0)
    with pytest.raises(MlgridException, match="deleted"):
        mlgrid.end_run()
    assert mlgrid.active_run() is None and tracking.runs[run.info.run_id].info.status == "FINISHED"


def test_set_experiment(tracking):
    created = mlgrid.set_experiment("new")
    assert mlgrid.set_experiment("new") == created and mlgrid.set_experiment(experiment_id="0").name == "Default"
    tracking.experiments[created.experiment_id].lifecycle_stage = "deleted"
    with pytest.raises(MlgridException, match="deleted"):
        mlgrid.set_experiment("new")
    with pytest.raises(MlgridException, match="exactly one"):
        mlgrid.set_experiment()


def test_experiment_from_the_environment(tracking, monkeypatch):
    monkeypatch.setenv("MLGRID_EXPERIMENT_ID", "0")
    assert fluent._experiment_id_for_runs() == "0"
    monkeypatch.setenv("MLGRID_EXPERIMENT_NAME", "from-env")
    with mlgrid.start_run() as run:
        pass
    assert tracking.experiments[run.info.experiment_id].name == "from-env"


def test_search_runs_reads_pages_up_to_max_results(tracking, monkeypatch):
    monkeypatch.setattr(fluent, "SEARCH_PAGE_SIZE", 2)
    for _ in range(5):
        with mlgrid.start_run():
            pass
    assert len(mlgrid.search_runs()) == 5
    assert len(mlgrid.search_runs(["0"], max_results=3)) == 3
    assert [c[1:] for c in tracking.calls if c[0] == "search_runs"][-2:] == [(2, None), (2, "2")]


def test_active_runs_are_per_thread(tracking):
    with mlgrid.start_run():
        seen = []
        worker = threading.Thread(target=lambda: seen.append(mlgrid.active_run()))
        worker.start()
        worker.join()
    assert seen == [None]


def test_tracking_uri(tracking, monkeypatch):
    assert mlgrid.get_tracking_uri() == "grpc://127.0.0.1:50051"
    monkeypatch.setenv("MLGRID_TRACKING_URI", "grpc://env:1")
    assert mlgrid.get_tracking_uri() == "grpc://env:1"
    mlgrid.set_tracking_uri("grpc://other:2")
    assert mlgrid.get_tracking_uri() == "grpc://other:2" and fluent._get_client().uri == "grpc://other:2"
    with pytest.raises(MlgridException, match="unsupported tracking URI"):
        mlgrid.set_tracking_uri("http://other:5000")


def test_exit_hook_ends_runs_finished_and_sends_points(tracking):
    parent = mlgrid.start_run()
    child = mlgrid.start_run(nested=True)
    mlgrid.log_metric("loss", 1.0)
    fluent._end_runs_at_exit()
    assert [tracking.get_run(r.info.run_id).info.status for r in (parent, child)] == ["FINISHED", "FINISHED"]
    assert tracking.get_run(child.info.run_id).data.metrics == {"loss": 1.0}


def test_log_metric_does_not_wait_for_the_server(tracking, monkeypatch):
    sending = threading.Event()
    release = threading.Event()

    def slow_ingest(batches, timeout=None):
        sending.set()
        release.wait(10)

    monkeypatch.setattr(tracking, "ingest", slow_ingest)
    with mlgrid.start_run():
        mlgrid.log_metric("loss", 1.0)
        fluent._batcher._wake.set()
        assert sending.wait(10)  # the sender thread is stuck on the server...
        mlgrid.log_metric("loss", 2.0)  # ...and logging goes on
        release.set()
