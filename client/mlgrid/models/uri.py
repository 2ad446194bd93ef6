"""From a model URI to a local model folder: a local path, runs:/<run_id>/<path>,
mlgrid-artifacts:/<path> (or mlflow-artifacts:/), models:/<name>/<version|stage|latest> and
models:/<name>@<alias>, which the registry resolves to its source, or models:/<model id> (an MLflow 3
logged model, at its artifact location). Files come through the artifact service, so its path checks apply."""
from __future__ import annotations

import os
import re
import tempfile
from urllib.parse import urlparse

import grpc

from mlgrid.exceptions import MlgridException

ARTIFACT_SCHEMES = ("runs", "mlgrid-artifacts", "mlflow-artifacts")
LOGGED_MODEL_URI = re.compile(r"^models:/m-[0-9a-f]{32}$")  # an MLflow 3 logged model


def _client(tracking_uri: str | None):
    from mlgrid.client import MlgridClient
    from mlgrid.fluent import _get_client

    return MlgridClient(tracking_uri) if tracking_uri else _get_client()


def download_model(model_uri: str, dst_path: str | None = None, tracking_uri: str | None = None) -> str:
    """The local folder of the model at `model_uri`, downloaded into dst_path (default: a new
    temporary folder) unless it is already local."""
    from mlgrid.artifacts import download_artifacts

    model_uri = os.fspath(model_uri)
    parsed = urlparse(model_uri)
    if parsed.scheme in ("", "file") and not model_uri.startswith("models:"):
        local = parsed.path if parsed.scheme == "file" else model_uri
        if not os.path.isdir(local):
            raise MlgridException(f"no model folder at {local}", grpc.StatusCode.NOT_FOUND)
        return os.path.abspath(local)
    source = model_uri
    if parsed.scheme == "models":
        client = _client(tracking_uri)
        try:
            if LOGGED_MODEL_URI.match(model_uri):
                source = client.get_logged_model(model_uri[len("models:/"):]).artifact_location
            else:
                version = client.resolve_model_uri(model_uri)
                source = version.storage_location or version.source  # a logged model's files are at its location
        finally:
            if tracking_uri:
                client.close()
    if urlparse(source).scheme not in ARTIFACT_SCHEMES:
        raise MlgridException(
            f"cannot load a model from {source!r}: use a local folder, runs:/<run_id>/<path>, "
            "mlgrid-artifacts:/<path> or models:/<name>/<version> (a registered version whose source is one of these)",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    dst_path = dst_path or tempfile.mkdtemp(prefix="mlgrid-model-")
    return download_artifacts(artifact_uri=source, dst_path=dst_path, tracking_uri=tracking_uri)
