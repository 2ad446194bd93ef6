"""Input examples as MLflow saves them beside a model: `input_example.json` (what the model takes)
and `serving_input_example.json` (a request body for /invocations), described by the MLmodel's
`saved_input_example_info`."""
from __future__ import annotations

import base64
import datetime
import json
import os

import numpy as np

from mlgrid.models.signature import _invalid, _pandas

EXAMPLE_FILE = "input_example.json"
SERVING_EXAMPLE_FILE = "serving_input_example.json"


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    return value


def _encode(example) -> tuple[str, object, dict]:
    """(type, what input_example.json holds, the serving request body)."""
    pd = _pandas()
    if hasattr(example, "detach") and hasattr(example, "numpy"):  # a torch tensor
        example = example.detach().cpu().numpy()
    if isinstance(example, pd.Series):
        example = example.to_frame()
    if isinstance(example, pd.DataFrame):
        split = {"columns": [str(c) for c in example.columns], "data": _jsonable(example.to_numpy(dtype=object))}
        return "dataframe", split, {"dataframe_split": split}
    if isinstance(example, np.ndarray):
        data = _jsonable(example)
        return "ndarray", data, {"inputs": data}
    if isinstance(example, dict) and example and all(isinstance(v, np.ndarray) for v in example.values()):
        data = {str(k): _jsonable(v) for k, v in example.items()}
        return "ndarray", data, {"inputs": data}
    if isinstance(example, (dict, list, str, int, float, bool)):
        data = _jsonable(example)
        return "json_object", data, {"inputs": data}
    raise _invalid(
        f"cannot save an input example of type {type(example).__name__}: give a DataFrame, numpy array, "
        "dict of numpy arrays, dict, list or scalar"
    )


def save_input_example(model_dir: str, example) -> dict:
    """Write the example files into `model_dir`; returns the MLmodel's saved_input_example_info."""
    kind, data, serving = _encode(example)
    with open(os.path.join(model_dir, EXAMPLE_FILE), "w") as f:
        json.dump(data, f)
    with open(os.path.join(model_dir, SERVING_EXAMPLE_FILE), "w") as f:
        json.dump(serving, f, indent=2)
    info = {"artifact_path": EXAMPLE_FILE, "serving_input_path": SERVING_EXAMPLE_FILE, "type": kind}
    if kind == "dataframe":
        info["pandas_orient"] = "split"
    return info


def load_input_example(model_dir: str, info: dict | None):
    """The example saved in `model_dir` as the type it was given in (None when there is none)."""
    if not info:
        return None
    with open(os.path.join(model_dir, info["artifact_path"])) as f:
        data = json.load(f)
    if info.get("example_params"):  # MLflow keeps (data, params) examples under these keys
        data = data["inputs"]
    kind = info.get("type")
    if kind == "dataframe":
        pd = _pandas()
        if isinstance(data, dict) and "columns" in data:
            return pd.DataFrame(data["data"], columns=data["columns"])
        return pd.DataFrame(data)
    if kind == "ndarray":
        if isinstance(data, dict):
            return {k: np.asarray(v) for k, v in data.items()}
        return np.asarray(data)
    return data
