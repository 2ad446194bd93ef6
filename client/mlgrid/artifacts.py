"""mlflow.artifacts' functions: download_artifacts, list_artifacts, load_text, load_dict and
load_image, on the fluent API's client unless given a tracking_uri.

Also the names users of `MlgridClient(...).artifacts` need: `ArtifactClient`,
`ArtifactRoot` and `parse_artifact_uri` (the transfers themselves are in
mlgrid._artifact_transfer, the file formats in mlgrid._object_files).
"""
from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable

import grpc

from mlgrid import _object_files
from mlgrid._artifact_transfer import ArtifactClient, ArtifactRoot, parse_artifact_uri
from mlgrid.client import MlgridClient
from mlgrid.entities import FileInfo
from mlgrid.exceptions import MlgridException
from mlgrid.fluent import _get_client

__all__ = [
    "ArtifactClient", "ArtifactRoot", "download_artifacts", "list_artifacts", "load_dict", "load_image", "load_text",
    "parse_artifact_uri",
]

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@contextlib.contextmanager
def _client(tracking_uri: str | None):
    """A client of `tracking_uri`, closed afterwards; else the fluent API's."""
    if tracking_uri is None:
        yield _get_client()
        return
    with MlgridClient(tracking_uri) as client:
        yield client


def _root_and_path(artifact_uri: str | None, run_id: str | None, artifact_path: str | None) -> tuple[ArtifactRoot, str]:
    if artifact_uri is not None:
        if run_id is not None or artifact_path is not None:
            raise MlgridException("give artifact_uri, or run_id with artifact_path; not both", INVALID)
        return parse_artifact_uri(artifact_uri)
    if run_id is None:
        raise MlgridException("give artifact_uri, or run_id (with artifact_path)", INVALID)
    return ArtifactRoot(run_id=run_id), (artifact_path or "").strip("/")


def download_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    dst_path: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """Download a file or folder (by URI, or run id and path) into dst_path (default: a new temporary
    folder); returns its local path."""
    root, path = _root_and_path(artifact_uri, run_id, artifact_path)
    with _client(tracking_uri) as client:
        return client.artifacts.download(root, path, dst_path)


def list_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    tracking_uri: str | None = None,
) -> list[FileInfo]:
    """The files and folders directly in a folder (by URI, or run id and path)."""
    root, path = _root_and_path(artifact_uri, run_id, artifact_path)
    with _client(tracking_uri) as client:
        return client.artifacts.list(root, path)


def _load(artifact_uri: str, read: Callable[[str], object]):
    with tempfile.TemporaryDirectory(prefix="mlgrid-") as tmp:
        return read(download_artifacts(artifact_uri=artifact_uri, dst_path=tmp))


def load_text(artifact_uri: str) -> str:
    """The text of the file at `artifact_uri` (runs:/<run_id>/<path> or mlgrid-artifacts:/...)."""
    return _load(artifact_uri, _object_files.read_text)


def load_dict(artifact_uri: str) -> dict:
    """The JSON or YAML file at `artifact_uri`, parsed."""
    return _load(artifact_uri, _object_files.read_dict)


def load_image(artifact_uri: str):
    """The image file at `artifact_uri` as a PIL image."""
    return _load(artifact_uri, _object_files.read_image)
