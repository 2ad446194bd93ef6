"""Concurrent writes to one run on PostgreSQL never deadlock: many callers logging batches of the same keys in
shuffled orders, with tags (the run's name among them), params and metrics, all succeed and all data is there
(issue 16: 116 of 160 REST log-batch calls from 16 processes failed with DeadlockDetectedError before)."""
import asyncio
import random

from conftest import unique

from mlgrid.v1 import tracking_pb2 as pb

CALLERS, BATCHES, KEYS = 16, 8, 20


async def test_shuffled_concurrent_batches_to_one_run_all_succeed(pg_store):
    experiment = await pg_store.create_experiment(unique(), "", {})
    run_id = (await pg_store.create_run(experiment, "tester", None, [], "")).info.run_id
    failures = []

    async def caller(n: int) -> None:
        rng = random.Random(n)
        for b in range(BATCHES):
            keys = [f"m{k}" for k in range(KEYS)]
            rng.shuffle(keys)
            step = n * BATCHES + b
            metrics = [pb.Metric(key=key, value=rng.random(), timestamp=1_000 + step, step=step) for key in keys]
            tags = [pb.RunTag(key=key, value=f"{n}-{b}") for key in rng.sample(["t0", "t1", "t2", "mlflow.runName"], 3)]
            params = [pb.Param(key=f"p{k}", value="same") for k in rng.sample(range(10), 4)]
            try:
                await pg_store.log_batch(run_id, metrics, params, tags, "")
            except Exception as error:  # noqa: BLE001 - counted
                failures.append(f"{type(error).__name__}: {error}")

    await asyncio.gather(*(caller(n) for n in range(CALLERS)))
    assert failures == []
    run = await pg_store.get_run(run_id)
    assert {m.key for m in run.data.metrics} == {f"m{k}" for k in range(KEYS)}
    for k in range(KEYS):
        steps, _, _ = await pg_store.metric_history(run_id, f"m{k}")
        assert sorted(steps.tolist()) == list(range(CALLERS * BATCHES))  # every point, none twice
    assert run.data.params and set(run.data.params.values()) == {"same"} and set(run.data.params) <= {f"p{k}" for k in range(10)}
    assert run.data.tags["mlflow.runName"] == run.info.run_name
