"""Python objects as artifact files: the writers behind log_text, log_dict, log_image and
log_figure, and the readers behind mlgrid.artifacts' load_text, load_dict and load_image.

The formats follow mlflow's (a dict is JSON, or YAML by the file name; an image is
saved by PIL in the format its name says). pyyaml, pillow and numpy are imported
only when a call needs them, each saying how to install it when missing.
"""
from __future__ import annotations

import importlib
import json
import os
import posixpath
import tempfile
from collections.abc import Callable

import grpc

from mlgrid.exceptions import MlgridException

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _require(module: str, package: str, purpose: str):
    """Import an optional dependency, saying how to get it when missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MlgridException(f"{purpose} needs {package}: pip install {package}", grpc.StatusCode.FAILED_PRECONDITION) from None


def write_text(local_path: str, text: str) -> None:
    with open(local_path, "w", encoding="utf-8") as f:
        f.write(text)


def write_dict(local_path: str, dictionary: dict) -> None:
    """JSON, or YAML when the name ends in .yaml or .yml (as mlflow.log_dict)."""
    with open(local_path, "w", encoding="utf-8") as f:
        if local_path.endswith((".yaml", ".yml")):
            _require("yaml", "pyyaml", "log_dict to a YAML file").safe_dump(dictionary, f, default_flow_style=False, sort_keys=False)
        else:
            json.dump(dictionary, f, indent=2)


def _to_pil_image(image):
    """A PIL image, or a numpy array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of integers in [0, 255] or floats in [0, 1]."""
    pil = _require("PIL.Image", "pillow", "log_image")
    if isinstance(image, pil.Image):
        return image
    np = _require("numpy", "numpy", "log_image of an array")
    if not isinstance(image, np.ndarray):
        raise MlgridException(f"log_image takes a numpy array or a PIL image, not {type(image).__name__}", INVALID)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise MlgridException(f"an image array has shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), not {image.shape}", INVALID)
    if image.dtype.kind == "f":
        if image.size and (np.nanmin(image) < 0 or np.nanmax(image) > 1):
            raise MlgridException("a float image array must hold values in [0, 1]", INVALID)
        image = np.round(image * 255).astype(np.uint8)
    elif image.dtype.kind in "iub":
        if image.size and (image.min() < 0 or image.max() > 255):
            raise MlgridException("an integer image array must hold values in [0, 255]", INVALID)
        image = image.astype(np.uint8)
    else:
        raise MlgridException(f"an image array holds integers or floats, not {image.dtype}", INVALID)
    return pil.fromarray(image)


def write_image(local_path: str, image) -> None:
    try:
        _to_pil_image(image).save(local_path)
    except ValueError as e:  # e.g. an extension PIL does not know
        raise MlgridException(f"cannot save the image as {os.path.basename(local_path)!r}: {e}", INVALID) from None


def write_figure(local_path: str, figure) -> None:
    if not hasattr(figure, "savefig"):
        raise MlgridException(f"log_figure takes a matplotlib figure, not {type(figure).__name__}", INVALID)
    figure.savefig(local_path)


def log_object(client, run_id: str, artifact_file: str, write: Callable[[str, object], None], obj) -> None:
    """Write `obj` to a temporary file named as `artifact_file`, and log it at that path."""
    folder, name = posixpath.split(artifact_file)
    if not name:
        raise MlgridException(f"artifact_file {artifact_file!r} names no file", INVALID)
    with tempfile.TemporaryDirectory(prefix="mlgrid-") as tmp:
        local_path = os.path.join(tmp, name)
        write(local_path, obj)
        client.log_artifact(run_id, local_path, folder or None)


def read_text(local_path: str) -> str:
    with open(local_path, encoding="utf-8") as f:
        return f.read()


def read_dict(local_path: str) -> dict:
    """JSON, or YAML when the name ends in .yaml or .yml."""
    with open(local_path, encoding="utf-8") as f:
        if local_path.endswith((".yaml", ".yml")):
            return _require("yaml", "pyyaml", "load_dict of a YAML file").safe_load(f)
        return json.load(f)


def read_image(local_path: str):
    """A PIL image, loaded whole (the file may be deleted afterwards)."""
    image = _require("PIL.Image", "pillow", "load_image").open(local_path)
    image.load()
    return image
