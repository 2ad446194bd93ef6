"""Client-side artifact logic: URIs, local paths, files made from Python objects, resumed downloads."""
import errno
import hashlib
import json
import os
import random
import sys

import grpc
import numpy as np
import pytest
from PIL import Image

from mlgrid import _artifact_transfer, _direct_io, _object_files, artifacts
from mlgrid.artifacts import ArtifactClient, ArtifactRoot, parse_artifact_uri
from mlgrid.exceptions import MlgridException
from mlgrid.v1 import artifacts_pb2 as pb

RUN = "0123456789abcdef0123456789abcdef"


def test_parse_artifact_uri():
    assert parse_artifact_uri(f"runs:/{RUN}/model/w.bin") == (ArtifactRoot(run_id=RUN), "model/w.bin")
    assert parse_artifact_uri(f"runs:/{RUN}") == (ArtifactRoot(run_id=RUN), "")
    assert parse_artifact_uri(f"mlgrid-artifacts:/0/{RUN}/artifacts/model") == (
        ArtifactRoot(root_uri=f"mlgrid-artifacts:/0/{RUN}/artifacts"), "model"
    )
    assert parse_artifact_uri("mlgrid-artifacts:/a") == (ArtifactRoot(root_uri="mlgrid-artifacts:/"), "a")
    for bad in ("s3://bucket/x", "/local/file", "runs:/"):
        with pytest.raises(MlgridException) as err:
            parse_artifact_uri(bad)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_targets():
    assert ArtifactRoot(run_id=RUN).target("a") == pb.ArtifactTarget(run_id=RUN, path="a")
    assert ArtifactRoot(root_uri="mlgrid-artifacts:/x").target("") == pb.ArtifactTarget(root_uri="mlgrid-artifacts:/x")


def test_local_paths_stay_under_the_destination(tmp_path):
    assert _artifact_transfer._local_path(str(tmp_path), "a/b.txt") == str(tmp_path / "a" / "b.txt")
    assert _artifact_transfer._local_path(str(tmp_path), "") == str(tmp_path)
    with pytest.raises(MlgridException, match="outside"):
        _artifact_transfer._local_path(str(tmp_path), "../../etc/passwd")


def test_write_dict_json_and_yaml(tmp_path):
    _object_files.write_dict(str(tmp_path / "c.json"), {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "c.json").read_text()) == {"b": 1, "a": [1, 2]}
    _object_files.write_dict(str(tmp_path / "c.yaml"), {"b": 1, "a": [1, 2]})
    assert (tmp_path / "c.yaml").read_text() == "b: 1\na:\n- 1\n- 2\n"


