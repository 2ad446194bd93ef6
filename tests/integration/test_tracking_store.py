"""The tracking store on SQLite and on a real PostgreSQL: semantics and bad input."""
import asyncio
import math

import pytest
from conftest import unique

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.db.clock import now_ms
from services.tracking.store.base import ACTIVE, DELETED

INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)


async def new_run(store, **kwargs):
    exp_id = await store.create_experiment(unique(), "", {})
    return await store.create_run(exp_id, "tester", kwargs.get("start_time"), kwargs.get("tags", []), kwargs.get("name", ""))


async def search(store, *args):
    page = await store.search_runs(*args)
    return list(page.runs), page.next_page_token


async def snapshot(store, run_id):
    run = await store.get_run(run_id)
    history = {m.key: [a.tolist() for a in await store.metric_history(run_id, m.key)] for m in run.data.metrics}
    return run.SerializeToString(deterministic=True), history


# ---------------------------------------------------------------- experiments


async def test_default_experiment_exists(store):
    exp = await store.get_experiment("0")
    assert exp.name == "Default" and exp.lifecycle_stage == ACTIVE
    assert exp.artifact_location == "mlgrid-artifacts:/0"


async def test_experiment_lifecycle(store):
    name = unique()
    exp_id = await store.create_experiment(name, "", {"team": "a"})
    exp = await store.get_experiment(exp_id)
    assert (exp.name, dict(exp.tags), exp.artifact_location) == (name, {"team": "a"}, f"mlgrid-artifacts:/{exp_id}")
    assert (await store.get_experiment_by_name(name)).experiment_id == exp_id
    with pytest.raises(AlreadyExists, match="already exists"):
        await store.create_experiment(name, "", {})
    await store.rename_experiment(exp_id, name + "-renamed")
    assert (await store.get_experiment(exp_id)).name == name + "-renamed"
    await store.set_experiment_tag(exp_id, "owner", "me")
    await store.delete_experiment_tag(exp_id, "team")
    assert dict((await store.get_experiment(exp_id)).tags) == {"owner": "me"}
    await store.set_experiment_lifecycle(exp_id, DELETED)
    assert (await store.get_experiment(exp_id)).lifecycle_stage == DELETED
    with pytest.raises(AlreadyExists, match="deleted"):
        await store.create_experiment(name + "-renamed", "", {})
    with pytest.raises(FailedPrecondition):
        await store.create_run(exp_id, "u", None, [], "")
    await store.set_experiment_lifecycle(exp_id, ACTIVE)
    assert (await store.get_experiment(exp_id)).lifecycle_stage == ACTIVE


async def test_deleting_experiment_deletes_its_runs_and_restore_brings_them_back(store):
    exp_id = await store.create_experiment(unique(), "", {})
    run = await store.create_run(exp_id, "u", None, [], "")
    await store.set_experiment_lifecycle(exp_id, DELETED)
    assert (await store.get_run(run.info.run_id)).info.lifecycle_stage == DELETED
    await store.set_experiment_lifecycle(exp_id, ACTIVE)
    assert (await store.get_run(run.info.run_id)).info.lifecycle_stage == ACTIVE


@pytest.mark.parametrize(
    "location",
    [
        "s3://bucket/../other",
        "s3://bucket/path#frag",
        "s3://bucket/path?x=1",
        "/etc",
        "file:///etc/passwd",
        "ftp://host/x",
        "http://evil/x",
        "mlgrid-artifacts:/a/../../b",
        "a\\b",
    ],
)
async def test_artifact_location_outside_roots_is_refused(store, location):
    name = unique()
    with pytest.raises(InvalidArgument, match="artifact location"):
        await store.create_experiment(name, location, {})
    with pytest.raises(NotFound):
        await store.get_experiment_by_name(name)


async def test_artifact_location_under_root_or_store_scheme_is_accepted(store, artifact_root):
    exp_id = await store.create_experiment(unique(), f"{artifact_root}/team-a", {})
    assert (await store.get_experiment(exp_id)).artifact_location == f"file://{artifact_root}/team-a"
    exp_id = await store.create_experiment(unique(), "s3://bucket/prefix", {})
    run = await store.create_run(exp_id, "u", None, [], "")
    assert run.info.artifact_uri == f"s3://bucket/prefix/{run.info.run_id}/artifacts"


