"""Downsampled metric history (GetMetricHistoryBulkInterval) on SQLite and PostgreSQL."""
import time
import uuid

import numpy as np
import pytest
from conftest import unique

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import InvalidArgument, NotFound

POINTS = 1_000_000
SPIKE_STEP, DIP_STEP = 654_321, 123_456


async def new_run_id(store) -> str:
    exp_id = await store.create_experiment(unique(), "", {})
    return (await store.create_run(exp_id, "tester", None, [], "")).info.run_id


async def log_series(store, run_id: str, key: str, steps: np.ndarray, values: np.ndarray, per_batch: int = 200_000):
    for start in range(0, len(steps), per_batch):
        part = slice(start, start + per_batch)
        series = pb.MetricSeries(key=key)
        series.steps.extend(steps[part].tolist())
        series.timestamps.extend((steps[part] + 1_700_000_000_000).tolist())
        series.values.extend(values[part].tolist())
        await store.ingest(pb.IngestBatch(batch_id=uuid.uuid4().hex, run_id=run_id, metrics=[series]))


@pytest.fixture
async def long_run(store):
    """A run with a 1,000,000-point 'loss': a gentle curve with one spike and one dip."""
    run_id = await new_run_id(store)
    steps = np.arange(POINTS, dtype=np.int64)
    values = 1.0 / (1.0 + steps / 1000.0)
    values[SPIKE_STEP], values[DIP_STEP] = 100.0, -100.0
    await log_series(store, run_id, "loss", steps, values)
    return run_id


async def test_a_million_points_come_back_bounded_with_spike_and_dip(store, long_run):
    started = time.perf_counter()
    [(run_id, steps, timestamps, values)] = await store.sampled_metric_history([long_run], "loss", None, None, 1000)
    elapsed = time.perf_counter() - started
    assert run_id == long_run
    assert 800 <= len(steps) <= 1000
    assert np.all(np.diff(steps) > 0) and steps[0] == 0 and steps[-1] == POINTS - 1
    assert values[steps.tolist().index(SPIKE_STEP)] == 100.0
    assert values[steps.tolist().index(DIP_STEP)] == -100.0
    assert np.array_equal(timestamps, steps + 1_700_000_000_000)
    assert elapsed < 5, f"downsampling 1,000,000 points took {elapsed:.2f}s"


async def test_zoom_ranges(store, long_run):
    # A zoom that fits: every point of the range, at full resolution.
    [(_, steps, _, values)] = await store.sampled_metric_history([long_run], "loss", SPIKE_STEP - 500, SPIKE_STEP + 499, 1000)
    assert steps.tolist() == list(range(SPIKE_STEP - 500, SPIKE_STEP + 500))
    assert values[500] == 100.0 and values[499] == pytest.approx(1.0 / (1.0 + (SPIKE_STEP - 1) / 1000.0))
    # A wider zoom is downsampled within its range, the dip still there.
    [(_, steps, _, values)] = await store.sampled_metric_history([long_run], "loss", 100_000, 200_000, 400)
    assert len(steps) <= 400 and steps[0] == 100_000 and steps[-1] == 200_000
    assert DIP_STEP in steps.tolist() and values.min() == -100.0 and values.max() < 100.0
    # Outside the history: nothing.
    [(_, steps, _, _)] = await store.sampled_metric_history([long_run], "loss", POINTS, POINTS + 10, 1000)
    assert len(steps) == 0


async def test_several_runs_each_downsampled_in_the_order_asked(store):
    short, other = await new_run_id(store), await new_run_id(store)
    await log_series(store, short, "acc", np.arange(10, dtype=np.int64), np.linspace(0, 1, 10))
    await log_series(store, other, "acc", np.arange(0, 50_000, 5, dtype=np.int64), np.linspace(0, 1, 10_000))
    sampled = await store.sampled_metric_history([other, short], "acc", None, None, 100)
    assert [s[0] for s in sampled] == [other, short]
    assert len(sampled[0][1]) <= 100 and sampled[0][1][-1] == 49_995
    assert sampled[1][1].tolist() == list(range(10))
    [(_, steps, _, _)] = await store.sampled_metric_history([short], "missing-key", None, None, 0)
    assert len(steps) == 0


async def test_bad_requests(store):
    run_id = await new_run_id(store)
    with pytest.raises(InvalidArgument, match="run_ids"):
        await store.sampled_metric_history([], "loss", None, None, 10)
    with pytest.raises(InvalidArgument, match="run_ids"):
        await store.sampled_metric_history([run_id] * 101, "loss", None, None, 10)
    with pytest.raises(InvalidArgument, match="both"):
        await store.sampled_metric_history([run_id], "loss", 5, None, 10)
    with pytest.raises(InvalidArgument, match="end_step"):
        await store.sampled_metric_history([run_id], "loss", 10, 5, 10)
    with pytest.raises(InvalidArgument, match="max_results"):
        await store.sampled_metric_history([run_id], "loss", None, None, 100_001)
    with pytest.raises(NotFound):
        await store.sampled_metric_history([uuid.uuid4().hex], "loss", None, None, 10)
