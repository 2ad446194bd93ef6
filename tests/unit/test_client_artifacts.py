"""Client-side artifact logic: URIs, local paths, files made from Python objects, resumed downloads."""
import hashlib
import json
import sys

import grpc
import numpy as np
import pytest
from PIL import Image

from mlgrid import artifacts
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
    assert artifacts._local_path(str(tmp_path), "a/b.txt") == str(tmp_path / "a" / "b.txt")
    assert artifacts._local_path(str(tmp_path), "") == str(tmp_path)
    with pytest.raises(MlgridException, match="outside"):
        artifacts._local_path(str(tmp_path), "../../etc/passwd")


def test_write_dict_json_and_yaml(tmp_path):
    artifacts.write_dict(str(tmp_path / "c.json"), {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "c.json").read_text()) == {"b": 1, "a": [1, 2]}
    artifacts.write_dict(str(tmp_path / "c.yaml"), {"b": 1, "a": [1, 2]})
    assert (tmp_path / "c.yaml").read_text() == "b: 1\na:\n- 1\n- 2\n"


def test_image_arrays(tmp_path):
    artifacts.write_image(str(tmp_path / "rgba.png"), np.zeros((2, 3, 4), dtype=np.uint8))
    assert Image.open(tmp_path / "rgba.png").mode == "RGBA"
    artifacts.write_image(str(tmp_path / "one.png"), np.ones((2, 2, 1)))
    assert np.asarray(Image.open(tmp_path / "one.png")).tolist() == [[255, 255], [255, 255]]
    for bad, message in [
        (np.zeros((2, 2, 2)), "shape"), (np.full((2, 2), 1.5), r"\[0, 1\]"), (np.full((2, 2), 300), r"\[0, 255\]"),
        (np.array([["a"]]), "integers or floats"), ([[0]], "numpy array or a PIL image"),
    ]:
        with pytest.raises(MlgridException, match=message):
            artifacts.write_image(str(tmp_path / "bad.png"), bad)
    with pytest.raises(MlgridException, match="cannot save"):
        artifacts.write_image(str(tmp_path / "image.unknown-format"), np.zeros((2, 2), dtype=np.uint8))
    with pytest.raises(MlgridException, match="matplotlib figure"):
        artifacts.write_figure(str(tmp_path / "f.png"), object())


def test_optional_dependencies_say_how_to_get_them(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL.Image", None)  # as if pillow were not installed
    with pytest.raises(MlgridException, match="pip install pillow") as err:
        artifacts.write_image(str(tmp_path / "x.png"), np.zeros((2, 2)))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(MlgridException, match="pip install pyyaml"):
        artifacts.write_dict(str(tmp_path / "x.yaml"), {})


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
    monkeypatch.setattr(artifacts, "_sleep_before_retry", lambda delay: None)
    data = bytes(range(95))
    stub = FlakyStub(data, hashlib.sha256(data).hexdigest())
    client_with(stub).download_file(ArtifactRoot(run_id=RUN), "f.bin", str(tmp_path / "f.bin"), len(data))
    assert (tmp_path / "f.bin").read_bytes() == data
    assert stub.offsets == [0, 20]


def test_a_corrupted_download_is_an_error_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "_sleep_before_retry", lambda delay: None)
    data = bytes(range(95))
    stub = FlakyStub(data, hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(MlgridException, match="corrupted") as err:
        client_with(stub).download_file(ArtifactRoot(run_id=RUN), "f.bin", str(tmp_path / "f.bin"), len(data))
    assert err.value.code == grpc.StatusCode.DATA_LOSS
    assert list(tmp_path.iterdir()) == []