@pytest.mark.parametrize("bad_id", ["abc", "-1", "1.5", "", "0x10", "1; drop table runs"])
async def test_malformed_experiment_id(store, bad_id):
    with pytest.raises(InvalidArgument, match="experiment id"):
        await store.get_experiment(bad_id)


async def test_unknown_experiment(store):
    with pytest.raises(NotFound, match="does not exist"):
        await store.get_experiment("987654321")
    with pytest.raises(NotFound):
        await store.get_experiment_by_name(unique())


async def test_default_experiment_cannot_be_deleted(store):
    with pytest.raises(InvalidArgument, match="default experiment"):
        await store.set_experiment_lifecycle("0", DELETED)


async def test_experiment_name_limits(store):
    with pytest.raises(InvalidArgument, match="empty"):
        await store.create_experiment("", "", {})
    with pytest.raises(InvalidArgument, match="limit is 256"):
        await store.create_experiment("x" * 257, "", {})


async def test_search_experiments_pages_and_views(store):
    prefix = unique("search")
    ids = [await store.create_experiment(f"{prefix}-{i}", "", {"k": str(i % 2)}) for i in range(5)]
    await store.set_experiment_lifecycle(ids[0], DELETED)
    found, token = await store.search_experiments(f"name LIKE '{prefix}-%'", pb.ACTIVE_ONLY, ["name ASC"], 2, "")
    assert [e.name for e in found] == [f"{prefix}-1", f"{prefix}-2"] and token
    found, token = await store.search_experiments(f"name LIKE '{prefix}-%'", pb.ACTIVE_ONLY, ["name ASC"], 2, token)
    assert [e.name for e in found] == [f"{prefix}-3", f"{prefix}-4"] and not token
    found, _ = await store.search_experiments(f"name LIKE '{prefix}-%'", pb.DELETED_ONLY, [], 10, "")
    assert [e.experiment_id for e in found] == [ids[0]]
    found, _ = await store.search_experiments(f"name LIKE '{prefix}-%' AND tags.k = '1'", pb.ALL, ["name"], 10, "")
    assert [e.name for e in found] == [f"{prefix}-1", f"{prefix}-3"]
    with pytest.raises(InvalidArgument, match="page_token"):
        await store.search_experiments("", pb.ALL, [], 10, "garbage!")


# ---------------------------------------------------------------- runs


async def test_create_and_get_run(store):
    run = await new_run(store, name="baseline", start_time=1234, tags=[pb.RunTag(key="mlflow.user", value="ann")])
    info = run.info
    assert len(info.run_id) == 32 and info.run_name == "baseline" and info.start_time == 1234
    assert info.status == pb.RUNNING and info.lifecycle_stage == ACTIVE and not info.HasField("end_time")
    assert info.artifact_uri == f"mlgrid-artifacts:/{info.experiment_id}/{info.run_id}/artifacts"
    assert dict(run.data.tags) == {"mlflow.user": "ann", "mlflow.runName": "baseline"}
    assert await store.get_run(info.run_id) == run


async def test_run_name_is_generated(store):
    run = await new_run(store)
    assert run.info.run_name.count("-") == 2
    assert run.data.tags["mlflow.runName"] == run.info.run_name


async def test_update_run(store):
    run = await new_run(store)
    info = await store.update_run(run.info.run_id, pb.FINISHED, 99, "renamed")
    assert (info.status, info.end_time, info.run_name) == (pb.FINISHED, 99, "renamed")
    assert (await store.get_run(run.info.run_id)).data.tags["mlflow.runName"] == "renamed"
    with pytest.raises(InvalidArgument, match="status"):
        await store.update_run(run.info.run_id, 42, None, "")


