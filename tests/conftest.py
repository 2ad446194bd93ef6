"""Shared fixtures: one fresh PostgreSQL database per test session (per xdist
worker), one migrated SQLite template, stores on both, a real `mlgrid server`,
and a real S3 endpoint (moto's server, or S3_ENDPOINT_URL such as a MinIO)."""
import asyncio
import concurrent.futures
import contextlib
import glob
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from services.common.config import RegistryConfig, StoreConfig
from services.common.server import free_port  # noqa: F401 (the tests import it from here)
from services.db.migrations import upgrade
from services.registry.service import open_store as open_registry_store
from services.tracking.service import open_store

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_thread(fn, *args):
    """Run blocking set-up (which may call asyncio.run) outside any running event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def pg_execute(url: str, sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE...) on the PostgreSQL server at `url`."""

    async def execute():
        conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    in_thread(asyncio.run, execute())


def _pg_answers(url: str) -> bool:
    async def probe():
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"), timeout=3)
        await conn.close()

    try:
        in_thread(asyncio.run, probe())
        return True
    except (OSError, asyncpg.PostgresError, asyncio.TimeoutError):
        return False


def _start_throwaway_postgres(tmp: str) -> tuple[str, object]:
    """Start a private PostgreSQL server from the installed binaries (pytest-postgresql)."""
    from pytest_postgresql.executors import PostgreSQLExecutor

    pg_ctl = shutil.which("pg_ctl") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))), None)
    if pg_ctl is None:
        pytest.exit(
            f"PostgreSQL does not answer at {DEFAULT_PG_URL} and no PostgreSQL server binaries are installed. "
            "Start PostgreSQL there, set TEST_DATABASE_URL to a server you can use, "
            "or install the binaries (apt-get install postgresql) so the tests can start their own.",
            returncode=3,
        )
    if os.geteuid() == 0:
        pytest.exit(
            f"PostgreSQL does not answer at {DEFAULT_PG_URL}, and as root the tests cannot start a private server "
            "(PostgreSQL refuses to run as root). Start the machine's server (pg_ctlcluster <version> main start; "
            ".ci/run does this) or set TEST_DATABASE_URL.",
            returncode=3,
        )
    port = free_port()
    executor = PostgreSQLExecutor(
        executable=pg_ctl, host="127.0.0.1", port=port, datadir=os.path.join(tmp, "data"),
        unixsocketdir=tmp, logfile=os.path.join(tmp, "pg.log"), startparams="-w", dbname="postgres",
    )
    executor.start()
    return f"postgresql://postgres@127.0.0.1:{port}/postgres", executor


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory):
    """A fresh database for this session, dropped at its end."""
    admin_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)
    executor = None
    if not _pg_answers(admin_url):
        if "TEST_DATABASE_URL" in os.environ:
            pytest.exit(f"TEST_DATABASE_URL={admin_url} does not answer", returncode=3)
        admin_url, executor = _start_throwaway_postgres(str(tmp_path_factory.mktemp("pg")))
    name = f"mlgrid_test_{uuid.uuid4().hex[:12]}"
    pg_execute(admin_url, f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    in_thread(upgrade, url)
    yield url
    pg_execute(admin_url, f'DROP DATABASE "{name}" WITH (FORCE)')
    if executor is not None:
        executor.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("sqlite") / "template.db")
    in_thread(upgrade, f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def artifact_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("artifacts"))


def store_config(uri: str, artifact_root: str) -> StoreConfig:
    return StoreConfig(backend_store_uri=uri, artifact_roots=[artifact_root], db_auto_init=False)


@pytest.fixture(scope="session")
async def pg_store(pg_url, artifact_root):
    store = await open_store(store_config(pg_url, artifact_root))
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path, sqlite_template, artifact_root, pg_store):
    """The tracking store on each backend: a fresh SQLite file, or the session's PostgreSQL database."""
    if request.param == "postgres":
        yield pg_store
        return
    path = tmp_path / "mlgrid.db"
    shutil.copy(sqlite_template, path)
    store = await open_store(store_config(f"sqlite:///{path}", artifact_root))
    yield store
    await store.close()


