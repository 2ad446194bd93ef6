"""The two write paths on PostgreSQL: SQLAlchemy (the one SQLite uses) and asyncpg (the one PostgreSQL uses)
refuse the same writes with the same errors, found out by themselves, store the same data and read it back alike."""
import math
import re

import pytest
from conftest import unique

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.tracking.store import batch
from services.tracking.store.base import DELETED
from services.tracking.store.sql_write_path import SqlWritePath


@pytest.fixture(params=["sqlalchemy", "asyncpg"])
def write_path(request, pg_store):
    return SqlWritePath(pg_store.engine) if request.param == "sqlalchemy" else pg_store.write_path


async def new_run(store) -> str:
    exp_id = await store.create_experiment(unique(), "", {})
    return (await store.create_run(exp_id, "tester", None, [], "")).info.run_id


def prepared(metrics=(), params=(), tags=()):
    """A batch.prepare'd batch of pb.Metric, pb.Param and pb.RunTag items, a series per metric key."""
    series = {}
    for m in metrics:
        steps, timestamps, values = series.setdefault(m.key, ([], [], []))
        steps.append(m.step)
        timestamps.append(m.timestamp)
        values.append(m.value)
    return batch.prepare([(key, *columns) for key, columns in series.items()], params, tags)


async def test_missing_and_deleted_runs_are_refused(pg_store, write_path):
    point = prepared([pb.Metric(key="m", value=1.0)])
    missing = "0" * 32
    with pytest.raises(NotFound, match=f"^run {missing} does not exist$"):
        await write_path.log_metric(missing, "m", 1.0, 1, 0)
    with pytest.raises(NotFound, match=f"^run {missing} does not exist$"):
        await write_path.store_batch(missing, "", point)

    run_id = await new_run(pg_store)
    await pg_store.set_run_lifecycle(run_id, DELETED)
    deleted = re.escape(f"run {run_id} is deleted: restore it (RestoreRun) before logging to it")
    with pytest.raises(FailedPrecondition, match=deleted):
        await write_path.log_metric(run_id, "m", 1.0, 1, 0)
    with pytest.raises(FailedPrecondition, match=deleted):
        await write_path.store_batch(run_id, f"deleted-{run_id}", point)
    assert (await pg_store.metric_history(run_id, "m"))[0].tolist() == []


async def test_a_changed_param_or_a_missing_model_stores_nothing(pg_store, write_path):
    run_id = await new_run(pg_store)
    assert await write_path.store_batch(run_id, "", prepared(params=[pb.Param(key="lr", value="0.1")])) is True
    before = (await pg_store.get_run(run_id)).SerializeToString(deterministic=True)
    changed = prepared([pb.Metric(key="m", value=1.0)], [pb.Param(key="lr", value="0.2")], [pb.RunTag(key="t", value="v")])
    with pytest.raises(InvalidArgument, match=re.escape(f"param 'lr' of run {run_id} is already '0.1' and cannot be changed to '0.2'")):
        await write_path.store_batch(run_id, f"changed-{run_id}", changed)
    unknown = "m-" + "f" * 32
    with pytest.raises(NotFound, match=f"^logged model {unknown} does not exist$"):
        await write_path.store_batch(
            run_id, f"model-{run_id}", prepared([pb.Metric(key="x", value=1.0)]), [pb.Metric(key="x", value=1.0, model_id=unknown)]
        )
    assert (await pg_store.get_run(run_id)).SerializeToString(deterministic=True) == before
    # Refused batches leave no batch id behind: the same ids are stored once the batch is right.
    assert await write_path.store_batch(run_id, f"changed-{run_id}", prepared([pb.Metric(key="m", value=1.0)])) is True
    assert await write_path.store_batch(run_id, f"changed-{run_id}", prepared([pb.Metric(key="m", value=1.0)])) is False


