"""Tracking throughput and latency against PostgreSQL; prints one JSON object.

    .venv/bin/python bench/tracking.py [--database-url postgresql://postgres@127.0.0.1:5432/postgres]

Starts `python -m services.tracking` on a fresh database (dropped at the end) and
drives it through the mlgrid client, as a training job would.
"""
import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import bulk_seed_runs, fresh_database, latencies_ms, start_tracking  # noqa: E402

import mlgrid  # noqa: E402
from mlgrid.v1 import tracking_pb2 as pb  # noqa: E402


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


def bench_unary_log_metric(client, run_id: str, calls: int) -> dict:
    stub = client._stub
    for i in range(50):  # warm-up
        stub.LogMetric(pb.LogMetricRequest(run_id=run_id, key="warm", value=i, step=i))
    started = time.perf_counter()
    for i in range(calls):
        stub.LogMetric(pb.LogMetricRequest(run_id=run_id, key="unary", value=i * 0.5, step=i, timestamp=i))
    return {"calls": calls, "calls_per_s": rate(calls, time.perf_counter() - started)}


def bench_log_batch(client, run_id: str, calls: int, size: int = 1000) -> dict:
    batches = [
        [mlgrid.entities.Metric(f"batch_{j % 10}", random.random(), 1_700_000_000_000 + i * size + j, i * size + j) for j in range(size)]
        for i in range(calls)
    ]
    started = time.perf_counter()
    for metrics in batches:
        client.log_batch(run_id, metrics=metrics)
    return {"calls": calls, "metrics_per_call": size, "metrics_per_s": rate(calls * size, time.perf_counter() - started)}


def bench_streaming_ingest(client, run_id: str, batches: int, points_per_batch: int = 10_000, keys: int = 4) -> dict:
    per_key = points_per_batch // keys

    def stream():
        for b in range(batches):
            steps = list(range(b * per_key, (b + 1) * per_key))
            series = [
                pb.MetricSeries(key=f"stream_{k}", steps=steps, timestamps=steps, values=[s * 0.001 for s in steps])
                for k in range(keys)
            ]
            yield pb.IngestBatch(batch_id=uuid.uuid4().hex, run_id=run_id, metrics=series)

    started = time.perf_counter()
    summary = client.ingest(stream())
    seconds = time.perf_counter() - started
    assert summary.metrics == batches * per_key * keys, summary
    return {"points": summary.metrics, "batches": batches, "metrics_per_s": rate(summary.metrics, seconds)}


def bench_fluent(uri: str, experiment: str, calls: int) -> dict:
    mlgrid.set_tracking_uri(uri)
    mlgrid.set_experiment(experiment)
    with mlgrid.start_run(run_name="fluent") as run:
        started = time.perf_counter()
        for step in range(calls):
            mlgrid.log_metric("loss", 1 / (step + 1), step=step)
        loop_seconds = time.perf_counter() - started
        flush_started = time.perf_counter()
    flush_seconds = time.perf_counter() - flush_started
    stored = len(mlgrid.MlgridClient(uri).get_metric_history_columns(run.info.run_id, "loss").steps)
    assert stored == calls, (stored, calls)
    return {
        "calls": calls,
        "calls_per_s_as_loop_sees_it": rate(calls, loop_seconds),
        "end_run_flush_s": round(flush_seconds, 3),
        "all_points_stored": stored == calls,
    }


def bench_history(client, run_id: str, points: int) -> dict:
    client.log_batch(run_id, metrics=[])  # connection warm
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        history = client.get_metric_history_columns(run_id, "history")
        timings.append(time.perf_counter() - started)
        assert len(history.values) == points
    best = min(timings)
    return {"points": points, "seconds": round(best, 3), "points_per_s": rate(points, best)}


def bench_search(client, experiment_id: str, queries: int) -> dict:
    filter_string = "metrics.m1 > 0.5 and params.p2 = 'x'"
    order = ["metrics.m0 DESC"]

    def search():
        found = client.search_runs([experiment_id], filter_string, max_results=100, order_by=order)
        metric_m0 = [r.data.metrics["m0"] for r in found]
        assert len(found) == 100 and metric_m0 == sorted(metric_m0, reverse=True)

    return {"runs": 10_000, "filter": filter_string, "order_by": order[0], "max_results": 100,
            **latencies_ms(search, queries, warmup=5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1

    with fresh_database(args.database_url) as db_url, start_tracking(db_url) as uri:
        client = mlgrid.MlgridClient(uri)
        exp_id = client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")
        run_id = lambda name: client.create_run(exp_id, run_name=name).info.run_id  # noqa: E731
        results = {"backend": "postgresql", "server": "python -m services.tracking (one process)"}
        results["log_metric_unary"] = bench_unary_log_metric(client, run_id("unary"), int(5000 * scale))
        with start_tracking(db_url, MLGRID_METRICS_SYNCHRONOUS_COMMIT="false") as relaxed_uri:
            relaxed = mlgrid.MlgridClient(relaxed_uri)
            results["log_metric_unary_without_synchronous_commit"] = bench_unary_log_metric(
                relaxed, relaxed.create_run(exp_id, run_name="unary-relaxed").info.run_id, int(5000 * scale)
            )
        results["log_batch"] = bench_log_batch(client, run_id("batch"), int(200 * scale))
        results["streaming_ingest"] = bench_streaming_ingest(client, run_id("stream"), int(300 * scale))
        results["fluent_log_metric"] = bench_fluent(uri, f"fluent-{uuid.uuid4().hex[:8]}", int(1_000_000 * scale))

        history_run = run_id("history")
        points = int(1_000_000 * scale)
        client.ingest(
            pb.IngestBatch(batch_id=uuid.uuid4().hex, run_id=history_run,
                           metrics=[pb.MetricSeries(key="history", steps=range(s, s + 10_000), timestamps=range(s, s + 10_000),
                                                    values=[v * 0.5 for v in range(s, s + 10_000)])])
            for s in range(0, points, 10_000)
        )
        results["metric_history"] = bench_history(client, history_run, points)

        search_exp = client.create_experiment(f"search-{uuid.uuid4().hex[:8]}")
        asyncio.run(bulk_seed_runs(db_url, int(search_exp), 10_000, params=5, metrics=5))
        results["search_runs"] = bench_search(client, search_exp, 50)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
