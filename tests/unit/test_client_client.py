"""MlgridClient without a server: URI parsing, request building, errors and retries, against a scripted stub."""
import pickle

import grpc
import pytest

import mlgrid.client as client_module
from mlgrid._retry import RETRY_SECONDS_ENV, retry_delays
from mlgrid.client import MlgridClient, grpc_target
from mlgrid.entities import Metric, Param, RunTag
from mlgrid.exceptions import MlgridException
from mlgrid.v1 import tracking_pb2 as pb

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


class FakeRpcError(grpc.RpcError):
    """What a failed call raises: an RpcError with code() and details()."""

    def __init__(self, code: grpc.StatusCode, details: str = ""):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class ScriptedStub:
    """Stands in for TrackingServiceStub: each RPC answers from its script, in order; an exception is raised."""

    def __init__(self, **scripts):
        self.scripts = {name: list(outcomes) for name, outcomes in scripts.items()}
        self.requests = {name: [] for name in scripts}

    def __getattr__(self, rpc):
        def call(request, timeout=None):
            self.requests[rpc].append(request)
            outcome = self.scripts[rpc].pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome(request) if callable(outcome) else outcome

        return call


@pytest.fixture
def sleeps(monkeypatch):
    slept = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    return slept


def client_with(**scripts) -> MlgridClient:
    client = MlgridClient("grpc://127.0.0.1:1")  # never connects: the stub is replaced
    client._stub = ScriptedStub(**scripts)
    return client


def run_response(run_id="a" * 32) -> pb.RunResponse:
    return pb.RunResponse(run=pb.Run(info=pb.RunInfo(run_id=run_id, status=pb.RUNNING)))


# tracking URI

@pytest.mark.parametrize("uri, target", [
    ("grpc://tracking.ml:50051", "tracking.ml:50051"),
    ("tracking.ml:7000", "tracking.ml:7000"),
    ("grpc://tracking.ml", "tracking.ml:50051"),
    ("grpc://tracking.ml:7000/", "tracking.ml:7000"),
    ("grpc://[::1]:7000", "[::1]:7000"),
])
def test_grpc_target(uri, target):
    assert grpc_target(uri) == target


@pytest.mark.parametrize("uri", ["http://tracking.ml:5000", "sqlite:///mlgrid.db", "tracking.ml:port", "", "grpc://"])
def test_unsupported_uri_is_refused(uri):
    with pytest.raises(MlgridException) as err:
        grpc_target(uri)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and "grpc://host:port" in err.value.message


def test_tracking_uri_from_argument_then_env_then_default(monkeypatch):
    monkeypatch.delenv("MLGRID_TRACKING_URI", raising=False)
    assert MlgridClient().tracking_uri == "grpc://127.0.0.1:50051"
    monkeypatch.setenv("MLGRID_TRACKING_URI", "grpc://env-host:1")
    assert MlgridClient().tracking_uri == "grpc://env-host:1"
    assert MlgridClient("grpc://arg-host:2").tracking_uri == "grpc://arg-host:2"


# errors

def test_exception_str_pickle_and_from_rpc_error():
    error = MlgridException.from_rpc_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "run x does not exist"))
    assert (error.code, error.message) == (grpc.StatusCode.NOT_FOUND, "run x does not exist")
    assert str(error) == "NOT_FOUND: run x does not exist"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.message) == (error.code, error.message)


def test_server_error_is_wrapped_and_not_retried(sleeps):
    client = client_with(GetRun=[FakeRpcError(grpc.StatusCode.NOT_FOUND, "run x does not exist")])
    with pytest.raises(MlgridException) as err:
        client.get_run("x")
    assert err.value.code == grpc.StatusCode.NOT_FOUND and err.value.message == "run x does not exist"
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert sleeps == []


def test_get_experiment_by_name_is_none_when_not_found():
    client = client_with(GetExperimentByName=[FakeRpcError(grpc.StatusCode.NOT_FOUND, "no such experiment")])
    assert client.get_experiment_by_name("missing") is None


# retries

def test_idempotent_call_retried_with_growing_backoff(sleeps):
    client = client_with(GetRun=[FakeRpcError(UNAVAILABLE), FakeRpcError(UNAVAILABLE), run_response()])
    assert client.get_run("a" * 32).info.run_id == "a" * 32
    assert len(client._stub.requests["GetRun"]) == 3
    assert len(sleeps) == 2 and sleeps[0] < sleeps[1]
    assert all(base <= slept <= 1.5 * base for base, slept in zip(retry_delays(), sleeps))


def test_the_retry_window_is_five_minutes_unless_set(monkeypatch):
    monkeypatch.delenv(RETRY_SECONDS_ENV, raising=False)
    assert 290 <= sum(retry_delays()) <= 300 and max(retry_delays()) == 10.0
    monkeypatch.setenv(RETRY_SECONDS_ENV, "3.1")
    assert retry_delays() == (0.1, 0.2, 0.4, 0.8, 1.6)
    monkeypatch.setenv(RETRY_SECONDS_ENV, "0")
    assert retry_delays() == ()
    monkeypatch.setenv(RETRY_SECONDS_ENV, "soon")
    with pytest.raises(MlgridException, match="MLGRID_CLIENT_RETRY_SECONDS"):
        retry_delays()


