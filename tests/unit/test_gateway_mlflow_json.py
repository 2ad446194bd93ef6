"""The gateway's MLflow JSON adapter (mlflow_json) and its route table (rest_routes), without a server."""
import base64
import math

import pytest
from multidict import MultiDict

from mlgrid.v1 import registry_pb2, tracking_pb2
from services.common.errors import InvalidArgument
from services.gateway import mlflow_json
from services.gateway.mlflow_json import Codecs, ParkedStreams, endpoint, page_token
from services.gateway.rest_routes import routes

CODECS = Codecs()
TRACKING = tracking_pb2.DESCRIPTOR.services_by_name["TrackingService"]
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["ModelRegistryService"]


def codec(message_class):
    return CODECS.get(message_class.DESCRIPTOR)


def test_tags_lists_become_maps_and_back():
    request = codec(tracking_pb2.CreateExperimentRequest).decode(
        {"name": "e", "tags": [{"key": "team", "value": "a"}, {"key": "empty", "value": ""}]})
    assert dict(request.tags) == {"team": "a", "empty": ""}
    assert dict(codec(tracking_pb2.CreateExperimentRequest).decode({"tags": {"k": "v"}}).tags) == {"k": "v"}
    experiment = tracking_pb2.Experiment(experiment_id="1", tags={"team": "a"})
    assert codec(tracking_pb2.Experiment).encode(experiment) == {"experiment_id": "1", "tags": [{"key": "team", "value": "a"}]}


def test_run_data_and_info_as_mlflow_writes_them():
    run = tracking_pb2.Run(
        info=tracking_pb2.RunInfo(run_id="r", status=tracking_pb2.FINISHED, start_time=2**40, artifact_uri="mlgrid-artifacts:/1/r/artifacts"),
        data=tracking_pb2.RunData(metrics=[tracking_pb2.Metric(key="m", value=math.nan, step=3)], params={"p": "1"}),
    )
    assert codec(tracking_pb2.Run).encode(run) == {
        "info": {"run_id": "r", "run_uuid": "r", "status": "FINISHED", "start_time": 2**40,
                 "artifact_uri": "mlflow-artifacts:/1/r/artifacts"},
        "data": {"metrics": [{"key": "m", "value": "NaN", "timestamp": 0, "step": 3}], "params": [{"key": "p", "value": "1"}]},
    }
    assert codec(tracking_pb2.RunInfo).encode(tracking_pb2.RunInfo(end_time=0)) == {"end_time": 0}  # optional: set is shown


def test_a_metric_at_zero_is_written_whole_as_mlflow_does():
    assert codec(tracking_pb2.Metric).encode(tracking_pb2.Metric(key="loss")) == {"key": "loss", "value": 0.0, "timestamp": 0, "step": 0}
    written = codec(tracking_pb2.Metric).encode(tracking_pb2.Metric(key="acc", value=0.5, step=2, model_id="m-1"))
    assert written == {"key": "acc", "value": 0.5, "timestamp": 0, "step": 2, "model_id": "m-1"}


def test_numbers_enums_and_aliases_are_read_as_protobuf_json_allows():
    read = codec(tracking_pb2.LogMetricRequest).decode
    request = read({"run_uuid": "r", "key": "m", "value": "-Infinity", "timestamp": "1700000000000", "step": 2.0})
    assert (request.run_id, request.value, request.timestamp, request.step) == ("r", -math.inf, 1_700_000_000_000, 2)
    assert math.isnan(read({"value": "NaN"}).value)
    assert read({"run_id": "a", "run_uuid": "b"}).run_id == "a"
    assert read({"run_uuid": "b", "run_id": "a"}).run_id == "a"
    assert not read({"value": None, "future_field": [1]}).HasField("timestamp")  # null is unset; unknown fields ignored
    update = codec(tracking_pb2.UpdateRunRequest).decode({"status": "KILLED"})
    assert update.status == tracking_pb2.KILLED
    assert codec(tracking_pb2.UpdateRunRequest).decode({"status": 3}).status == tracking_pb2.FINISHED


@pytest.mark.parametrize("obj, field", [
    ({"step": 1.5}, "step"),
    ({"step": "two"}, "step"),
    ({"step": True}, "step"),
    ({"step": 2**63}, "step"),
    ({"value": [1]}, "value"),
    ({"key": 5}, "key"),
    ({"timestamp": {}}, "timestamp"),
])
def test_wrong_types_name_the_field(obj, field):
    with pytest.raises(InvalidArgument, match=f"parameter '{field}'"):
        codec(tracking_pb2.LogMetricRequest).decode(obj)