async def test_delete_and_restore_run(store):
    run = await new_run(store)
    run_id = run.info.run_id
    await store.set_run_lifecycle(run_id, DELETED)
    assert (await store.get_run(run_id)).info.lifecycle_stage == DELETED
    await store.set_run_lifecycle(run_id, ACTIVE)
    assert (await store.get_run(run_id)).info.lifecycle_stage == ACTIVE


@pytest.mark.parametrize("bad_id", ["", "xyz", "A" * 32, "0" * 31, "0" * 33, "../" + "0" * 29])
async def test_malformed_run_id(store, bad_id):
    with pytest.raises(InvalidArgument, match="run id"):
        await store.get_run(bad_id)
    with pytest.raises(InvalidArgument, match="run id"):
        await store.log_metric(bad_id, "m", 1.0, 1, 0)


async def test_unknown_run(store):
    missing = "0" * 32
    with pytest.raises(NotFound, match="does not exist"):
        await store.get_run(missing)
    with pytest.raises(NotFound):
        await store.log_param(missing, "p", "v")
    with pytest.raises(NotFound):
        await store.metric_history(missing, "m")


async def test_logging_to_deleted_run_is_refused_and_changes_nothing(store):
    run = await new_run(store)
    run_id = run.info.run_id
    await store.log_metric(run_id, "m", 1.0, 1, 0)
    await store.update_run(run_id, pb.FINISHED, 5, "")
    await store.log_metric(run_id, "m", 2.0, 2, 1)  # a finished run still takes data, as in MLflow
    await store.set_run_lifecycle(run_id, DELETED)
    before = await snapshot(store, run_id)
    for call in (
        store.log_metric(run_id, "m", 3.0, 3, 2),
        store.log_param(run_id, "p", "v"),
        store.set_tag(run_id, "t", "v"),
        store.log_batch(run_id, [pb.Metric(key="m", value=1)], [], [], ""),
        store.ingest(pb.IngestBatch(batch_id="b1", run_id=run_id, metrics=[pb.MetricSeries(key="m", steps=[1], timestamps=[1], values=[1])])),
        store.update_run(run_id, pb.RUNNING, None, ""),
    ):
        with pytest.raises(FailedPrecondition, match="deleted"):
            await call
    assert await snapshot(store, run_id) == before


# ---------------------------------------------------------------- params, tags, metrics


async def test_params_are_immutable(store):
    run_id = (await new_run(store)).info.run_id
    await store.log_param(run_id, "lr", "0.01")
    await store.log_param(run_id, "lr", "0.01")  # the same value again is fine
    before = await snapshot(store, run_id)
    with pytest.raises(InvalidArgument, match="immutable"):
        await store.log_param(run_id, "lr", "0.02")
    with pytest.raises(InvalidArgument, match="immutable"):
        await store.log_batch(run_id, [pb.Metric(key="m", value=1)], [pb.Param(key="lr", value="0.5")], [], "")
    assert await snapshot(store, run_id) == before


async def test_tags_set_overwrite_delete(store):
    run_id = (await new_run(store)).info.run_id
    await store.set_tag(run_id, "stage", "dev")
    await store.set_tag(run_id, "stage", "prod")
    await store.set_tag(run_id, "mlflow.note.content", "x" * 8000)
    run = await store.get_run(run_id)
    assert run.data.tags["stage"] == "prod" and len(run.data.tags["mlflow.note.content"]) == 8000
    await store.delete_tag(run_id, "stage")
    assert "stage" not in (await store.get_run(run_id)).data.tags
    with pytest.raises(NotFound, match="no tag"):
        await store.delete_tag(run_id, "stage")


@pytest.mark.parametrize(
    "key, match",
    [("", "empty"), ("k" * 251, "limit is 250"), ("a/../b", "relative"), ("/abs", "relative"), ("bad\x00key", "invalid"),
     ("semi;colon", "invalid"), ("new\nline", "invalid")],
)
async def test_bad_keys_are_refused(store, key, match):
    run_id = (await new_run(store)).info.run_id
    before = await snapshot(store, run_id)
    for call in (store.log_param(run_id, key, "v"), store.set_tag(run_id, key, "v"), store.log_metric(run_id, key, 1.0, 1, 0)):
        with pytest.raises(InvalidArgument, match=match):
            await call
    assert await snapshot(store, run_id) == before