async def _write_and_read(store, path) -> tuple:
    """The same writes through `path` into a new run; what the store reads back, without the run's and model's ids."""
    exp_id = await store.create_experiment(unique(), "", {})
    run_id = (await store.create_run(exp_id, "tester", 1, [], "first")).info.run_id
    model_id = (await store.logged_models.create(exp_id, "m", "", run_id, [], [])).info.model_id
    await path.log_metric(run_id, "loss", 0.5, 10, 1)
    await path.log_metric(run_id, "loss", math.nan, 5, 1)  # same step, older: not the latest
    await path.log_metric(run_id, "acc", -math.inf, 1, 0)
    metrics = [pb.Metric(key="loss", value=v, timestamp=20 + i, step=2 + i) for i, v in enumerate([0.4, 0.3, 0.35])]
    model_metrics = [
        pb.Metric(key="score", value=v, timestamp=7, step=0, model_id=model_id, dataset_name="eval", dataset_digest="d1")
        for v in (0.1, 0.9)  # the same point twice: the last value wins
    ]
    params = [pb.Param(key="lr", value="0.01"), pb.Param(key="layers", value="3")]
    tags = [pb.RunTag(key="mlflow.runName", value="renamed"), pb.RunTag(key="team", value="a")]
    assert await path.store_batch(run_id, f"req-{run_id}", prepared(metrics, params, tags), model_metrics) is True
    assert await path.store_batch(run_id, f"req-{run_id}", prepared(metrics, params, tags), model_metrics) is False
    assert await path.store_batch(run_id, "", prepared(params=params[:1])) is True  # the same param value again
    run = await store.get_run(run_id)
    history = {key: [a.tolist() for a in await store.metric_history(run_id, key)] for key in ("loss", "acc")}
    model = await store.logged_models.get(model_id)
    model_points = [(m.key, m.value, m.step, m.timestamp, m.dataset_name, m.dataset_digest, m.run_id == run_id) for m in model.data.metrics]
    latest = sorted((m.key, m.value, m.step, m.timestamp) for m in run.data.metrics)
    return run.info.run_name, dict(run.data.params), dict(run.data.tags), latest, repr(history), model_points


async def test_both_paths_store_the_same(pg_store):
    through_sqlalchemy = await _write_and_read(pg_store, SqlWritePath(pg_store.engine))
    assert through_sqlalchemy == await _write_and_read(pg_store, pg_store.write_path)
    assert through_sqlalchemy[0] == "renamed" and through_sqlalchemy[-1] == [("score", 0.9, 0, 7, "eval", "d1", True)]


async def test_both_paths_read_runs_alike(pg_store):
    exp_id = await pg_store.create_experiment(unique(), "", {})
    run_ids = []
    for i in range(3):
        run_id = (await pg_store.create_run(exp_id, "tester", None, [pb.RunTag(key="i", value=str(i))], "")).info.run_id
        await pg_store.log_batch(run_id, [pb.Metric(key="m", value=i, step=i)], [pb.Param(key="p", value=str(i))], [], "")
        dataset = pb.Dataset(name=f"d{i}", digest="abc", source_type="local", source="/data")
        await pg_store.log_inputs(run_id, [pb.DatasetInput(dataset=dataset, tags=[pb.InputTag(key="k", value="v")])])
        run_ids.append(run_id)
    read = []
    for path in (SqlWritePath(pg_store.engine), pg_store.write_path):
        by_id = {run_id: pb.Run() for run_id in run_ids}
        async with pg_store.reader.connect() as conn:
            await path.read_together(lambda: path.fill_run_data(conn, run_ids, by_id))
            rows, tag_rows = await path.fetch_inputs(conn, run_ids)
        data = {run_id: (dict(run.data.params), dict(run.data.tags), [m.value for m in run.data.metrics]) for run_id, run in by_id.items()}
        read.append((data, [tuple(r) for r in rows], sorted(tuple(t) for t in tag_rows)))
    assert read[0] == read[1]
    params, tags, values = read[0][0][run_ids[2]]
    assert params == {"p": "2"} and tags["i"] == "2" and values == [2.0]