def test_retries_give_up_with_unavailable(sleeps, monkeypatch):
    monkeypatch.setenv(RETRY_SECONDS_ENV, "3.1")
    attempts = len(retry_delays()) + 1
    client = client_with(SetTag=[FakeRpcError(UNAVAILABLE, "connection refused")] * attempts)
    with pytest.raises(MlgridException) as err:
        client.set_tag("a" * 32, "k", "v")
    assert err.value.code == UNAVAILABLE and len(client._stub.requests["SetTag"]) == attempts
    assert len(sleeps) == attempts - 1


@pytest.mark.parametrize("call", [
    lambda c: c.create_run("0"),
    lambda c: c.create_experiment("e"),
    lambda c: c.log_metric("a" * 32, "loss", 1.0),
])
def test_non_idempotent_calls_are_not_retried(call, sleeps):
    client = client_with(**{rpc: [FakeRpcError(UNAVAILABLE)] for rpc in ("CreateRun", "CreateExperiment", "LogMetric")})
    with pytest.raises(MlgridException) as err:
        call(client)
    assert err.value.code == UNAVAILABLE and sleeps == []


def test_log_batch_retry_resends_the_same_request_id(sleeps):
    client = client_with(LogBatch=[FakeRpcError(UNAVAILABLE), pb.Empty()])
    client.log_batch("a" * 32, params=[Param("lr", "0.1")])
    first, second = client._stub.requests["LogBatch"]
    assert first.request_id and first.request_id == second.request_id


def test_history_read_retried_from_the_start(sleeps):
    pages = [pb.MetricSeries(steps=[0, 1], timestamps=[5, 6], values=[1.0, 0.5])]
    client = client_with(GetMetricHistory=[FakeRpcError(UNAVAILABLE), lambda request: iter(pages)])
    history = client.get_metric_history_columns("a" * 32, "loss")
    assert history.steps == [0, 1] and len(sleeps) == 1


def test_ingest_replays_batches_already_sent(sleeps):
    """A stream that fails after taking some batches is sent again from the first batch, same ids."""
    seen = []

    def fail_after_two(requests):
        seen.append([next(requests).batch_id, next(requests).batch_id])
        raise FakeRpcError(UNAVAILABLE)

    def take_all(requests):
        seen.append([b.batch_id for b in requests])
        return pb.IngestSummary(batches=len(seen[-1]))

    client = client_with(IngestMetrics=[fail_after_two, take_all])
    batches = (pb.IngestBatch(batch_id=f"b{i}", run_id="r") for i in range(4))  # one-shot, like a generator
    assert client.ingest(batches).batches == 4
    assert seen == [["b0", "b1"], ["b0", "b1", "b2", "b3"]]


# requests and responses

def test_create_run_request(monkeypatch):
    monkeypatch.setattr(client_module.time, "time", lambda: 1_700_000_000.5)
    client = client_with(CreateRun=[run_response()])
    client.create_run("3", tags={"mlflow.user": "ann", "n": 1}, run_name="trial")
    (request,) = client._stub.requests["CreateRun"]
    assert (request.experiment_id, request.user_id, request.run_name) == ("3", "ann", "trial")
    assert request.start_time == 1_700_000_000_500
    assert {t.key: t.value for t in request.tags} == {"mlflow.user": "ann", "n": "1"}


def test_set_terminated_and_update_run_requests():
    client = client_with(UpdateRun=[pb.UpdateRunResponse(), pb.UpdateRunResponse()])
    client.set_terminated("a" * 32, "FAILED", end_time=42)
    client.update_run("a" * 32, name="renamed")
    terminated, renamed = client._stub.requests["UpdateRun"]
    assert (terminated.status, terminated.end_time) == (pb.FAILED, 42)
    assert (renamed.status, renamed.run_name, renamed.HasField("end_time")) == (pb.RUN_STATUS_UNSPECIFIED, "renamed", False)


def test_log_param_and_metric_convert_values(monkeypatch):
    monkeypatch.setattr(client_module.time, "time", lambda: 12.0)
    client = client_with(LogParam=[pb.Empty()], LogMetric=[pb.Empty()])
    assert client.log_param("a" * 32, "batch_size", 64) == 64
    client.log_metric("a" * 32, "loss", 1)
    assert client._stub.requests["LogParam"][0].value == "64"
    metric = client._stub.requests["LogMetric"][0]
    assert (metric.value, metric.timestamp, metric.step) == (1.0, 12_000, 0)


