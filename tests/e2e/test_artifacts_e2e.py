"""Artifacts end to end: `mlgrid server` on a local folder and on S3 (moto's server),
the artifact service alone beside the tracking service, the fluent API, the CLI,
disconnects, a full disk, and the service's memory during large transfers."""
import contextlib
import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import grpc
import pytest
from conftest import files_under, free_port, running, s3_env, unique
from grpc_health.v1 import health_pb2, health_pb2_grpc

import mlgrid
from mlgrid.exceptions import MlgridException
from mlgrid.v1 import artifacts_pb2 as pb
from mlgrid.v1 import artifacts_pb2_grpc

MIB = 1024 * 1024


@contextlib.contextmanager
def mlgrid_server(workdir, destination: str, env: dict | None = None, preexec_fn=None):
    grpc_port, http_port = free_port(), free_port()
    args = [
        sys.executable, "-m", "mlgrid.cli.main", "server", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
        "--port", str(http_port), "--backend-store-uri", f"sqlite:///{workdir}/mlgrid.db", "--artifacts-destination", destination,
    ]
    with running(args, grpc_port, workdir, dict(os.environ, **(env or {})), "server", preexec_fn) as proc:
        yield {"uri": f"grpc://127.0.0.1:{grpc_port}", "http_port": http_port, "proc": proc, "workdir": workdir}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory, s3_endpoint):
    """`mlgrid server` storing artifacts on S3; files of 1 MiB and more go directly to the store."""
    workdir = tmp_path_factory.mktemp("s3-server")
    prefix = uuid.uuid4().hex
    env = dict(s3_env(s3_endpoint, prefix), MLGRID_ARTIFACTS_DIRECT_THRESHOLD_MB="1")
    with mlgrid_server(workdir, env["MLGRID_ARTIFACTS_DESTINATION"], env) as server:
        yield dict(server, prefix=prefix, s3=s3_endpoint)


@contextlib.contextmanager
def standalone_services(workdir, **env):
    """`python -m services.tracking` and `python -m services.artifacts` as separate processes;
    yields (tracking URI, artifacts URI, the artifact service's process)."""
    tracking_port, artifacts_port = free_port(), free_port()
    common = dict(os.environ, MLGRID_HOST="127.0.0.1", MLGRID_METRICS_PORT="0")
    tracking_env = dict(common, MLGRID_GRPC_PORT=str(tracking_port), MLGRID_BACKEND_STORE_URI=f"sqlite:///{workdir}/mlgrid.db")
    artifacts_env = dict(
        common, MLGRID_GRPC_PORT=str(artifacts_port), MLGRID_TRACKING_TARGET=f"127.0.0.1:{tracking_port}",
        MLGRID_ARTIFACTS_DESTINATION=str(workdir / "artifacts"), **env,
    )
    with running([sys.executable, "-m", "services.tracking"], tracking_port, workdir, tracking_env, "tracking"):
        with running([sys.executable, "-m", "services.artifacts"], artifacts_port, workdir, artifacts_env, "artifacts") as proc:
            yield f"grpc://127.0.0.1:{tracking_port}", f"grpc://127.0.0.1:{artifacts_port}", proc


def stub_for(uri: str) -> artifacts_pb2_grpc.ArtifactServiceStub:
    return artifacts_pb2_grpc.ArtifactServiceStub(grpc.insecure_channel(uri.removeprefix("grpc://")))


