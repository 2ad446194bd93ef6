"""What identity and permissions cost: the same calls with auth off and on, in one sitting; prints one JSON object.

    .venv/bin/python bench/auth.py [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--rounds 5]

Two `python -m services.tracking` on one fresh PostgreSQL database, one with MLGRID_AUTH=on, and two
`mlgrid server` (REST) likewise. With auth on the caller is a plain user (no admin shortcut) holding an
access token, on an experiment it created (MANAGE): every call is authenticated and its permission looked
up, as a training job's would be. Rounds alternate off and on so that drift on a shared machine hits both;
each figure is the median over the rounds, and `ratio` is on / off (1.0: free; the target is >= 0.95).
  - unary LogMetric (gRPC, one caller), calls/s
  - streaming ingest (gRPC IngestMetrics), metrics/s
  - search at 10,000 runs (gRPC SearchRuns) naming the experiment (the gate checks READ on it), p50 ms; and
    naming none (every experiment: 30,000 runs in 3 experiments with auth off; with it on, narrowed in the query to
    the 10,000 of the one the caller may read, the default permission being NO_PERMISSIONS), p50 ms
  - REST runs/log-metric through `mlgrid server` (8 aiohttp callers, Basic credentials), calls/s
"""
import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import uuid

import aiohttp
import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import bulk_seed_runs, fresh_database, latencies_ms, start_server, start_tracking
from gateway import analyze, closed_loop
from tracking import bench_search, bench_streaming_ingest, bench_unary_log_metric

import mlgrid
from mlgrid.v1 import identity_pb2 as ipb
from mlgrid.v1 import identity_pb2_grpc

ADMIN, ADMIN_PASSWORD = "admin", "bench admin password"
USER, USER_PASSWORD = "bench", "bench user password"
AUTH_ENV = {"MLGRID_AUTH": "on", "MLGRID_ADMIN_USERNAME": ADMIN, "MLGRID_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MLGRID_AUTH_DEFAULT_PERMISSION": "NO_PERMISSIONS"}


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def user_token(uri: str) -> str:
    """Create the bench user (as the admin) and an access token of theirs; returns its secret."""
    with grpc.insecure_channel(uri.removeprefix("grpc://")) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        stub.CreateUser(ipb.CreateUserRequest(username=USER, password=USER_PASSWORD),
                        metadata=(("authorization", basic(ADMIN, ADMIN_PASSWORD)),))
        created = stub.CreateAccessToken(ipb.CreateAccessTokenRequest(name="bench"),
                                         metadata=(("authorization", basic(USER, USER_PASSWORD)),))
        return created.secret


async def rest_log_metric(base: str, headers: dict, seconds: float, concurrency: int = 8) -> float:
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=concurrency * 2)) as session:
        async def call(endpoint: str, body: dict) -> dict:
            async with session.post(f"{base}/api/2.0/mlflow/{endpoint}", json=body) as response:
                payload = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{endpoint}: {response.status} {payload[:300]!r}")
                return json.loads(payload) if payload else {}

        experiment = (await call("experiments/create", {"name": f"rest-{uuid.uuid4().hex[:8]}"}))["experiment_id"]
        run_id = (await call("runs/create", {"experiment_id": experiment}))["run"]["info"]["run_id"]

        async def log_metric(i: int):
            await call("runs/log-metric", {"run_id": run_id, "key": "loss", "value": i * 0.001, "timestamp": i, "step": i})

        await closed_loop(concurrency, 1.0, log_metric)  # warm-up
        done, elapsed = await closed_loop(concurrency, seconds, log_metric)
        return done / elapsed


def search_every_experiment(client, queries: int) -> float:
    def search():
        found = client.search_runs([], "metrics.m1 > 0.5 and params.p2 = 'x'", max_results=100, order_by=["metrics.m0 DESC"])
        assert len(found) == 100

    return latencies_ms(search, queries, warmup=5)["p50_ms"]


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1
    figures = {mode: {"log_metric_unary": [], "streaming_ingest": [], "search_p50_ms": [], "search_every_experiment_p50_ms": [],
                      "rest_log_metric": []} for mode in ("off", "on")}

    with fresh_database(args.database_url) as db_url, start_tracking(db_url) as off_uri, \
            start_tracking(db_url, **AUTH_ENV) as on_uri, tempfile.TemporaryDirectory() as artifacts:
        clients = {"off": mlgrid.MlgridClient(off_uri), "on": mlgrid.MlgridClient(on_uri, token=user_token(on_uri))}
        # One experiment per mode, created by its caller (with auth on: the bench user, who gets MANAGE).
        experiments = {mode: client.create_experiment(f"auth-{mode}-{uuid.uuid4().hex[:8]}") for mode, client in clients.items()}
        hidden = clients["off"].create_experiment(f"auth-hidden-{uuid.uuid4().hex[:8]}")  # the bench user may not read it
        for experiment in [*experiments.values(), hidden]:
            asyncio.run(bulk_seed_runs(db_url, int(experiment), 10_000, params=5, metrics=5))
        asyncio.run(analyze(db_url))  # statistics, as a database in use has them
        for _ in range(args.rounds):
            for mode, client in clients.items():
                run_id = client.create_run(experiments[mode]).info.run_id
                results = figures[mode]
                results["log_metric_unary"].append(bench_unary_log_metric(client, run_id, int(3000 * scale))["calls_per_s"])
                results["streaming_ingest"].append(bench_streaming_ingest(client, run_id, int(100 * scale))["metrics_per_s"])
                results["search_p50_ms"].append(bench_search(client, experiments[mode], int(30 * scale))["p50_ms"])
                results["search_every_experiment_p50_ms"].append(search_every_experiment(client, int(30 * scale)))
        with start_server(db_url, os.path.join(artifacts, "off")) as (_, off_url), \
                start_server(db_url, os.path.join(artifacts, "on"), auth_env=AUTH_ENV) as (_, on_url):
            for _ in range(args.rounds):
                figures["off"]["rest_log_metric"].append(asyncio.run(rest_log_metric(off_url, {}, 5 * scale)))
                figures["on"]["rest_log_metric"].append(
                    asyncio.run(rest_log_metric(on_url, {"Authorization": basic(USER, USER_PASSWORD)}, 5 * scale)))

    summary = {}
    for name in figures["off"]:
        off, on = median(figures["off"][name]), median(figures["on"][name])
        # For a latency, the ratio is off / on, so that for every figure 1.0 is free and lower costs more.
        summary[name] = {"off": off, "on": on, "ratio": round(off / on if name.endswith("_ms") else on / off, 3),
                         "rounds": {mode: [round(v, 1) for v in figures[mode][name]] for mode in ("off", "on")}}
    print(json.dumps({"backend": "postgresql", "rounds": args.rounds, **summary}, indent=2))


if __name__ == "__main__":
    main()