def test_a_string_protobuf_cannot_hold_is_refused_by_name():
    with pytest.raises(InvalidArgument, match=r"'tags\[0\]\.key'.*surrogates"):
        codec(tracking_pb2.CreateRunRequest).decode({"experiment_id": "1", "tags": [{"key": "\ud800", "value": "v"}]})


def test_nested_errors_name_the_path():
    with pytest.raises(InvalidArgument, match=r"'datasets\[1\]\.dataset\.name'"):
        codec(tracking_pb2.LogInputsRequest).decode({"datasets": [{}, {"dataset": {"name": 1}}]})
    with pytest.raises(InvalidArgument, match=r"'metrics\[0\]'.*expected a JSON object"):
        codec(tracking_pb2.LogBatchRequest).decode({"metrics": ["m"]})
    with pytest.raises(InvalidArgument, match="expected one of ACTIVE_ONLY, DELETED_ONLY, ALL"):
        codec(tracking_pb2.SearchRunsRequest).decode({"run_view_type": "SOME"})
    with pytest.raises(InvalidArgument, match=r"'tags\[0\]'.*\{key, value\}"):
        codec(tracking_pb2.CreateExperimentRequest).decode({"tags": ["k"]})


def test_artifact_uris_are_mlflows_outside():
    request = codec(registry_pb2.CreateModelVersionRequest).decode({"name": "m", "source": "mlflow-artifacts:/1/r/artifacts/model"})
    assert request.source == "mlgrid-artifacts:/1/r/artifacts/model"
    assert codec(registry_pb2.CreateModelVersionRequest).decode({"source": "s3://b/k"}).source == "s3://b/k"
    assert codec(tracking_pb2.CreateExperimentRequest).decode({"artifact_location": "mlflow-artifacts:/x"}).artifact_location == "mlgrid-artifacts:/x"


def test_query_parameters():
    to_json = codec(registry_pb2.GetLatestVersionsRequest).query_to_json
    assert to_json(MultiDict([("name", "m"), ("stages", "Staging"), ("stages", "Production"), ("other", "x")])) == {
        "name": "m", "stages": ["Staging", "Production"]}
    search = codec(tracking_pb2.SearchExperimentsRequest)
    assert search.decode(search.query_to_json(MultiDict(max_results="5", view_type="ALL"))) == tracking_pb2.SearchExperimentsRequest(
        max_results=5, view_type=tracking_pb2.ALL)
    transition = codec(registry_pb2.TransitionModelVersionStageRequest)
    assert transition.query_to_json(MultiDict(archive_existing_versions="True")) == {"archive_existing_versions": True}
    with pytest.raises(InvalidArgument, match="'archive_existing_versions'"):
        transition.query_to_json(MultiDict(archive_existing_versions="yes"))


def test_parse_body():
    assert mlflow_json.parse_body(b"  ") == {}
    assert mlflow_json.parse_body(b'{"a": NaN}')["a"] != 0
    with pytest.raises(InvalidArgument, match="Malformed JSON"):
        mlflow_json.parse_body(b"{")
    with pytest.raises(InvalidArgument, match="JSON object, not list"):
        mlflow_json.parse_body(b"[]")


class Stream:
    """A server stream of MetricSeries as grpc.aio's call gives it; records how far it was read and its cancel."""

    def __init__(self, steps_per_message):
        self.pages = [series(steps) for steps in steps_per_message]
        self.read, self.cancelled = 0, False

    async def __aiter__(self):
        for page in self.pages:
            self.read += 1
            yield page

    def cancel(self):
        self.cancelled = True


def series(steps):
    return tracking_pb2.MetricSeries(key="loss", steps=steps, timestamps=[s * 10 for s in steps], values=[s / 2 for s in steps])


HISTORY = [[0, 1], [2, 3], [4], [5]]


class Opener:
    """open_stream for MetricHistory.collect: a new Stream of HISTORY per call, remembered."""

    def __init__(self):
        self.streams = []

    def __call__(self):
        self.streams.append(Stream(HISTORY))
        return self.streams[-1]


def history_endpoint():
    return endpoint("/api/2.0/mlflow/metrics/get-history", TRACKING.methods_by_name["GetMetricHistory"], Codecs())


async def test_metric_history_pages_go_on_reading_one_stream():
    history, opener = history_endpoint(), Opener()
    request, state = history.decode({"run_uuid": "r", "metric_key": "loss", "max_results": 3})
    assert (request.run_id, request.metric_key, request.page_size) == ("r", "loss", 3)
    first = await history.collect(opener, state)
    assert [m["step"] for m in first["metrics"]] == [0, 1, 2]
    assert first["metrics"][1] == {"key": "loss", "value": 0.5, "timestamp": 10, "step": 1}
    assert opener.streams[0].read == 2 and not opener.streams[0].cancelled  # parked, in the middle of a message

    _, state = history.decode({"run_id": "r", "metric_key": "loss", "max_results": "3", "page_token": first["next_page_token"]})
    last = await history.collect(opener, state)
    assert [m["step"] for m in last["metrics"]] == [3, 4, 5] and "next_page_token" not in last
    assert len(opener.streams) == 1 and opener.streams[0].cancelled

    # The same token again: its stream is gone, so the history is read again up to the offset.
    assert [m["step"] for m in (await history.collect(opener, state))["metrics"]] == [3, 4, 5]
    assert len(opener.streams) == 2


