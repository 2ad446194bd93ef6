"""Artifact transfer throughput and the service's memory; prints one JSON object.

    .venv/bin/python bench/artifacts.py [--size-mb 1024] [--repeats 3] [--backends local,s3,s3-direct]

Writes a file of random bytes, starts the tracking service (SQLite) and the
artifact service (`python -m services.artifacts`) as separate processes, and
moves the file through the mlgrid client: log_artifact, then download_artifacts
(checked byte for byte by the client's sha256 and by comparing the files), each
`--repeats` times; the median is reported. The download is written as the
client writes it by default (`MLGRID_DOWNLOAD_DIRECT_IO=auto`: O_DIRECT for a
file this large, where the filesystem allows it); the setting in force is
reported as `download_direct_io` (run with MLGRID_DOWNLOAD_DIRECT_IO=off to
measure writes through the page cache). `download_to_memory_mb_s` is the
same download received and sha256-checked without writing a file: the
service's side alone. Backends: `local` (a folder on this
disk), `s3` (moto's S3 server in its own process, bytes streamed through the
service) and `s3-direct` (the same, bytes sent straight to the store with
presigned URLs). Peak RSS is the artifact service's VmHWM over all transfers.
The file is in the page cache when read, as it is right after a job writes it.
"""
import argparse
import contextlib
import filecmp
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import mlgrid
from mlgrid import _direct_io
from mlgrid.artifacts import ArtifactRoot
from services.common.server import free_port

MIB = 1024 * 1024