def eventually(check, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# ---------------------------------------------------------------- the fluent API, the client and the CLI


def test_fluent_artifacts_round_trip(server, tmp_path):
    np = pytest.importorskip("numpy")
    from matplotlib.figure import Figure
    from PIL import Image

    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(300_000))
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "b.txt").write_text("b")
    pixels = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    figure = Figure()
    figure.subplots().plot([1, 2, 3])

    mlgrid.set_tracking_uri(server["uri"])
    mlgrid.set_experiment(unique())
    with mlgrid.start_run() as run:
        mlgrid.log_artifact(str(weights))
        mlgrid.log_artifact(str(weights), "copies")
        mlgrid.log_artifacts(str(tree), "tree")
        mlgrid.log_text("hello", "notes/hello.txt")
        mlgrid.log_dict({"lr": 0.1, "layers": [1, 2]}, "config.json")
        mlgrid.log_dict({"lr": 0.1, "layers": [1, 2]}, "config.yaml")
        mlgrid.log_image(pixels, "images/array.png")
        mlgrid.log_image(np.full((4, 4), 0.5), "images/gray.png")
        mlgrid.log_image(Image.new("RGB", (5, 5), "red"), "images/pil.png")
        mlgrid.log_figure(figure, "plots/line.png")
        assert mlgrid.get_artifact_uri("x") == f"{run.info.artifact_uri}/x"
    run_id = run.info.run_id

    client = mlgrid.MlgridClient(server["uri"])
    listed = [(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id)]
    assert listed == [
        ("config.json", False, len(json.dumps({"lr": 0.1, "layers": [1, 2]}, indent=2))), ("config.yaml", False, listed[1][2]),
        ("copies", True, None), ("images", True, None), ("notes", True, None), ("plots", True, None),
        ("tree", True, None), ("weights.bin", False, 300_000),
    ]
    assert [f.path for f in mlgrid.list_artifacts(run_id=run_id, artifact_path="tree")] == ["tree/a.txt", "tree/sub"]

    local = client.download_artifacts(run_id, "", str(tmp_path / "all"))
    downloaded = files_under(local)
    assert downloaded["weights.bin"] == downloaded["copies/weights.bin"] == weights.read_bytes()
    assert (downloaded["tree/a.txt"], downloaded["tree/sub/b.txt"]) == (b"a", b"b")
    assert downloaded["notes/hello.txt"] == b"hello"
    assert np.array_equal(np.asarray(Image.open(os.path.join(local, "images", "array.png"))), pixels)
    assert np.asarray(Image.open(os.path.join(local, "images", "gray.png"))).tolist() == [[128] * 4] * 4
    assert Image.open(os.path.join(local, "plots", "line.png")).format == "PNG"

    assert mlgrid.load_text(f"runs:/{run_id}/notes/hello.txt") == "hello"
    assert mlgrid.load_dict(f"runs:/{run_id}/config.yaml") == {"lr": 0.1, "layers": [1, 2]}
    assert mlgrid.load_image(f"runs:/{run_id}/images/pil.png").size == (5, 5)
    by_uri = mlgrid.download_artifacts(artifact_uri=f"{run.info.artifact_uri}/tree", dst_path=str(tmp_path / "by-uri"))
    assert by_uri == str(tmp_path / "by-uri" / "tree") and files_under(by_uri) == {"a.txt": b"a", os.path.join("sub", "b.txt"): b"b"}
    single = client.download_artifacts(run_id, "tree/sub/b.txt", str(tmp_path / "one"))
    assert open(single, "rb").read() == b"b"
    with pytest.raises(MlgridException) as err:
        client.download_artifacts(run_id, "nope.txt", str(tmp_path / "none"))
    assert err.value.code == grpc.StatusCode.NOT_FOUND


def cli(uri: str, *args):
    return subprocess.run(
        [sys.executable, "-m", "mlgrid.cli.main", "artifacts", *args], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, MLGRID_TRACKING_URI=uri),
    )