async def test_value_limits(store):
    run_id = (await new_run(store)).info.run_id
    await store.log_param(run_id, "ok", "v" * 6000)
    with pytest.raises(InvalidArgument, match="limit is 6000"):
        await store.log_param(run_id, "long", "v" * 6001)
    with pytest.raises(InvalidArgument, match="limit is 8000"):
        await store.set_tag(run_id, "long", "v" * 8001)
    run = await store.get_run(run_id)
    assert set(run.data.params) == {"ok"} and "long" not in run.data.tags


async def test_unicode_keys_and_values(store):
    run_id = (await new_run(store)).info.run_id
    await store.log_param(run_id, "学习率", "零点零一 🚀")
    await store.set_tag(run_id, "équipe", "données")
    await store.log_metric(run_id, "точность", 0.5, 1, 0)
    run = await store.get_run(run_id)
    assert run.data.params["学习率"] == "零点零一 🚀" and run.data.tags["équipe"] == "données"
    assert [m.key for m in run.data.metrics] == ["точность"]


async def test_metric_history_keeps_every_point_and_latest_follows_mlflow(store):
    run_id = (await new_run(store)).info.run_id
    for step, value in [(1, 0.1), (5, 0.5), (75, 7.5), (-20, -2.0)]:
        await store.log_metric(run_id, "loss", value, 1000 + step, step)
    await store.log_metric(run_id, "loss", 9.9, 10, 75)  # same step, older timestamp: not the latest
    steps, timestamps, values = await store.metric_history(run_id, "loss")
    assert steps.tolist() == [-20, 1, 5, 75, 75]
    assert values.tolist() == [-2.0, 0.1, 0.5, 9.9, 7.5]
    (latest,) = (await store.get_run(run_id)).data.metrics
    assert (latest.step, latest.value, latest.timestamp) == (75, 7.5, 1075)


async def test_nan_inf_and_int64_limits(store):
    run_id = (await new_run(store)).info.run_id
    await store.log_metric(run_id, "nan", math.nan, 1, 0)
    await store.log_metric(run_id, "inf", math.inf, 1, INT64_MIN)
    await store.log_metric(run_id, "inf", -math.inf, INT64_MAX, INT64_MAX)
    steps, timestamps, values = await store.metric_history(run_id, "inf")
    assert steps.tolist() == [INT64_MIN, INT64_MAX] and values.tolist() == [math.inf, -math.inf]
    assert timestamps.tolist() == [1, INT64_MAX]
    latest = {m.key: m for m in (await store.get_run(run_id)).data.metrics}
    assert math.isnan(latest["nan"].value)
    assert latest["inf"].value == -math.inf and latest["inf"].step == INT64_MAX


async def test_log_batch_limits_and_atomicity(store):
    run_id = (await new_run(store)).info.run_id
    await store.log_batch(run_id, [pb.Metric(key="m", value=float(i), timestamp=i, step=i) for i in range(1000)],
                          [pb.Param(key=f"p{i}", value="v") for i in range(100)], [pb.RunTag(key=f"t{i}", value="v") for i in range(100)], "")
    before = await snapshot(store, run_id)
    too_many = [
        ([pb.Metric(key="m", value=1)] * 1001, [], [], "1000 metrics"),
        ([], [pb.Param(key=f"q{i}", value="v") for i in range(101)], [], "100 params"),
        ([], [], [pb.RunTag(key=f"u{i}", value="v") for i in range(101)], "100 tags"),
        # a bad item late in a batch: nothing of the batch is stored
        ([pb.Metric(key="m2", value=1)], [pb.Param(key="fresh", value="v")], [pb.RunTag(key="bad key;", value="v")], "invalid tag key"),
        ([pb.Metric(key="m2", value=1)], [pb.Param(key="fresh", value="v"), pb.Param(key="p0", value="changed")], [], "immutable"),
    ]
    for metrics, params, tags, match in too_many:
        with pytest.raises(InvalidArgument, match=match):
            await store.log_batch(run_id, metrics, params, tags, "")
    assert await snapshot(store, run_id) == before


