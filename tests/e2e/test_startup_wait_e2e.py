"""MLGRID_STARTUP_WAIT_SECONDS: a service whose pod starts before its database is migrated (the chart's
migrations Job running beside it) or before its bucket exists waits for them, then serves."""
import os
import subprocess
import sys
import time
import uuid

import pytest
from conftest import REPO, free_port, pg_execute
from minio import Minio
from sqlalchemy.engine import make_url

from services.db.migrations import upgrade

sys.path.insert(0, os.path.join(REPO, "deploy", "local"))
from topology import health_serving  # noqa: E402


@pytest.fixture
def empty_database(pg_url):
    name = f"mlgrid_wait_{uuid.uuid4().hex[:8]}"
    pg_execute(pg_url, f'CREATE DATABASE "{name}"')
    yield make_url(pg_url).set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    pg_execute(pg_url, f'DROP DATABASE "{name}" WITH (FORCE)')


def start(module: str, env: dict, tmp_path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {"MLGRID_HOST": "127.0.0.1", "MLGRID_GRPC_PORT": str(port), "MLGRID_METRICS_PORT": "0", **env}
    log = open(tmp_path / f"{module}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", module], cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    return proc, port


def serving(port: int) -> bool:
    return health_serving(f"127.0.0.1:{port}")


def wait_serving(proc: subprocess.Popen, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not serving(port):
        assert proc.poll() is None, "the service exited"
        assert time.monotonic() < deadline, "the service did not come up"
        time.sleep(0.2)


def wait_waiting(proc: subprocess.Popen, module: str, tmp_path, timeout: float = 30) -> None:
    """Until the service says it waits for a dependency (its start-up may take seconds on a busy machine)."""
    deadline = time.monotonic() + timeout
    while "waiting for a dependency" not in (tmp_path / f"{module}.log").read_text():
        assert proc.poll() is None, "the service exited"
        assert time.monotonic() < deadline, "the service did not start waiting"
        time.sleep(0.2)


def s3_client(endpoint: dict) -> Minio:
    scheme, host = endpoint["url"].split("://", 1)
    return Minio(host, endpoint["access_key"], endpoint["secret_key"], secure=scheme == "https", region="us-east-1")


def test_tracking_waits_for_its_migrations(empty_database, tmp_path):
    store = empty_database.replace("postgresql://", "postgresql+asyncpg://", 1)
    env = {"MLGRID_BACKEND_STORE_URI": store, "MLGRID_DB_AUTO_INIT": "false", "MLGRID_STARTUP_WAIT_SECONDS": "60"}
    proc, port = start("services.tracking", env, tmp_path)
    try:
        wait_waiting(proc, "services.tracking", tmp_path)
        assert proc.poll() is None and not serving(port)  # waiting, not serving and not gone
        upgrade(empty_database)  # what the migrations Job does
        wait_serving(proc, port)
        assert "waiting for a dependency" in (tmp_path / "services.tracking.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_without_a_wait_a_missing_schema_stops_the_service_saying_why(empty_database, tmp_path):
    store = empty_database.replace("postgresql://", "postgresql+asyncpg://", 1)
    proc, _ = start("services.registry", {"MLGRID_BACKEND_STORE_URI": store, "MLGRID_DB_AUTO_INIT": "false"}, tmp_path)
    assert proc.wait(timeout=60) != 0
    assert "mlgrid db upgrade" in (tmp_path / "services.registry.log").read_text()


def artifacts_env(endpoint: dict, bucket: str, **extra: str) -> dict:
    return {
        "MLGRID_ARTIFACTS_DESTINATION": f"s3://{bucket}/artifacts", "MLGRID_S3_ENDPOINT_URL": endpoint["url"],
        "MLGRID_S3_ACCESS_KEY_ID": endpoint["access_key"], "MLGRID_S3_SECRET_ACCESS_KEY": endpoint["secret_key"],
        "MLGRID_TRACKING_TARGET": "127.0.0.1:1", **extra,
    }


def test_artifacts_wait_for_their_bucket(s3_endpoint, tmp_path):
    bucket = f"late-{uuid.uuid4().hex[:8]}"
    proc, port = start("services.artifacts", artifacts_env(s3_endpoint, bucket, MLGRID_STARTUP_WAIT_SECONDS="60"), tmp_path)
    try:
        wait_waiting(proc, "services.artifacts", tmp_path)
        assert proc.poll() is None and not serving(port)
        s3_client(s3_endpoint).make_bucket(bucket)
        wait_serving(proc, port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_artifacts_make_their_bucket_when_told_to(s3_endpoint, tmp_path):
    bucket = f"own-{uuid.uuid4().hex[:8]}"
    proc, port = start("services.artifacts", artifacts_env(s3_endpoint, bucket, MLGRID_S3_CREATE_BUCKET="true"), tmp_path)
    try:
        wait_serving(proc, port)
        assert s3_client(s3_endpoint).bucket_exists(bucket)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