def test_image_arrays(tmp_path):
    _object_files.write_image(str(tmp_path / "rgba.png"), np.zeros((2, 3, 4), dtype=np.uint8))
    assert Image.open(tmp_path / "rgba.png").mode == "RGBA"
    _object_files.write_image(str(tmp_path / "one.png"), np.ones((2, 2, 1)))
    assert np.asarray(Image.open(tmp_path / "one.png")).tolist() == [[255, 255], [255, 255]]
    for bad, message in [
        (np.zeros((2, 2, 2)), "shape"), (np.full((2, 2), 1.5), r"\[0, 1\]"), (np.full((2, 2), 300), r"\[0, 255\]"),
        (np.array([["a"]]), "integers or floats"), ([[0]], "numpy array or a PIL image"),
    ]:
        with pytest.raises(MlgridException, match=message):
            _object_files.write_image(str(tmp_path / "bad.png"), bad)
    with pytest.raises(MlgridException, match="cannot save"):
        _object_files.write_image(str(tmp_path / "image.unknown-format"), np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(MlgridException, match="matplotlib figure"):
        _object_files.write_figure(str(tmp_path / "f.png"), object())


def test_optional_dependencies_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL.Image", None)  # as if pillow were not installed
    with pytest.raises(MlgridException, match="pip install pillow") as err:
        _object_files.write_image(str(tmp_path / "x.png"), np.zeros((2, 2)))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(MlgridException, match="pip install pyyaml"):
        _object_files.write_dict(str(tmp_path / "x.yaml"), {})


def test_arguments_of_the_mlflow_functions():
    with pytest.raises(MlgridException, match="not both"):
        artifacts.download_artifacts(artifact_uri=f"runs:/{RUN}/x", run_id=RUN)
    with pytest.raises(MlgridException, match="give artifact_uri"):
        artifacts.list_artifacts()


class Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "connection dropped"


class FlakyStub:
    """Download drops the connection after two chunks, the first time."""

    def __init__(self, data: bytes, sha256: str):
        self.data, self.sha256, self.offsets = data, sha256, []

    def Download(self, request):
        self.offsets.append(request.offset)
        yield pb.DownloadResponse(header=pb.DownloadHeader(total_size=len(self.data), sha256=self.sha256, offset=request.offset))
        chunks = [self.data[i:i + 10] for i in range(request.offset, len(self.data), 10)]
        for i, chunk in enumerate(chunks):
            if len(self.offsets) == 1 and i == 2:
                raise Unavailable()
            yield pb.DownloadResponse(chunk=chunk)

    def GetCapabilities(self, request, timeout=None):
        return pb.GetCapabilitiesResponse(backend="local")


def client_with(stub) -> ArtifactClient:
    client = ArtifactClient(grpc.insecure_channel("127.0.0.1:9"), lambda attempt, idempotent: attempt())
    client._stub = stub
    client._download = lambda request: (m.SerializeToString() for m in stub.Download(request))
    return client


def test_a_dropped_download_resumes_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(_artifact_transfer, "_sleep_before_retry", lambda delay: None)
    data = bytes(range(95))
    stub = FlakyStub(data, hashlib.sha256(data).hexdigest())
    client_with(stub).download_file(ArtifactRoot(run_id=RUN), "f.bin", str(tmp_path / "f.bin"), len(data))
    assert (tmp_path / "f.bin").read_bytes() == data
    assert stub.offsets == [0, 20]


def test_a_corrupted_download_is_an_error_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(_artifact_transfer, "_sleep_before_retry", lambda delay: None)
    data = bytes(range(95))
    stub = FlakyStub(data, hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(MlgridException, match="corrupted") as err:
        client_with(stub).download_file(ArtifactRoot(run_id=RUN), "f.bin", str(tmp_path / "f.bin"), len(data))
    assert err.value.code == grpc.StatusCode.DATA_LOSS
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- downloads written with O_DIRECT


class WholeStub(FlakyStub):
    """Download sends the file in 64 KiB chunks, or `cut` bytes short of it; never drops the connection."""

    def __init__(self, data: bytes, sha256: str | None = None, cut: int = 0):
        super().__init__(data, sha256 or hashlib.sha256(data).hexdigest())
        self.cut = cut

    def Download(self, request):
        self.offsets.append(request.offset)
        yield pb.DownloadResponse(header=pb.DownloadHeader(total_size=len(self.data), sha256=self.sha256, offset=request.offset))
        end = len(self.data) - self.cut
        for i in range(request.offset, end, 64 * 1024):
            yield pb.DownloadResponse(chunk=self.data[i:min(i + 64 * 1024, end)])


@pytest.fixture
def sinks(monkeypatch):
    """Every FileSink a download opens, with whether its file was open with O_DIRECT (asked of the
    kernel) when it was closed."""
    import fcntl

    opened = []

    class Recorded(_direct_io.FileSink):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.kernel_o_direct = None
            opened.append(self)

        def close(self):
            self.kernel_o_direct = bool(fcntl.fcntl(self._fd, fcntl.F_GETFL) & os.O_DIRECT)
            super().close()

    monkeypatch.setattr(_direct_io, "FileSink", Recorded)
    return opened


def o_direct_works(folder) -> bool:
    try:
        os.close(os.open(os.path.join(folder, "probe"), os.O_WRONLY | os.O_CREAT | os.O_DIRECT))
        return True
    except (AttributeError, OSError):
        return False


@pytest.fixture
def direct_folder(tmp_path):
    if not sys.platform.startswith("linux") or not o_direct_works(tmp_path):
        pytest.skip("O_DIRECT is not available here")
    os.unlink(tmp_path / "probe")
    return tmp_path


def download(tmp_path, data: bytes, **stub_args) -> tuple[bytes, int]:
    """Download `data` from a stub to a file; returns the file's bytes and the bytes reported as progress."""
    moved = []
    client_with(WholeStub(data, **stub_args)).download_file(
        ArtifactRoot(run_id=RUN), "f.bin", str(tmp_path / "f.bin"), len(data), moved.append
    )
    return (tmp_path / "f.bin").read_bytes(), sum(moved)


MIB = 1024 * 1024
SIZES = [0, 1, 4095, 4096, 4097, 4 * MIB - 1, 4 * MIB, 4 * MIB + 1, 9 * MIB + 4097]


@pytest.mark.parametrize("size", SIZES)
def test_direct_io_writes_every_size_exactly(direct_folder, sinks, monkeypatch, size):
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO", "on")
    data = random.Random(size).randbytes(size)
    assert download(direct_folder, data) == (data, size)
    assert [(s.direct_io, s.kernel_o_direct) for s in sinks] == [(True, True)]
    assert os.listdir(direct_folder) == ["f.bin"]


def test_auto_uses_direct_io_from_the_threshold_on(direct_folder, sinks, monkeypatch):
    monkeypatch.delenv("MLGRID_DOWNLOAD_DIRECT_IO", raising=False)
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO_MIN_MB", "0.01")  # 10485 bytes
    threshold = int(0.01 * MIB)
    for size in (threshold - 1, threshold, threshold + 1):
        data = random.Random(size).randbytes(size)
        assert download(direct_folder, data) == (data, size)
    assert [s.kernel_o_direct for s in sinks] == [False, True, True]
    monkeypatch.delenv("MLGRID_DOWNLOAD_DIRECT_IO_MIN_MB")
    assert not _direct_io.wanted(256 * MIB - 1) and _direct_io.wanted(256 * MIB)


def test_off_never_uses_direct_io(direct_folder, sinks, monkeypatch):
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO", "off")
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO_MIN_MB", "0")
    data = random.Random(0).randbytes(5 * MIB + 3)
    assert download(direct_folder, data) == (data, len(data))
    assert [s.kernel_o_direct for s in sinks] == [False]


def test_bad_settings_are_invalid_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO", "sometimes")
    with pytest.raises(MlgridException, match="MLGRID_DOWNLOAD_DIRECT_IO") as err:
        download(tmp_path, b"x")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO", "auto")
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO_MIN_MB", "-1")
    with pytest.raises(MlgridException, match="MLGRID_DOWNLOAD_DIRECT_IO_MIN_MB"):
        download(tmp_path, b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_filesystem_that_refuses_o_direct_at_open_gets_plain_writes(direct_folder, sinks, monkeypatch):
    real_open = os.open

    def refusing(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refusing)
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO", "on")
    data = random.Random(1).randbytes(9 * MIB + 1)
    assert download(direct_folder, data) == (data, len(data))
    assert [(s.direct_io, s.kernel_o_direct) for s in sinks] == [(False, False)]


def test_a_filesystem_that_refuses_direct_writes_gets_plain_writes(direct_folder, sinks, monkeypatch):
    """As some FUSE filesystems: O_DIRECT accepted at open, EINVAL at write."""
    import fcntl

    real_write, refused = os.write, []

    def refusing(fd, data):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(len(data))
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refusing)
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO", "on")
    data = random.Random(2).randbytes(9 * MIB + 4097)
    assert download(direct_folder, data) == (data, len(data))
    assert refused == [_direct_io.BUFFER_SIZE]  # the first write, then none
    assert [(s.direct_io, s.kernel_o_direct) for s in sinks] == [(False, False)]


@pytest.mark.parametrize("direct", ["on", "off"])
def test_short_corrupted_or_failed_downloads_leave_nothing(direct_folder, monkeypatch, direct):
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO", direct)
    data = random.Random(3).randbytes(5 * MIB + 11)
    with pytest.raises(MlgridException, match="ended at") as err:
        download(direct_folder, data, cut=4097)
    assert err.value.code == grpc.StatusCode.DATA_LOSS
    with pytest.raises(MlgridException, match="corrupted") as err:
        download(direct_folder, data, sha256=hashlib.sha256(b"other").hexdigest())
    assert err.value.code == grpc.StatusCode.DATA_LOSS
    real_write = os.write

    def full_disk(fd, data):
        if os.fstat(fd).st_size > MIB:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError) as err:
        download(direct_folder, data)
    assert err.value.errno == errno.ENOSPC
    assert list(direct_folder.iterdir()) == []


@pytest.mark.parametrize("direct", ["on", "off"])
def test_a_dropped_direct_io_download_resumes(direct_folder, sinks, monkeypatch, direct):
    monkeypatch.setattr(_artifact_transfer, "_sleep_before_retry", lambda delay: None)
    monkeypatch.setenv("MLGRID_DOWNLOAD_DIRECT_IO", direct)
    data = random.Random(4).randbytes(4099)
    stub = FlakyStub(data, hashlib.sha256(data).hexdigest())
    client_with(stub).download_file(ArtifactRoot(run_id=RUN), "f.bin", str(direct_folder / "f.bin"), len(data))
    assert (direct_folder / "f.bin").read_bytes() == data
    assert stub.offsets == [0, 20]
    assert [s.kernel_o_direct for s in sinks] == [direct == "on"]


def test_restart_empties_the_file_and_the_hash(direct_folder):
    """What a download from a store that ignored the Range of a resumed request does."""
    sink = _direct_io.FileSink(str(direct_folder / "f.bin"), direct=True)
    writer = _artifact_transfer._HashingWriter(sink, None)
    first, second = random.Random(5).randbytes(5 * MIB), random.Random(6).randbytes(4 * MIB + 5)
    writer.write(first)
    writer.restart()
    assert writer.received == 0
    for i in range(0, len(second), MIB):
        writer.write(second[i:i + MIB])
    writer.close()
    sink.close()
    assert (direct_folder / "f.bin").read_bytes() == second
    assert (writer.received, writer.hasher.hexdigest()) == (len(second), hashlib.sha256(second).hexdigest())