async def test_log_batch_request_id_is_idempotent(store):
    run_id = (await new_run(store)).info.run_id
    batch = [pb.Metric(key="m", value=1.0, timestamp=1, step=1)]
    assert await store.log_batch(run_id, batch, [], [], "req-1") is True
    assert await store.log_batch(run_id, batch, [], [], "req-1") is False
    assert (await store.metric_history(run_id, "m"))[0].tolist() == [1]


async def test_ingest_batches_are_stored_once(store):
    run_id = (await new_run(store)).info.run_id
    batch = pb.IngestBatch(
        batch_id="batch-1", run_id=run_id,
        metrics=[pb.MetricSeries(key="loss", steps=[0, 1, 2], timestamps=[10, 11, 12], values=[3.0, 2.0, 1.0])],
        params=[pb.Param(key="lr", value="0.1")], tags=[pb.RunTag(key="stage", value="dev")],
    )
    assert await store.ingest(batch) == (True, 3)
    assert await store.ingest(batch) == (False, 0)
    steps, _, values = await store.metric_history(run_id, "loss")
    assert steps.tolist() == [0, 1, 2] and values.tolist() == [3.0, 2.0, 1.0]
    run = await store.get_run(run_id)
    assert run.data.params["lr"] == "0.1" and run.data.tags["stage"] == "dev"
    with pytest.raises(InvalidArgument, match="same length"):
        await store.ingest(pb.IngestBatch(batch_id="b2", run_id=run_id, metrics=[pb.MetricSeries(key="x", steps=[1], values=[1, 2])]))
    with pytest.raises(InvalidArgument, match="batch_id"):
        await store.ingest(pb.IngestBatch(run_id=run_id))


async def test_an_ingest_batch_may_carry_a_key_in_several_series(store):
    """One key in two series of a batch is one series (PostgreSQL refused it: one upsert may not touch a row twice)."""
    run_id = (await new_run(store)).info.run_id
    batch = pb.IngestBatch(batch_id=f"{run_id}-twice", run_id=run_id, metrics=[
        pb.MetricSeries(key="loss", steps=[0, 1], timestamps=[10, 11], values=[3.0, 2.0]),
        pb.MetricSeries(key="acc", steps=[0], timestamps=[10], values=[0.5]),
        pb.MetricSeries(key="loss", steps=[2], timestamps=[12], values=[1.0]),
    ])
    assert await store.ingest(batch) == (True, 4)
    steps, timestamps, values = await store.metric_history(run_id, "loss")
    assert steps.tolist() == [0, 1, 2] and timestamps.tolist() == [10, 11, 12] and values.tolist() == [3.0, 2.0, 1.0]
    latest = {m.key: (m.step, m.value) for m in (await store.get_run(run_id)).data.metrics}
    assert latest == {"loss": (2, 1.0), "acc": (0, 0.5)}


async def test_old_batch_ids_are_forgotten_and_recent_ones_kept(store):
    run_id = (await new_run(store)).info.run_id
    old, recent = (pb.IngestBatch(batch_id=f"{run_id}-{name}", run_id=run_id, metrics=[
        pb.MetricSeries(key=name, steps=[1], timestamps=[1], values=[1.0])]) for name in ("old", "recent"))
    assert await store.ingest(old) == (True, 1)
    cutoff = now_ms() + 1
    await asyncio.sleep(0.01)
    assert await store.ingest(recent) == (True, 1)
    assert await store.prune_batch_ids(cutoff) >= 1
    assert await store.ingest(recent) == (False, 0)  # still remembered
    assert await store.ingest(old) == (True, 1)  # forgotten: a retry this late is stored again


async def test_log_inputs(store):
    run_id = (await new_run(store)).info.run_id
    dataset = pb.Dataset(name="mnist", digest="abc123", source_type="local", source="/data/mnist", schema="{}", profile="{}")
    item = pb.DatasetInput(dataset=dataset, tags=[pb.InputTag(key="mlflow.data.context", value="training")])
    await store.log_inputs(run_id, [item])
    await store.log_inputs(run_id, [item])  # logging the same input twice keeps one
    (got,) = (await store.get_run(run_id)).inputs.dataset_inputs
    assert got == item
    with pytest.raises(InvalidArgument, match="name and digest"):
        await store.log_inputs(run_id, [pb.DatasetInput(dataset=pb.Dataset(name="x"))])


