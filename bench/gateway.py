"""MLflow's REST API through mlgrid's gateway and, in the same run, against `mlflow server`, both on
the same PostgreSQL server (a fresh database each); plus the gateway's gRPC overhead. Prints JSON.

    .venv/bin/python bench/gateway.py [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--only mlgrid|mlflow|grpc] [--seconds 5] [--concurrency 8] [--artifact-mb 256]

The same HTTP requests (aiohttp, a closed loop of --concurrency callers) go to both servers:
runs/log-metric calls/s, runs/log-batch metrics/s (1,000 a call), metrics/get-history points/s
(a 100,000-point metric read in MLflow's pages of 25,000), runs/search p50 (100 of 1,000 runs, with a
filter and an order), and an artifact up and down through /api/2.0/mlflow-artifacts/ (MB/s).
`mlflow server` runs as users start it (its default workers); `mlgrid server` as `make dev` starts
it, on PostgreSQL. The gRPC part compares unary LogMetric calls/s straight to a tracking service
and through `python -m services.gateway` in front of it, routing by nginx and in Python.
"""
import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import tempfile
import sys
import time
import urllib.request
import uuid

import aiohttp
import asyncpg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import free_port, fresh_database, running, start_server, start_tracking  # noqa: E402
from services.gateway.nginx import nginx_binary  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

BIN = os.path.dirname(sys.executable)
HISTORY_POINTS = 100_000
HISTORY_PAGE = 25_000  # MlflowClient.get_metric_history's page size
BATCH = 1000  # MLflow's limit of metrics in one log-batch
SEARCH_RUNS = 1000


def rate(count: float, seconds: float) -> float:
    return round(count / seconds, 1)


@contextlib.contextmanager
def mlflow_server(admin_url: str, artifacts: str):
    """`mlflow server` as users start it (its default workers), on a new empty database it migrates itself."""
    port = free_port()
    with fresh_database(admin_url, migrate=False) as url:
        store = make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        cmd = [f"{BIN}/mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri", store, "--artifacts-destination", artifacts]
        with running(cmd, port, timeout=180):
            wait_healthy(f"http://127.0.0.1:{port}")
            yield f"http://127.0.0.1:{port}", url


@contextlib.contextmanager
def mlgrid_server(admin_url: str, artifacts: str):
    """`mlgrid server` as `make dev` starts it, on PostgreSQL."""
    with fresh_database(admin_url) as url:
        store = make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        with start_server(store, artifacts) as (_, base):
            yield base, url


def wait_healthy(base: str, timeout: float = 60) -> None:
    """Until GET /health answers 200 (a server may listen before its workers are ready)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Api:
    """MLflow's REST API 2.0 over one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base: str):
        self.session = session
        self.base = base

    async def call(self, method: str, endpoint: str, body: dict | None = None, params: dict | None = None) -> dict:
        url = f"{self.base}/api/2.0/mlflow/{endpoint}"
        async with self.session.request(method, url, json=body, params=params) as response:
            payload = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {endpoint}: {response.status} {payload[:300]!r}")
            return json.loads(payload) if payload else {}

    async def new_run(self, experiment_id: str) -> str:
        created = await self.call("POST", "runs/create", {"experiment_id": experiment_id, "start_time": int(time.time() * 1000)})
        return created["run"]["info"]["run_id"]


async def closed_loop(concurrency: int, seconds: float, request) -> tuple[int, float]:
    """`concurrency` callers each awaiting request(i) in turn for `seconds`: (calls done, elapsed)."""
    done = 0
    stop_at = time.perf_counter() + seconds

    async def caller(worker: int):
        nonlocal done
        i = worker
        while time.perf_counter() < stop_at:
            await request(i)
            done += 1
            i += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(caller(w) for w in range(concurrency)))
    return done, time.perf_counter() - started