def test_cli_log_list_download(server, tmp_path):
    run_id = mlgrid.MlgridClient(server["uri"]).create_run("0").info.run_id
    (tmp_path / "model.bin").write_bytes(b"weights")
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "sub" / "c.txt").write_text("c")
    logged = cli(server["uri"], "log", "--run-id", run_id, "--local-file", str(tmp_path / "model.bin"), "--artifact-path", "model")
    assert logged.returncode == 0, logged.stderr
    assert cli(server["uri"], "log-artifacts", "-r", run_id, "--local-dir", str(tmp_path / "dir")).returncode == 0
    listed = cli(server["uri"], "list", "--run-id", run_id)
    assert listed.returncode == 0 and [line.split()[:2] for line in listed.stdout.splitlines()[1:]] == [["model", "dir"], ["sub", "dir"]]
    assert "model/model.bin  file  7" in cli(server["uri"], "list", "-r", run_id, "-a", "model").stdout
    downloaded = cli(server["uri"], "download", "--run-id", run_id, "--artifact-path", "model", "--dst-path", str(tmp_path / "out"))
    assert downloaded.returncode == 0 and downloaded.stdout.strip() == str(tmp_path / "out" / "model")
    assert (tmp_path / "out" / "model" / "model.bin").read_bytes() == b"weights"
    by_uri = cli(server["uri"], "download", "--artifact-uri", f"runs:/{run_id}/sub/c.txt", "-d", str(tmp_path / "uri"))
    assert open(by_uri.stdout.strip()).read() == "c"
    missing = cli(server["uri"], "list", "--run-id", uuid.uuid4().hex)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr and "does not exist" in missing.stderr
    both = cli(server["uri"], "log", "--run-id", run_id)
    assert both.returncode == 2 and "--local-file" in both.stderr


def test_health_and_reflection_cover_the_artifact_service(server):
    channel = grpc.insecure_channel(server["uri"].removeprefix("grpc://"))
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="mlgrid.v1.ArtifactService"))
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    capabilities = stub_for(server["uri"]).GetCapabilities(pb.GetCapabilitiesRequest())
    assert (capabilities.backend, capabilities.direct_transfer) == ("local", False)