# ---------------------------------------------------------------- search


async def test_search_runs_filter_order_and_pages(store):
    exp_id = await store.create_experiment(unique(), "", {})
    run_ids = []
    for i in range(6):
        run = await store.create_run(exp_id, "u", 1000 + i, [pb.RunTag(key="team", value="a" if i % 2 else "b")], f"r{i}")
        await store.log_batch(run.info.run_id, [pb.Metric(key="m0", value=i, step=0), pb.Metric(key="my metric", value=-i)],
                              [pb.Param(key="p2", value="x" if i < 4 else "y")], [], "")
        run_ids.append(run.info.run_id)
    found, token = await search(store, [exp_id], "metrics.m0 > 0.5 and params.p2 = 'x'", pb.ACTIVE_ONLY, ["metrics.m0 DESC"], 2, "")
    assert [r.info.run_name for r in found] == ["r3", "r2"] and token
    found, token = await search(store, [exp_id], "metrics.m0 > 0.5 and params.p2 = 'x'", pb.ACTIVE_ONLY, ["metrics.m0 DESC"], 2, token)
    assert [r.info.run_name for r in found] == ["r1"] and not token
    found, _ = await search(store, [exp_id], 'metrics."my metric" <= -4', pb.ACTIVE_ONLY, [], 10, "")
    assert [r.info.run_name for r in found] == ["r5", "r4"]  # default order: start_time DESC
    found, _ = await search(store, [], f"tags.team = 'a' and attributes.run_id IN ('{run_ids[1]}', '{run_ids[2]}')", pb.ACTIVE_ONLY, [], 10, "")
    assert [r.info.run_id for r in found] == [run_ids[1]]
    await store.set_run_lifecycle(run_ids[5], DELETED)
    found, _ = await search(store, [exp_id], "", pb.DELETED_ONLY, [], 10, "")
    assert [r.info.run_id for r in found] == [run_ids[5]]
    found, _ = await search(store, [exp_id], "", pb.ALL, ["attributes.start_time ASC"], 10, "")
    assert [r.info.run_id for r in found] == run_ids


@pytest.mark.parametrize(
    "bad_filter",
    ["metrics.m0 >> 1", "metrics.m0 > 'a'", "params.p = 1", "foo.x = 1", "metrics.m0 > 1 OR metrics.m0 < 0", "params.p = 'unterminated",
     "attributes.nope = 'x'", "metrics. = 1"],
)
async def test_malformed_filters(store, bad_filter):
    with pytest.raises(InvalidArgument):
        await store.search_runs([], bad_filter, pb.ACTIVE_ONLY, [], 10, "")


async def test_max_results_bounds(store):
    with pytest.raises(InvalidArgument, match="50000"):
        await store.search_runs([], "", pb.ACTIVE_ONLY, [], 50_001, "")
    with pytest.raises(InvalidArgument, match="order"):
        await store.search_runs([], "", pb.ACTIVE_ONLY, ["metrics.m0 SIDEWAYS"], 10, "")


async def test_oversize_ids_and_names_are_refused(store):
    run_id = (await new_run(store)).info.run_id
    with pytest.raises(InvalidArgument, match="limit is 64"):
        await store.log_batch(run_id, [pb.Metric(key="m", value=1)], [], [], "r" * 65)
    with pytest.raises(InvalidArgument, match="limit is 256"):
        await store.create_run("0", "u" * 257, None, [], "")
    with pytest.raises(InvalidArgument, match="limit is 950"):
        await store.create_experiment(unique(), "s3://bucket/" + "x" * 940, {})
    with pytest.raises(InvalidArgument, match="limit is 250"):
        await store.create_run("0", "u", None, [], "n" * 251)
    assert (await store.metric_history(run_id, "m"))[0].tolist() == []
