"""Artifacts through the stock mlflow client and MLflow's artifact proxy endpoints
(/api/2.0/mlflow-artifacts/...): log_artifact(s), list, download, load_text/load_dict,
log_figure/log_image, a large file, and what is refused."""
import hashlib
import http.client
import json
import os
import time
from urllib.parse import quote, urlparse

import mlflow
import numpy as np
import pytest
import requests
from conftest import files_under, unique
from mlflow.exceptions import MlflowException

from services.common.config import ArtifactsConfig

RUN_CACHE_SECONDS = ArtifactsConfig().run_cache_seconds


def _raw_get(url: str, path: str) -> tuple[int, dict, bytes]:
    """A GET with the path sent exactly as given (no client-side normalization of '..')."""
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def run(client):
    mlflow.set_experiment(unique("artifacts"))
    with mlflow.start_run() as active:
        yield active


def test_log_artifacts_list_and_download(client, run, tmp_path):
    source = tmp_path / "source"
    (source / "sub" / "deeper").mkdir(parents=True)
    (source / "a.txt").write_text("alpha")
    (source / "sub" / "b.json").write_text('{"b": 1}')
    (source / "sub" / "deeper" / "c.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    (source / "empty.dat").write_bytes(b"")
    mlflow.log_artifacts(str(source), "folder")
    single = tmp_path / "single.csv"
    single.write_text("x,y\n1,2\n")
    mlflow.log_artifact(str(single))
    run_id = run.info.run_id

    assert run.info.artifact_uri == f"mlflow-artifacts:/{run.info.experiment_id}/{run_id}/artifacts"
    top = client.list_artifacts(run_id)
    assert [(f.path, f.is_dir, f.file_size) for f in top] == [("folder", True, None), ("single.csv", False, 8)]
    listed = client.list_artifacts(run_id, "folder")
    assert [(f.path, f.is_dir) for f in listed] == [
        ("folder/a.txt", False), ("folder/empty.dat", False), ("folder/sub", True),
    ]
    assert client.list_artifacts(run_id, "folder/a.txt") == []  # a file lists as nothing, as in MLflow
    assert client.list_artifacts(run_id, "no/such/folder") == []

    downloaded = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="folder", dst_path=str(tmp_path / "out"))
    assert files_under(downloaded) == files_under(source)
    one = client.download_artifacts(run_id, "folder/sub/b.json", str(tmp_path / "one"))
    assert open(one).read() == '{"b": 1}'
    everything = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(tmp_path / "all"))
    assert set(files_under(everything)) == {"single.csv", *(os.path.join("folder", p) for p in files_under(source))}