async def test_a_page_ending_on_a_message_boundary_knows_whether_more_follow():
    history, opener = history_endpoint(), Opener()
    _, state = history.decode({"run_id": "r", "metric_key": "loss", "max_results": 4})
    first = await history.collect(opener, state)
    assert [m["step"] for m in first["metrics"]] == [0, 1, 2, 3] and first["next_page_token"]
    _, state = history.decode({"run_id": "r", "metric_key": "loss", "max_results": 2, "page_token": first["next_page_token"]})
    last = await history.collect(opener, state)
    assert [m["step"] for m in last["metrics"]] == [4, 5] and "next_page_token" not in last


async def test_metric_history_without_pages_and_mlflows_own_tokens():
    history, opener = history_endpoint(), Opener()
    _, state = history.decode({"run_id": "r", "metric_key": "loss"})  # no max_results: everything
    assert [m["step"] for m in (await history.collect(opener, state))["metrics"]] == list(range(6))
    mlflow_token = base64.b64encode(b'{"offset": 5}').decode()
    _, state = history.decode({"run_id": "r", "metric_key": "loss", "max_results": 10, "page_token": mlflow_token})
    assert [m["step"] for m in (await history.collect(opener, state))["metrics"]] == [5]
    assert all(stream.cancelled for stream in opener.streams)
    _, state = history.decode({"run_id": "r", "metric_key": "nothing"})
    assert await history.collect(lambda: Stream([]), state) == {}


async def test_parked_streams_are_bounded_and_closed():
    history, opener = history_endpoint(), Opener()
    _, state = history.decode({"run_id": "r", "metric_key": "loss", "max_results": 1})
    for _ in range(ParkedStreams.LIMIT + 1):
        await history.collect(opener, state)
    assert opener.streams[0].cancelled and not any(s.cancelled for s in opener.streams[1:])
    history.close()
    assert all(s.cancelled for s in opener.streams)


def test_metric_history_refuses_bad_pages():
    history = history_endpoint()
    with pytest.raises(InvalidArgument, match="positive integer"):
        history.decode({"run_id": "r", "metric_key": "m", "max_results": 0})
    for token in ("nope", page_token(-1, ""), "e30=", base64.b64encode(b"[1]").decode()):
        with pytest.raises(InvalidArgument, match="Invalid page token"):
            history.decode({"run_id": "r", "metric_key": "m", "page_token": token})


def test_download_uri_is_the_versions_source():
    download = endpoint("/api/2.0/mlflow/model-versions/get-download-uri", REGISTRY.methods_by_name["GetModelVersion"], CODECS)
    response = registry_pb2.ModelVersionResponse(model_version=registry_pb2.ModelVersion(source="mlgrid-artifacts:/1/r/artifacts/m"))
    assert download.encode(response, None) == {"artifact_uri": "mlflow-artifacts:/1/r/artifacts/m"}


def test_a_streamed_rpc_needs_an_endpoint_that_collects_it():
    with pytest.raises(NotImplementedError, match="server-streamed"):
        endpoint("/api/2.0/mlflow/other", TRACKING.methods_by_name["GetMetricHistoryBulk"], CODECS)


def test_routes_come_from_the_annotations():
    table = {(r.verb, r.path): r.rpc for r in routes(["mlgrid.v1.TrackingService", "mlgrid.v1.ModelRegistryService"])}
    assert table[("POST", "/api/2.0/mlflow/runs/log-metric")] == "/mlgrid.v1.TrackingService/LogMetric"
    assert table[("POST", "/ajax-api/2.0/mlflow/runs/log-metric")] == "/mlgrid.v1.TrackingService/LogMetric"
    assert table[("GET", "/api/2.0/mlflow/experiments/search")] == table[("POST", "/api/2.0/mlflow/experiments/search")]
    assert table[("DELETE", "/api/2.0/mlflow/registered-models/alias")] == "/mlgrid.v1.ModelRegistryService/DeleteRegisteredModelAlias"
    assert table[("GET", "/api/2.0/mlflow/registered-models/alias")] == "/mlgrid.v1.ModelRegistryService/GetModelVersionByAlias"
    assert not any("IngestMetrics" in rpc or "WatchEvents" in rpc for rpc in table.values())  # not MLflow's