async def bench_rest(base: str, database_url: str, seconds: float, concurrency: int, artifact_mb: int) -> dict:
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:
        api = Api(session, base)
        experiment_id = (await api.call("POST", "experiments/create", {"name": f"bench-{uuid.uuid4().hex[:8]}"}))["experiment_id"]
        run_id = await api.new_run(experiment_id)
        results = {}

        async def log_metric(i: int):
            await api.call("POST", "runs/log-metric", {"run_id": run_id, "key": "loss", "value": i * 0.001, "timestamp": 1_700_000_000_000 + i, "step": i})

        for i in range(20):  # warm-up: connections, caches
            await log_metric(-1 - i)
        calls, elapsed = await closed_loop(concurrency, seconds, log_metric)
        results["log_metric_calls_per_s"] = rate(calls, elapsed)

        batch_run = await api.new_run(experiment_id)

        async def log_batch(i: int):
            metrics = [{"key": f"m{j % 10}", "value": j * 0.5, "timestamp": 1_700_000_000_000 + j, "step": i * BATCH + j} for j in range(BATCH)]
            await api.call("POST", "runs/log-batch", {"run_id": batch_run, "metrics": metrics})

        calls, elapsed = await closed_loop(max(1, concurrency // 2), seconds, log_batch)
        results["log_batch_metrics_per_s"] = rate(calls * BATCH, elapsed)

        history_run = await api.new_run(experiment_id)
        for start in range(0, HISTORY_POINTS, BATCH):
            metrics = [{"key": "curve", "value": s * 0.25, "timestamp": 1_700_000_000_000 + s, "step": s} for s in range(start, start + BATCH)]
            await api.call("POST", "runs/log-batch", {"run_id": history_run, "metrics": metrics})

        async def read_history() -> int:
            points, token = 0, None
            while True:
                params = {"run_id": history_run, "metric_key": "curve", "max_results": str(HISTORY_PAGE)}
                if token:
                    params["page_token"] = token
                page = await api.call("GET", "metrics/get-history", params=params)
                points += len(page.get("metrics", []))
                token = page.get("next_page_token")
                if not token:
                    return points

        read = await read_history()  # warm-up, and the check that every point comes back
        if read != HISTORY_POINTS:
            raise RuntimeError(f"history returned {read} of {HISTORY_POINTS} points")
        started, reads = time.perf_counter(), 0
        while time.perf_counter() - started < seconds:
            await read_history()
            reads += 1
        results["history_points_per_s"] = rate(reads * HISTORY_POINTS, time.perf_counter() - started)

        search_experiment = (await api.call("POST", "experiments/create", {"name": f"search-{uuid.uuid4().hex[:8]}"}))["experiment_id"]

        async def seeded_run(i: int):
            rid = await api.new_run(search_experiment)
            await api.call("POST", "runs/log-batch", {
                "run_id": rid,
                "params": [{"key": f"p{k}", "value": f"v{(i * 7 + k) % 13}"} for k in range(5)],
                "metrics": [{"key": f"m{k}", "value": ((i * 31 + k) % 100) / 100, "timestamp": 1_700_000_000_000, "step": 0} for k in range(5)],
                "tags": [{"key": "team", "value": "ab"[i % 2]}],
            })

        for start in range(0, SEARCH_RUNS, 50):
            await asyncio.gather(*(seeded_run(i) for i in range(start, start + 50)))
        search = {"experiment_ids": [search_experiment], "filter": "metrics.m0 > 0.3 and tags.team = 'a'",
                  "order_by": ["metrics.m1 DESC"], "max_results": 100}
        await analyze(database_url)  # as autovacuum would within a minute: plans from current statistics
        latencies = []
        for i in range(60):
            started = time.perf_counter()
            found = await api.call("POST", "runs/search", search)
            if i >= 10:
                latencies.append((time.perf_counter() - started) * 1000)
        if not found.get("runs"):
            raise RuntimeError("search found no runs")
        results["search_p50_ms"] = round(statistics.median(latencies), 2)

        results.update(await bench_artifact(session, base, experiment_id, run_id, artifact_mb))
        return results


async def analyze(database_url: str) -> None:
    conn = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def bench_artifact(session: aiohttp.ClientSession, base: str, experiment_id: str, run_id: str, size_mb: int) -> dict:
    """One file of `size_mb` MiB up and down through MLflow's artifact proxy (where the run's artifacts live)."""
    chunk = os.urandom(1 << 20)
    url = f"{base}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/bench.bin"

    async def body():
        for _ in range(size_mb):
            yield chunk

    started = time.perf_counter()
    async with session.put(url, data=body()) as response:
        if response.status != 200:
            raise RuntimeError(f"artifact upload: {response.status} {(await response.read())[:300]!r}")
    up = time.perf_counter() - started
    started, received = time.perf_counter(), 0
    async with session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"artifact download: {response.status}")
        async for part in response.content.iter_chunked(1 << 20):
            received += len(part)
    down = time.perf_counter() - started
    if received != size_mb << 20:
        raise RuntimeError(f"artifact download returned {received} bytes of {size_mb << 20}")
    return {"artifact_mb": size_mb, "artifact_upload_mb_per_s": rate(size_mb, up), "artifact_download_mb_per_s": rate(size_mb, down)}


def bench_grpc_overhead(admin_url: str, calls: int = 5000) -> dict:
    """Unary LogMetric calls/s, one caller, straight to the tracking service and through the gateway in front of
    it — routing by nginx (where installed, as the image has it) and in Python."""
    import grpc

    from mlgrid.v1 import tracking_pb2 as pb
    from mlgrid.v1 import tracking_pb2_grpc

    def calls_per_s(target: str, run_id: str) -> float:
        with grpc.insecure_channel(target) as channel:
            stub = tracking_pb2_grpc.TrackingServiceStub(channel)
            for i in range(100):
                stub.LogMetric(pb.LogMetricRequest(run_id=run_id, key="warm", value=i, step=i))
            started = time.perf_counter()
            for i in range(calls):
                stub.LogMetric(pb.LogMetricRequest(run_id=run_id, key="unary", value=i, step=i, timestamp=i))
            return rate(calls, time.perf_counter() - started)

    planes = ["nginx", "python"] if nginx_binary("auto") else ["python"]
    with fresh_database(admin_url) as url, start_tracking(url) as tracking_uri, contextlib.ExitStack() as gateways:
        tracking_target = tracking_uri.removeprefix("grpc://")
        targets = {"direct": tracking_target}
        for plane in planes:  # a gateway routing by nginx, and one routing in Python
            grpc_port, http_port = free_port(), free_port()
            env = {"MLGRID_GRPC_PORT": str(grpc_port), "MLGRID_GATEWAY_HTTP_PORT": str(http_port), "MLGRID_METRICS_PORT": "0",
                   "MLGRID_GATEWAY_TRACKING_TARGET": tracking_target, "MLGRID_HOST": "127.0.0.1",
                   "MLGRID_GATEWAY_NGINX": "on" if plane == "nginx" else "off"}
            gateways.enter_context(running([sys.executable, "-m", "services.gateway"], http_port, dict(os.environ, **env)))
            targets[plane] = f"127.0.0.1:{grpc_port}"
        with grpc.insecure_channel(tracking_target) as channel:
            stub = tracking_pb2_grpc.TrackingServiceStub(channel)
            experiment_id = stub.CreateExperiment(pb.CreateExperimentRequest(name="overhead")).experiment_id
            run_id = stub.CreateRun(pb.CreateRunRequest(experiment_id=experiment_id)).run.info.run_id
        rates = {name: [] for name in targets}
        for _ in range(3):  # interleaved, so that a noisy moment hurts each alike
            for name, target in targets.items():
                rates[name].append(calls_per_s(target, run_id))
    direct = statistics.median(rates["direct"])
    report = {"log_metric_calls_per_s": rates}
    for plane in planes:
        report[f"overhead_pct_{plane}"] = round((direct / statistics.median(rates[plane]) - 1) * 100, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("MLGRID_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--only", choices=["mlgrid", "mlflow", "grpc"], default=None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--artifact-mb", type=int, default=256)
    args = parser.parse_args()

    report = {"workload": {"seconds": args.seconds, "concurrency": args.concurrency, "history_points": HISTORY_POINTS,
                           "batch": BATCH, "search_runs": SEARCH_RUNS, "artifact_mb": args.artifact_mb}}
    servers = {"mlgrid": mlgrid_server, "mlflow": mlflow_server}
    for name, start in servers.items():
        if args.only not in (None, name):
            continue
        artifacts = tempfile.mkdtemp(prefix=f"bench-{name}-")
        try:
            with start(args.database_url, artifacts) as (base, database_url):
                report[name] = asyncio.run(bench_rest(base, database_url, args.seconds, args.concurrency, args.artifact_mb))
        finally:
            shutil.rmtree(artifacts, ignore_errors=True)
    if "mlgrid" in report and "mlflow" in report:
        report["ratio"] = {key: round(value / report["mlflow"][key], 1) if not key.endswith("_ms") else round(report["mlflow"][key] / value, 1)
                           for key, value in report["mlgrid"].items() if key != "artifact_mb"}
    if args.only in (None, "grpc"):
        report["grpc"] = bench_grpc_overhead(args.database_url)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