def test_load_text_dict_figure_and_image(client, run):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mlflow.log_text("hello, artifacts", "notes/readme.txt")
    mlflow.log_dict({"lr": 0.01, "layers": [1, 2]}, "config.json")
    figure, axes = plt.subplots()
    axes.plot([0, 1, 2], [2, 1, 3])
    mlflow.log_figure(figure, "plots/curve.png")
    plt.close(figure)
    image = (np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5)
    mlflow.log_image(image, "images/sample.png")

    base = f"runs:/{run.info.run_id}"
    assert mlflow.artifacts.load_text(f"{base}/notes/readme.txt") == "hello, artifacts"
    assert mlflow.artifacts.load_dict(f"{base}/config.json") == {"lr": 0.01, "layers": [1, 2]}
    assert np.array_equal(np.asarray(mlflow.artifacts.load_image(f"{base}/images/sample.png")), image)
    png = client.download_artifacts(run.info.run_id, "plots/curve.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_large_file_round_trips(client, run, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as out:
        for _ in range(64):
            out.write(os.urandom(1024 * 1024))
    mlflow.log_artifact(str(big), "data")
    assert [(f.path, f.file_size) for f in client.list_artifacts(run.info.run_id, "data")] == [("data/big.bin", 64 * 1024 * 1024)]
    back = client.download_artifacts(run.info.run_id, "data/big.bin", str(tmp_path / "back"))
    digest = lambda path: hashlib.sha256(open(path, "rb").read()).hexdigest()  # noqa: E731
    assert digest(back) == digest(big)


def test_download_headers_and_get_artifact(mlflow_server_url, client, run):
    mlflow.log_text('{"a": 1}', "x/data.json")
    mlflow.log_text("binary?", "x/blob.weights")
    root = f"{run.info.experiment_id}/{run.info.run_id}/artifacts"
    status, headers, body = _raw_get(mlflow_server_url, f"/api/2.0/mlflow-artifacts/artifacts/{root}/x/data.json")
    assert (status, body) == (200, b'{"a": 1}')
    assert headers["Content-Type"] == "text/plain"
    assert headers["Content-Disposition"] == "attachment; filename=data.json"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Security-Policy"] == "sandbox"
    status, headers, _ = _raw_get(mlflow_server_url, f"/ajax-api/2.0/mlflow-artifacts/artifacts/{root}/x/blob.weights")
    assert (status, headers["Content-Type"]) == (200, "application/octet-stream")
    status, _, body = _raw_get(mlflow_server_url, f"/get-artifact?run_uuid={run.info.run_id}&path=x/data.json")
    assert (status, body) == (200, b'{"a": 1}')
    status, _, body = _raw_get(mlflow_server_url, f"/api/2.0/mlflow-artifacts/artifacts?path={root}/x")
    assert (status, json.loads(body)) == (200, {"files": [
        {"path": "blob.weights", "is_dir": False, "file_size": 7},
        {"path": "data.json", "is_dir": False, "file_size": 8},
    ]})


@pytest.mark.parametrize("path", [
    "/api/2.0/mlflow-artifacts/artifacts/0/../../etc/passwd",
    "/api/2.0/mlflow-artifacts/artifacts/0/%2E%2E/%2E%2E/etc/passwd",
    "/api/2.0/mlflow-artifacts/artifacts?path=0/../..",
    "/get-artifact?run_id=" + "0" * 32 + "&path=../../etc/passwd",
])
def test_dot_dot_paths_are_refused(mlflow_server_url, path):
    status, _, body = _raw_get(mlflow_server_url, path)
    assert status == 400
    assert json.loads(body)["error_code"] == "INVALID_PARAMETER_VALUE" and "'..'" in json.loads(body)["message"]


def test_missing_files_deleted_and_unknown_runs(mlflow_server_url, client, tmp_path):
    mlflow.set_experiment(unique("artifacts"))
    with mlflow.start_run() as run:
        mlflow.log_text("kept", "kept.txt")
    with pytest.raises(MlflowException, match="Failed to download artifacts from path 'nope.txt'"):
        client.download_artifacts(run.info.run_id, "nope.txt", str(tmp_path))
    client.delete_run(run.info.run_id)
    # A deleted run's files stay readable; it takes no new ones.
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/kept.txt") == "kept"
    (tmp_path / "late.txt").write_text("late")
    time.sleep(RUN_CACHE_SECONDS + 0.2)  # the artifact service remembers a run's lifecycle this long
    with pytest.raises(requests.HTTPError) as raised:  # as MLflow's client raises for the artifact endpoints
        client.log_artifact(run.info.run_id, str(tmp_path / "late.txt"))
    assert raised.value.response.status_code == 400
    assert raised.value.response.json()["error_code"] == "INVALID_STATE" and "is deleted" in raised.value.response.text
    with pytest.raises(MlflowException) as raised:
        client.log_artifact("f" * 32, str(tmp_path / "late.txt"))
    assert raised.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    status, _, body = _raw_get(mlflow_server_url, f"/get-artifact?run_id={'f' * 32}&path=kept.txt")
    assert (status, json.loads(body)["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_delete_artifacts(client, run):
    mlflow.log_text("1", "gone/one.txt")
    mlflow.log_text("2", "gone/deeper/two.txt")
    mlflow.log_text("3", "stays.txt")
    repo = mlflow.store.artifact.artifact_repository_registry.get_artifact_repository(run.info.artifact_uri)
    repo.delete_artifacts("gone")
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["stays.txt"]


def test_names_with_spaces_and_non_ascii_letters(mlflow_server_url, client, run):
    name = "naïve résumé (1).txt"  # no "#": the mlflow client sends paths unquoted, so it would start a fragment
    mlflow.log_text("accents", f"docs/{name}")
    assert [f.path for f in client.list_artifacts(run.info.run_id, "docs")] == [f"docs/{name}"]
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/docs/{name}") == "accents"
    root = f"{run.info.experiment_id}/{run.info.run_id}/artifacts"
    status, headers, _ = _raw_get(mlflow_server_url, f"/api/2.0/mlflow-artifacts/artifacts/{root}/docs/{quote(name)}")
    assert status == 200
    assert headers["Content-Disposition"] == f"attachment; filename=download; filename*=UTF-8''{quote(name, safe='')}"
