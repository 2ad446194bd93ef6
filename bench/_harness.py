"""What the benchmarks share: a fresh PostgreSQL database, a tracking server
process on it, and bulk seeding with COPY."""
import asyncio
import contextlib
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import asyncpg
from sqlalchemy.engine import make_url

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from services.common.server import free_port  # noqa: E402
from services.db import run_data_fields  # noqa: E402
from services.db.migrations import upgrade  # noqa: E402


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_database(admin_url: str, migrate: bool = True):
    """A new database on the server of `admin_url`, migrated (or left empty); dropped afterwards."""
    name = f"mlgrid_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str):
        conn = await asyncpg.connect(_plain(admin_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def running(cmd: list[str], port: int, env: dict | None = None, timeout: float = 30):
    """Run `cmd` (from the repository) until the block ends, once it listens on `port`; its
    process group is stopped at the end (servers that start workers of their own)."""
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd[:3])} exited: {open(log.name).read()[-3000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(cmd[:3])} did not start: {open(log.name).read()[-3000:]}")
            time.sleep(0.05)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        os.unlink(log.name)


@contextlib.contextmanager
def start_tracking(db_url: str, **extra_env: str):
    """`python -m services.tracking` on free ports (with extra environment variables); yields its grpc:// URI."""
    port = free_port()
    env = dict(
        os.environ,
        MLGRID_BACKEND_STORE_URI=db_url,
        MLGRID_HOST="127.0.0.1",
        MLGRID_GRPC_PORT=str(port),
        MLGRID_METRICS_PORT=str(free_port()),
        MLGRID_DB_AUTO_INIT="false",
        **extra_env,
    )
    with running([sys.executable, "-m", "services.tracking"], port, env):
        yield f"grpc://127.0.0.1:{port}"


@contextlib.contextmanager
def start_server(db_url: str, artifacts: str, auth_env: dict | None = None):
    """`mlgrid server` on free ports (with `auth_env`: --auth, and those variables); yields (grpc:// URI, http:// URL
    of its REST API and UI)."""
    grpc_port, http_port = free_port(), free_port()
    cmd = [
        sys.executable, "-m", "mlgrid.cli.main", "server", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
        "--port", str(http_port), "--backend-store-uri", db_url, "--artifacts-destination", artifacts,
    ] + (["--auth"] if auth_env else [])
    with running(cmd, http_port, dict(os.environ, **auth_env) if auth_env else None):
        yield f"grpc://127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}"


async def bulk_seed_runs(
    db_url: str,
    experiment_id: int,
    count: int,
    params: int,
    metrics: int,
    tags: int = 0,
    tag_values: tuple[str, ...] = ("a", "b", "c", "d"),
    start_time: int = 1_700_000_000_000,
) -> list[str]:
    """Insert `count` runs with params p0.. ('x'/'y' for p2), latest metrics m0.. (uniform 0..1) and tags t0..,
    plus a `team` tag from `tag_values`, with COPY. Returns the run ids."""
    rng = random.Random(experiment_id)
    conn = await asyncpg.connect(_plain(db_url))
    try:
        run_ids = [uuid.uuid4().hex for _ in range(count)]
        await conn.copy_records_to_table(
            "runs",
            columns=["run_uuid", "name", "experiment_id", "user_id", "status", "start_time", "lifecycle_stage", "artifact_uri"],
            records=[
                (rid, f"run-{i}", experiment_id, "bench", "FINISHED", start_time + i, "active", f"mlgrid-artifacts:/{experiment_id}/{rid}/artifacts")
                for i, rid in enumerate(run_ids)
            ],
        )
        param_rows = [
            (rid, f"p{k}", rng.choice("xy") if k == 2 else f"value-{rng.randrange(1000)}")
            for rid in run_ids
            for k in range(params)
        ]
        await conn.copy_records_to_table(
            "params",
            columns=["run_uuid", "key", "value", "encoded"],
            records=[(*row, run_data_fields.param(*row[1:])) for row in param_rows],
        )
        metric_rows = [(rid, f"m{k}", rng.random()) for rid in run_ids for k in range(metrics)]
        await conn.copy_records_to_table(
            "latest_metrics",
            columns=["run_uuid", "key", "value", "is_nan", "timestamp", "step", "encoded"],
            records=[
                (rid, key, value, False, start_time, 0, run_data_fields.metric(key, value, start_time, 0))
                for rid, key, value in metric_rows
            ],
        )
        tag_rows = [
            row
            for i, rid in enumerate(run_ids)
            for row in [(rid, "mlflow.runName", f"run-{i}"), (rid, "team", rng.choice(tag_values))]
            + [(rid, f"t{k}", f"tag-{rng.randrange(100)}") for k in range(tags)]
        ]
        await conn.copy_records_to_table(
            "tags",
            columns=["run_uuid", "key", "value", "encoded"],
            records=[(*row, run_data_fields.tag(*row[1:])) for row in tag_rows],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return run_ids


def latencies_ms(fn, repeats: int, warmup: int = 1) -> dict:
    """p50 and p95 of `fn()` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(timings), 2), "p95_ms": round(statistics.quantiles(timings, n=20)[-1], 2)}