@pytest.fixture(scope="session")
async def pg_registry_store(pg_url, artifact_root):
    store = await open_registry_store(store_config(pg_url, artifact_root), RegistryConfig())
    yield store
    await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def registry_store(request, tmp_path, sqlite_template, artifact_root, pg_registry_store):
    """The registry store on each backend: a fresh SQLite file, or the session's PostgreSQL database."""
    if request.param == "postgres":
        yield pg_registry_store
        return
    path = tmp_path / "mlgrid.db"
    shutil.copy(sqlite_template, path)
    store = await open_registry_store(store_config(f"sqlite:///{path}", artifact_root), RegistryConfig())
    yield store
    await store.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A real `mlgrid server` process on free ports, SQLite + local folder; yields its gRPC URI."""
    workdir = tmp_path_factory.mktemp("server")
    grpc_port, http_port = free_port(), free_port()
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlgrid.cli.main", "server", "--host", "127.0.0.1",
         "--grpc-port", str(grpc_port), "--port", str(http_port),
         "--backend-store-uri", f"sqlite:///{workdir}/mlgrid.db", "--artifacts-destination", str(workdir / "mlartifacts")],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )
    wait_for_port(grpc_port, proc, workdir / "server.log")
    yield {"uri": f"grpc://127.0.0.1:{grpc_port}", "http_port": http_port, "proc": proc, "workdir": workdir}
    proc.terminate()
    proc.wait(timeout=30)


ADMIN, ADMIN_PASSWORD = "admin", "an admin password of some length"
AUTH_CACHE_SECONDS = 1.0


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory):
    """A real `mlgrid server --auth` (SQLite + local folder): the first admin ADMIN/ADMIN_PASSWORD, the default
    permission NO_PERMISSIONS, caches of AUTH_CACHE_SECONDS; yields its HTTP and gRPC URIs."""
    workdir = tmp_path_factory.mktemp("auth-server")
    grpc_port, http_port = free_port(), free_port()
    env = {**_clean_env(), "MLGRID_ADMIN_USERNAME": ADMIN, "MLGRID_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "MLGRID_AUTH_DEFAULT_PERMISSION": "NO_PERMISSIONS", "MLGRID_AUTH_CACHE_SECONDS": str(AUTH_CACHE_SECONDS)}
    log = open(workdir / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlgrid.cli.main", "server", "--auth", "--host", "127.0.0.1",
         "--grpc-port", str(grpc_port), "--port", str(http_port),
         "--backend-store-uri", f"sqlite:///{workdir}/mlgrid.db", "--artifacts-destination", str(workdir / "mlartifacts")],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    wait_for_port(http_port, proc, workdir / "server.log")
    url = f"http://127.0.0.1:{http_port}"
    yield {"url": url, "grpc": f"grpc://127.0.0.1:{grpc_port}", "proc": proc}
    proc.terminate()
    proc.wait(timeout=30)


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("MLGRID_", "MLFLOW_TRACKING_"))}


def wait_for_port(port: int, proc: subprocess.Popen, log_path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{open(log_path).read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s:\n{open(log_path).read()}")


@contextlib.contextmanager
def running(args: list[str], port: int, workdir, env: dict, name: str, preexec_fn=None):
    """A server process on `port`, stopped at the end with what it started (the gateway's nginx): its
    own process group is sent SIGTERM, and SIGKILL if anything of it is left after 30 s."""
    log_path = workdir / f"{name}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            args, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn, start_new_session=True
        )
    try:
        wait_for_port(port, proc, log_path)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def unique(prefix: str = "exp") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def files_under(folder) -> dict[str, bytes]:
    """Every file below `folder`: its path relative to it -> its bytes."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder)] = open(path, "rb").read()
    return found


@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3 HTTP endpoint with a bucket: S3_ENDPOINT_URL (with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
    and optionally S3_BUCKET) when set, else moto's standalone server on a loopback port."""
    from minio import Minio

    server = None
    url = os.environ.get("S3_ENDPOINT_URL")
    if url:
        endpoint = {
            "url": url, "access_key": os.environ["AWS_ACCESS_KEY_ID"], "secret_key": os.environ["AWS_SECRET_ACCESS_KEY"],
            "bucket": os.environ.get("S3_BUCKET", "mlgrid-test"),
        }
    else:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = {"url": f"http://{host}:{port}", "access_key": "test", "secret_key": "test", "bucket": "mlgrid-test"}
    parsed = endpoint["url"].split("://", 1)
    client = Minio(parsed[1], endpoint["access_key"], endpoint["secret_key"], secure=parsed[0] == "https", region="us-east-1")
    if not client.bucket_exists(endpoint["bucket"]):
        client.make_bucket(endpoint["bucket"])
    endpoint["client"] = client
    yield endpoint
    if server is not None:
        server.stop()


def s3_env(endpoint: dict, prefix: str) -> dict:
    """The environment of an artifact service on `endpoint`, under a prefix of its own."""
    return {
        "MLGRID_ARTIFACTS_DESTINATION": f"s3://{endpoint['bucket']}/{prefix}",
        "MLGRID_S3_ENDPOINT_URL": endpoint["url"],
        "MLGRID_S3_ACCESS_KEY_ID": endpoint["access_key"],
        "MLGRID_S3_SECRET_ACCESS_KEY": endpoint["secret_key"],
        "MLGRID_S3_REGION": "us-east-1",
    }
