"""mlgrid.entities: conversions from and to the wire messages."""
import json

import pytest

from mlgrid.entities import (
    Dataset, DatasetInput, Experiment, InputTag, Metric, MetricHistory, PagedList, Param, Run, RunStatus, RunTag,
    ViewType,
)
from mlgrid.v1 import tracking_pb2 as pb


def run_proto(**info) -> pb.Run:
    return pb.Run(
        info=pb.RunInfo(run_id="a" * 32, run_name="brave-owl-1", experiment_id="7", user_id="ann",
                        status=pb.FINISHED, start_time=1000, artifact_uri="mlgrid-artifacts:/7/x",
                        lifecycle_stage="active", **info),
        data=pb.RunData(
            metrics=[pb.Metric(key="loss", value=0.25, timestamp=5, step=9), pb.Metric(key="acc", value=0.9)],
            params={"lr": "0.1"}, tags={"mlflow.user": "ann"},
        ),
        inputs=pb.RunInputs(dataset_inputs=[pb.DatasetInput(
            tags=[pb.InputTag(key="mlflow.data.context", value="training")],
            dataset=pb.Dataset(name="mnist", digest="d1", source_type="s3", source="s3://b/mnist"),
        )]),
    )


def test_run_from_proto():
    run = Run.from_proto(run_proto(end_time=2000))
    assert (run.info.run_id, run.info.run_uuid, run.info.run_name) == ("a" * 32, "a" * 32, "brave-owl-1")
    assert (run.info.experiment_id, run.info.user_id, run.info.status) == ("7", "ann", "FINISHED")
    assert (run.info.start_time, run.info.end_time, run.info.lifecycle_stage) == (1000, 2000, "active")
    assert run.info.artifact_uri == "mlgrid-artifacts:/7/x"
    assert run.data.metrics == {"loss": 0.25, "acc": 0.9}
    assert run.data.params == {"lr": "0.1"} and run.data.tags == {"mlflow.user": "ann"}
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset == Dataset("mnist", "d1", "s3", "s3://b/mnist")
    assert dataset_input.tags == [InputTag("mlflow.data.context", "training")]


def test_unset_end_time_is_none_and_zero_is_kept():
    assert Run.from_proto(run_proto()).info.end_time is None
    assert Run.from_proto(run_proto(end_time=0)).info.end_time == 0


def test_run_to_dictionary_is_json():
    described = json.loads(json.dumps(Run.from_proto(run_proto()).to_dictionary()))
    assert described["info"]["run_id"] == "a" * 32 and described["info"]["status"] == "FINISHED"
    assert described["data"] == {"metrics": {"loss": 0.25, "acc": 0.9}, "params": {"lr": "0.1"},
                                 "tags": {"mlflow.user": "ann"}}
    assert described["inputs"]["dataset_inputs"][0]["dataset"]["name"] == "mnist"


def test_experiment_from_proto():
    proto = pb.Experiment(experiment_id="3", name="mnist", artifact_location="s3://b/3", lifecycle_stage="active",
                          creation_time=10, last_update_time=20, tags={"team": "vision"})
    assert Experiment.from_proto(proto) == Experiment("3", "mnist", "s3://b/3", "active", {"team": "vision"}, 10, 20)


@pytest.mark.parametrize("entity", [
    Metric("loss", float("inf"), 1_700_000_000_000, 3),
    Param("lr", "0.01"),
    RunTag("stage", "dev"),
    InputTag("mlflow.data.context", "eval"),
    Dataset("mnist", "d1", "local", "/data", schema='{"x": "int"}', profile="{}"),
    DatasetInput(Dataset("mnist", "d1", "local", "/data"), [InputTag("k", "v")]),
])
def test_to_proto_round_trips(entity):
    assert type(entity).from_proto(entity.to_proto()) == entity


def test_entities_have_no_instance_dict():
    run = Run.from_proto(run_proto())
    for obj in (run, run.info, run.data, run.inputs, Metric("k", 1.0, 0, 0)):
        assert not hasattr(obj, "__dict__")


def test_view_type_and_run_status():
    assert (ViewType.ACTIVE_ONLY, ViewType.DELETED_ONLY, ViewType.ALL) == (1, 2, 3)
    assert ViewType.from_string("deleted_only") is ViewType.DELETED_ONLY and ViewType.to_string(3) == "ALL"
    assert RunStatus.from_string("killed") == pb.KILLED and RunStatus.to_string(pb.RUNNING) == "RUNNING"
    assert RunStatus.is_terminated("FAILED") and not RunStatus.is_terminated(RunStatus.RUNNING)
    assert RunStatus.all_status() == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="unknown run status"):
        RunStatus.from_string("DONE")


def test_paged_list_is_a_list_with_a_token():
    page = PagedList([1, 2], "next")
    assert page == [1, 2] and page.token == "next"


def test_metric_history_concatenates_pages():
    history = MetricHistory()
    history.extend(pb.MetricSeries(steps=[0, 1], timestamps=[10, 11], values=[0.5, 0.25]))
    history.extend(pb.MetricSeries(steps=[2], timestamps=[12], values=[0.125]))
    assert (history.steps, history.timestamps, history.values) == ([0, 1, 2], [10, 11, 12], [0.5, 0.25, 0.125])
    assert len(history) == 3