def wait_for_port(port: int, proc: subprocess.Popen, log_path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {open(log_path).read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}: {open(log_path).read()}")


@contextlib.contextmanager
def process(args: list[str], port: int, workdir: str, env: dict | None = None):
    log_path = os.path.join(workdir, f"{port}.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log_path)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@contextlib.contextmanager
def moto_s3(workdir: str):
    """moto's S3 server in its own process, with a bucket; yields its endpoint URL."""
    port = free_port()
    with process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], port, workdir):
        from minio import Minio

        Minio(f"127.0.0.1:{port}", "bench", "bench", secure=False, region="us-east-1").make_bucket("bench")
        yield f"http://127.0.0.1:{port}"


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def make_file(path: str, size_mb: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size_mb // 64):
            f.write(os.urandom(64 * MIB))
        f.write(os.urandom((size_mb % 64) * MIB))


@contextlib.contextmanager
def services(name: str, workdir: str, s3_endpoint: str | None):
    """The tracking service and the artifact service as separate processes (as deployed);
    yields (tracking URI, artifacts URI, the artifact service's process)."""
    tracking_port, artifacts_port = free_port(), free_port()
    common = dict(os.environ, MLGRID_HOST="127.0.0.1", MLGRID_METRICS_PORT="0")
    artifacts_env = dict(
        common, MLGRID_GRPC_PORT=str(artifacts_port), MLGRID_TRACKING_TARGET=f"127.0.0.1:{tracking_port}",
        MLGRID_ARTIFACTS_DESTINATION=os.path.join(workdir, f"artifacts-{name}"),
    )
    if s3_endpoint:
        artifacts_env.update(
            MLGRID_ARTIFACTS_DESTINATION=f"s3://bench/{name}", MLGRID_S3_ENDPOINT_URL=s3_endpoint,
            MLGRID_S3_ACCESS_KEY_ID="bench", MLGRID_S3_SECRET_ACCESS_KEY="bench",
            MLGRID_ARTIFACTS_DIRECT_THRESHOLD_MB="64" if name == "s3-direct" else "0",
        )
    tracking_env = dict(common, MLGRID_GRPC_PORT=str(tracking_port), MLGRID_BACKEND_STORE_URI=f"sqlite:///{workdir}/{name}.db")
    with process([sys.executable, "-m", "services.tracking"], tracking_port, workdir, tracking_env):
        with process([sys.executable, "-m", "services.artifacts"], artifacts_port, workdir, artifacts_env) as proc:
            yield f"grpc://127.0.0.1:{tracking_port}", f"grpc://127.0.0.1:{artifacts_port}", proc


def download_to_memory(client, run_id: str, path: str, sha256: str) -> None:
    """The service's download stream, received and checked by sha256 but not written to a file:
    what the service sends, apart from the client's disk (and this VM's cost of fresh page cache)."""
    from mlgrid import _wire
    from mlgrid.v1 import artifacts_pb2 as pb

    hasher = hashlib.sha256()
    for raw in client.artifacts._download(pb.DownloadRequest(target=pb.ArtifactTarget(run_id=run_id, path=path))):
        chunk = _wire.chunk_of(raw)
        if chunk is not None:
            hasher.update(chunk)
    if hasher.hexdigest() != sha256:
        raise RuntimeError("the downloaded bytes differ from the uploaded ones")


def bench_backend(name: str, source: str, size_mb: int, repeats: int, workdir: str, s3_endpoint: str | None) -> dict:
    uploads, downloads, to_memory = [], [], []
    with services(name, workdir, s3_endpoint) as (tracking_uri, artifacts_uri, service):
        rss_idle = peak_rss_mb(service.pid)
        run_id = mlgrid.MlgridClient(tracking_uri).create_run("0").info.run_id
        with mlgrid.MlgridClient(artifacts_uri) as client:
            for i in range(repeats):
                os.sync()  # start each transfer with the disk idle
                started = time.perf_counter()
                stored = client.artifacts.upload_file(ArtifactRoot(run_id=run_id), source, f"r{i}/{os.path.basename(source)}")
                uploads.append(size_mb / (time.perf_counter() - started))
                if name != "s3-direct":
                    started = time.perf_counter()
                    download_to_memory(client, run_id, stored.path, stored.sha256)
                    to_memory.append(size_mb / (time.perf_counter() - started))
                target = os.path.join(workdir, "download")
                os.sync()
                started = time.perf_counter()
                local = client.download_artifacts(run_id, f"r{i}/{os.path.basename(source)}", target)
                downloads.append(size_mb / (time.perf_counter() - started))
                if not filecmp.cmp(source, local, shallow=False):
                    raise RuntimeError(f"{name}: the downloaded file differs from the uploaded one")
                shutil.rmtree(target)
        result = {
            "upload_mb_s": round(statistics.median(uploads), 1),
            "download_mb_s": round(statistics.median(downloads), 1),
            **({"download_to_memory_mb_s": round(statistics.median(to_memory), 1)} if to_memory else {}),
            "service_peak_rss_mb": peak_rss_mb(service.pid),
            "service_rss_at_start_mb": rss_idle,
        }
        if repeats > 1:
            result["upload_mb_s_all"] = [round(u, 1) for u in uploads]
            result["download_mb_s_all"] = [round(d, 1) for d in downloads]
            if to_memory:
                result["download_to_memory_mb_s_all"] = [round(d, 1) for d in to_memory]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="transfers per backend; the median is reported")
    parser.add_argument("--backends", default="local,s3,s3-direct")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="mlgrid-bench-artifacts-", dir=os.environ.get("BENCH_DIR"))
    try:
        source = os.path.join(workdir, "random.bin")
        make_file(source, args.size_mb)
        result = {"file_mb": args.size_mb, "download_direct_io": _direct_io.mode()}
        backends = args.backends.split(",")
        if "local" in backends:
            result["local"] = bench_backend("local", source, args.size_mb, args.repeats, workdir, None)
        s3_backends = [b for b in backends if b.startswith("s3")]
        if s3_backends:
            with moto_s3(workdir) as endpoint:
                for name in s3_backends:
                    result[name] = bench_backend(name, source, args.size_mb, args.repeats, workdir, endpoint)
        print(json.dumps(result))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