def test_upload_protocol_errors(server):
    run_id = mlgrid.MlgridClient(server["uri"]).create_run("0").info.run_id
    header = pb.UploadRequest(header=pb.UploadHeader(target=pb.ArtifactTarget(run_id=run_id, path="p.bin")))
    chunk, trailer = pb.UploadRequest(chunk=b"data"), pb.UploadRequest(trailer=pb.UploadTrailer(sha256="0" * 64))
    stub = stub_for(server["uri"])
    for messages, message in [
        ([], "starts with its header"),
        ([chunk, header], "starts with its header"),
        ([header, chunk, header], "one header"),
        ([header, chunk, trailer, chunk], "trailer must come last"),
        ([header, chunk, pb.UploadRequest(trailer=pb.UploadTrailer())], "carries no sha256"),
        ([header, chunk, trailer], "not 0000"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            stub.Upload(iter(messages))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        stub.StatArtifact(pb.StatArtifactRequest(target=pb.ArtifactTarget(run_id=run_id, path="p.bin")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    stored = stub.Upload(iter([header, chunk, pb.UploadRequest(trailer=pb.UploadTrailer(sha256=hashlib.sha256(b"data").hexdigest()))]))
    assert (stored.path, stored.size) == ("p.bin", 4)


# ---------------------------------------------------------------- S3: the direct path, through the service


def test_s3_direct_path_for_large_files(s3_server, tmp_path):
    client = mlgrid.MlgridClient(s3_server["uri"])
    capabilities = client.artifacts.capabilities()
    assert (capabilities.backend, capabilities.direct_transfer, capabilities.direct_threshold_bytes) == ("s3", True, MIB)
    run_id = client.create_run("0").info.run_id
    big, small = tmp_path / "big.bin", tmp_path / "small.txt"
    big.write_bytes(os.urandom(3 * MIB))
    small.write_text("through the service")
    client.log_artifact(run_id, str(big))
    client.log_artifact(run_id, str(small))
    assert open(client.download_artifacts(run_id, "big.bin", str(tmp_path / "out")), "rb").read() == big.read_bytes()
    assert open(client.download_artifacts(run_id, "small.txt", str(tmp_path / "out")), "rb").read() == small.read_bytes()
    stat = client.artifacts.stat(mlgrid.artifacts.ArtifactRoot(run_id=run_id), "big.bin")
    assert stat.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{s3_server['http_port']}/metrics", timeout=5).read().decode()
    assert 'mlgrid_artifacts_bytes_total{direction="direct_upload"} 3.145728e+06' in metrics
    assert 'mlgrid_artifacts_bytes_total{direction="upload"} 19.0' in metrics


def test_folder_downloads_with_direct_io(any_server, tmp_path, monkeypatch):
    """MLGRID_DOWNLOAD_DIRECT_IO=on: every file of a folder, through the service or (S3, from 1 MiB)
    straight from the store, several at a time, arrives whole."""
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO", "on")
    sizes = {"empty": 0, "one": 1, "page": 4096, "odd": 4097, "big": 3 * MIB + 1, "sub/bigger": 5 * MIB + 4095}
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    for name, size in sizes.items():
        (source / name).write_bytes(os.urandom(size))
    client = mlgrid.MlgridClient(any_server["uri"])
    run_id = client.create_run("0").info.run_id
    client.log_artifacts(run_id, str(source), "ckpt")
    local = client.download_artifacts(run_id, "ckpt", str(tmp_path / "out"))
    assert files_under(local) == files_under(source)


# ---------------------------------------------------------------- disconnects, full disk


@pytest.fixture(params=["local", "s3"])
def any_server(request):
    return request.getfixturevalue("server" if request.param == "local" else "s3_server")


def uploads_in_progress(server) -> set[str]:
    """Temporary files (local) or multipart upload ids (S3) of unfinished uploads."""
    if "s3" not in server:
        return set(os.listdir(server["workdir"] / "mlartifacts" / ".mlgrid-uploads"))
    s3 = server["s3"]
    return {u.upload_id for u in s3["client"]._list_multipart_uploads(s3["bucket"], prefix=server["prefix"] + "/").uploads}


def test_a_client_that_disconnects_mid_upload_leaves_nothing(any_server):
    run_id = mlgrid.MlgridClient(any_server["uri"]).create_run("0").info.run_id
    target = pb.ArtifactTarget(run_id=run_id, path="interrupted.bin")
    sent, release = threading.Event(), threading.Event()

    def requests():
        yield pb.UploadRequest(header=pb.UploadHeader(target=target))
        for _ in range(12):  # beyond one S3 part, so that a multipart upload is under way
            yield pb.UploadRequest(chunk=os.urandom(MIB))
        sent.set()
        release.wait(30)

    stub = stub_for(any_server["uri"])
    earlier = uploads_in_progress(any_server)  # the server is shared: other tests' uploads may still be ending
    call = stub.Upload.future(requests())
    assert sent.wait(30)
    eventually(lambda: len(uploads_in_progress(any_server) - earlier) == 1)
    call.cancel()
    release.set()
    eventually(lambda: not uploads_in_progress(any_server) - earlier)
    with pytest.raises(grpc.RpcError) as err:
        stub.StatArtifact(pb.StatArtifactRequest(target=target))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (4 * MIB, 4 * MIB))


@contextlib.contextmanager
def small_disk(workdir):
    """A 4 MiB tmpfs for the artifacts where mounting works (root); else a 4 MiB file size limit on the server."""
    mountpoint = workdir / "small-disk"
    mountpoint.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)], capture_output=True
    ).returncode == 0
    try:
        yield mountpoint, None if mounted else _limit_file_size
    finally:
        if mounted:
            subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_full_disk_is_resource_exhausted_and_keeps_nothing(tmp_path, tmp_path_factory):
    with small_disk(tmp_path) as (mountpoint, preexec_fn):
        destination = mountpoint / "artifacts"
        with mlgrid_server(tmp_path, str(destination), preexec_fn=preexec_fn) as server:
            client = mlgrid.MlgridClient(server["uri"])
            run_id = client.create_run("0").info.run_id
            big = tmp_path / "big.bin"
            big.write_bytes(os.urandom(6 * MIB))
            with pytest.raises(MlgridException) as err:
                client.log_artifact(run_id, str(big))
            assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "no room left" in err.value.message
            assert client.list_artifacts(run_id) == []
            assert os.listdir(destination / ".mlgrid-uploads") == []
            small = tmp_path / "small.txt"
            small.write_text("still works")
            client.log_artifact(run_id, str(small))
            assert [f.path for f in client.list_artifacts(run_id)] == ["small.txt"]