def test_log_batch_splits_at_the_server_limits():
    client = client_with(LogBatch=[pb.Empty()] * 3)
    metrics = [Metric("m", float(i), i, i) for i in range(2500)]
    tags = [RunTag(f"t{i}", "v") for i in range(150)]
    client.log_batch("a" * 32, metrics=metrics, tags=tags)
    requests = client._stub.requests["LogBatch"]
    assert [(len(r.metrics), len(r.tags)) for r in requests] == [(1000, 100), (1000, 50), (500, 0)]
    assert [m.value for r in requests for m in r.metrics] == [float(i) for i in range(2500)]
    assert len({r.request_id for r in requests}) == 3


def test_empty_log_batch_still_calls():
    client = client_with(LogBatch=[pb.Empty()])
    client.log_batch("a" * 32)
    assert len(client._stub.requests["LogBatch"]) == 1


def test_search_runs_page():
    client = client_with(SearchRuns=[pb.SearchRunsResponse(runs=[run_response().run], next_page_token="")])
    page = client.search_runs("3", "metrics.acc > 0.9", order_by=["metrics.acc DESC"], max_results=10)
    assert [r.info.run_id for r in page] == ["a" * 32] and page.token is None
    (request,) = client._stub.requests["SearchRuns"]
    assert list(request.experiment_ids) == ["3"] and request.filter == "metrics.acc > 0.9"
    assert (request.max_results, list(request.order_by)) == (10, ["metrics.acc DESC"])


def run_pages():
    return {
        "": pb.SearchRunsResponse(runs=[run_response("1" * 32).run, run_response("2" * 32).run], next_page_token="p2"),
        "p2": pb.SearchRunsResponse(runs=[run_response("3" * 32).run], next_page_token="p3"),
        "p3": pb.SearchRunsResponse(runs=[]),
    }


def stream_from(pages, fail_after=None):
    """A SearchRunsStream answer: the pages from the request's token on, optionally dropping after some."""

    def answer(request):
        token, sent = request.page_token, 0
        while True:
            if sent == fail_after:
                raise FakeRpcError(UNAVAILABLE, "connection reset")
            page = pages[token]
            yield page
            sent += 1
            token = page.next_page_token
            if not token:
                return

    return answer


def test_iter_runs_streams_every_page():
    client = client_with(SearchRunsStream=[stream_from(run_pages())])
    assert [r.info.run_id[0] for r in client.iter_runs(["0"], page_size=2)] == ["1", "2", "3"]
    (request,) = client._stub.requests["SearchRunsStream"]
    assert request.max_results == 2 and request.experiment_ids == ["0"]


def test_iter_runs_resumes_after_the_last_page_received(sleeps):
    pages = run_pages()
    client = client_with(SearchRunsStream=[stream_from(pages, fail_after=1), stream_from(pages)])
    assert [r.info.run_id[0] for r in client.iter_runs(["0"], page_size=2)] == ["1", "2", "3"]  # nothing twice
    assert [r.page_token for r in client._stub.requests["SearchRunsStream"]] == ["", "p2"]
    assert len(sleeps) == 1


def test_iter_experiments_follows_page_tokens():
    def page(request):
        if request.page_token:
            return pb.SearchExperimentsResponse(experiments=[pb.Experiment(experiment_id="2")])
        return pb.SearchExperimentsResponse(experiments=[pb.Experiment(experiment_id="1")], next_page_token="t")

    client = client_with(SearchExperiments=[page, page])
    assert [e.experiment_id for e in client.iter_experiments(page_size=1)] == ["1", "2"]


def test_metric_history_from_streamed_pages():
    pages = [pb.MetricSeries(key="loss", steps=[0, 1], timestamps=[10, 11], values=[0.5, 0.25]),
             pb.MetricSeries(key="loss", steps=[2], timestamps=[12], values=[0.125])]
    client = client_with(GetMetricHistory=[lambda request: iter(pages)] * 2)
    history = client.get_metric_history_columns("a" * 32, "loss")
    assert (history.steps, history.timestamps, history.values) == ([0, 1, 2], [10, 11, 12], [0.5, 0.25, 0.125])
    assert client.get_metric_history("a" * 32, "loss") == [
        Metric("loss", 0.5, 10, 0), Metric("loss", 0.25, 11, 1), Metric("loss", 0.125, 12, 2)
    ]


def test_metric_history_bulk_groups_pages_by_run_in_requests_of_100():
    def stream(request):
        return iter([pb.MetricSeries(run_id=run_id, steps=[int(run_id)], timestamps=[0], values=[1.0])
                     for run_id in request.run_ids])

    client = client_with(GetMetricHistoryBulk=[stream, stream, stream])
    run_ids = [str(i) for i in range(250)]
    histories = client.get_metric_history_bulk(run_ids, "loss")
    assert list(histories) == run_ids and histories["249"].steps == [249]
    assert [len(r.run_ids) for r in client._stub.requests["GetMetricHistoryBulk"]] == [100, 100, 50]



def test_unreachable_server_is_unavailable(monkeypatch):
    monkeypatch.setenv(RETRY_SECONDS_ENV, "0.1")  # one retry
    with pytest.raises(MlgridException) as err:
        MlgridClient("grpc://127.0.0.1:1").get_experiment("0")  # nothing listens on port 1
    assert err.value.code == UNAVAILABLE