# ---------------------------------------------------------------- the artifact service alone


def test_standalone_service_asks_the_tracking_service_about_runs(tmp_path):
    with standalone_services(tmp_path, MLGRID_ARTIFACTS_RUN_CACHE_SECONDS="0") as (tracking_uri, artifacts_uri, _):
        tracking = mlgrid.MlgridClient(tracking_uri)
        artifacts = mlgrid.MlgridClient(artifacts_uri)  # run ids are all the artifact calls need
        run_id = tracking.create_run("0").info.run_id
        (tmp_path / "a.txt").write_text("alone")
        artifacts.log_artifact(run_id, str(tmp_path / "a.txt"))
        assert [f.path for f in artifacts.list_artifacts(run_id)] == ["a.txt"]
        with pytest.raises(MlgridException) as err:
            artifacts.log_artifact(uuid.uuid4().hex, str(tmp_path / "a.txt"))
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        tracking.delete_run(run_id)
        with pytest.raises(MlgridException) as err:
            artifacts.log_artifact(run_id, str(tmp_path / "a.txt"))
        assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION and "deleted" in err.value.message
        assert open(artifacts.download_artifacts(run_id, "a.txt", str(tmp_path / "out"))).read() == "alone"


def test_standalone_service_without_its_tracking_service_is_unavailable(tmp_path):
    port = free_port()
    env = dict(
        os.environ, MLGRID_HOST="127.0.0.1", MLGRID_GRPC_PORT=str(port), MLGRID_METRICS_PORT="0",
        MLGRID_TRACKING_TARGET=f"127.0.0.1:{free_port()}", MLGRID_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"),
    )
    with running([sys.executable, "-m", "services.artifacts"], port, tmp_path, env, "artifacts"):
        with pytest.raises(grpc.RpcError) as err:
            stub_for(f"grpc://127.0.0.1:{port}").ListArtifacts(pb.ListArtifactsRequest(target=pb.ArtifactTarget(run_id=uuid.uuid4().hex)))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE and "MLGRID_TRACKING_TARGET" in err.value.details()


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))


def test_large_transfers_keep_the_service_memory_constant(tmp_path):
    """400 MiB up and down through the service, which stays well under 150 MB of resident memory."""
    size, chunk = 400 * MIB, os.urandom(MIB)
    expected = hashlib.sha256()
    for _ in range(size // MIB):
        expected.update(chunk)
    with standalone_services(tmp_path) as (tracking_uri, artifacts_uri, service):
        run_id = mlgrid.MlgridClient(tracking_uri).create_run("0").info.run_id
        target = pb.ArtifactTarget(run_id=run_id, path="large.bin")
        stub = stub_for(artifacts_uri)
        at_start = peak_rss_mb(service.pid)

        def requests():
            yield pb.UploadRequest(header=pb.UploadHeader(target=target, expected_size=size))
            for _ in range(size // MIB):
                yield pb.UploadRequest(chunk=chunk)

        assert stub.Upload(requests()).sha256 == expected.hexdigest()
        received = hashlib.sha256()
        for message in stub.Download(pb.DownloadRequest(target=target)):
            received.update(message.chunk)
        assert received.hexdigest() == expected.hexdigest()
        peak = peak_rss_mb(service.pid)
    assert peak < 120, f"peak RSS {peak:.0f} MB (at start {at_start:.0f} MB)"
    assert peak - at_start < 64, f"RSS grew by {peak - at_start:.0f} MB while moving {size // MIB} MiB"
