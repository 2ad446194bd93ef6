"""Model signatures as MLflow writes them in MLmodel files: column-based or tensor-based input and
output schemas plus inference parameters; inferred from examples and enforced at predict.

The JSON forms are MLflow's (`[{"type": "double", "name": "a", "required": true}]`,
`[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]`), so signatures
written by either tool read in the other."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import grpc
import numpy as np

from mlgrid.exceptions import MlgridException

INVALID = grpc.StatusCode.INVALID_ARGUMENT
_log = logging.getLogger(__name__)

# MLflow's column types and the numpy dtypes that hold them.
NUMPY_TYPES = {
    "boolean": np.dtype(np.bool_),
    "integer": np.dtype(np.int32),
    "long": np.dtype(np.int64),
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "string": np.dtype(object),
    "binary": np.dtype(object),
    "datetime": np.dtype("datetime64[ns]"),
}


def _invalid(message: str) -> MlgridException:
    return MlgridException(message, INVALID)


def _pandas():
    import pandas

    return pandas


@dataclass(frozen=True)
class ColSpec:
    """One column: a type name from NUMPY_TYPES, or MLflow's structured types (array, object, map,
    any) kept as their JSON dict, which are checked for presence only."""

    type: str | dict
    name: str | None = None
    required: bool = True

    def to_dict(self) -> dict:
        spec = dict(self.type) if isinstance(self.type, dict) else {"type": self.type}
        if self.name is not None:
            spec["name"] = self.name
        spec["required"] = self.required
        return spec


@dataclass(frozen=True)
class TensorSpec:
    """One tensor: numpy dtype and shape, -1 for a dimension of any size."""

    dtype: np.dtype
    shape: tuple[int, ...]
    name: str | None = None

    def to_dict(self) -> dict:
        spec = {"type": "tensor", "tensor-spec": {"dtype": str(self.dtype), "shape": list(self.shape)}}
        if self.name is not None:
            spec["name"] = self.name
        return spec


@dataclass(frozen=True)
class Schema:
    inputs: tuple[ColSpec | TensorSpec, ...]

    def __post_init__(self):
        kinds = {type(spec) for spec in self.inputs}
        if len(kinds) > 1:
            raise _invalid("a schema holds either columns or tensors, not both")
        named = {spec.name is not None for spec in self.inputs}
        if len(named) > 1:
            raise _invalid("a schema's entries are either all named or all unnamed")

    @property
    def is_tensor_based(self) -> bool:
        return bool(self.inputs) and isinstance(self.inputs[0], TensorSpec)

    @property
    def has_names(self) -> bool:
        return bool(self.inputs) and self.inputs[0].name is not None

    def names(self) -> list[str | None]:
        return [spec.name for spec in self.inputs]

    def to_json(self) -> str:
        return json.dumps([spec.to_dict() for spec in self.inputs])

    @classmethod
    def from_json(cls, text: str) -> "Schema":
        specs = []
        for entry in json.loads(text):
            if entry.get("type") == "tensor":
                tensor = entry["tensor-spec"]
                specs.append(TensorSpec(np.dtype(tensor["dtype"]), tuple(tensor["shape"]), entry.get("name")))
            else:
                kind = entry["type"]
                structured = {k: v for k, v in entry.items() if k not in ("name", "required")}
                specs.append(ColSpec(kind if kind in NUMPY_TYPES else structured, entry.get("name"), entry.get("required", True)))
        return cls(tuple(specs))


@dataclass(frozen=True)
class ParamSpec:
    """An inference parameter: name, type (a NUMPY_TYPES name), default, and shape (None, or (-1,) for a list)."""

    name: str
    type: str
    default: object = None
    shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "default": self.default, "shape": list(self.shape) if self.shape else None}


@dataclass(frozen=True)
class ModelSignature:
    inputs: Schema | None = None
    outputs: Schema | None = None
    params: tuple[ParamSpec, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        """The MLmodel `signature` entry: each schema as a JSON string, as MLflow writes it."""
        return {
            "inputs": self.inputs.to_json() if self.inputs else None,
            "outputs": self.outputs.to_json() if self.outputs else None,
            "params": json.dumps([p.to_dict() for p in self.params]) if self.params else None,
        }

    @classmethod
    def from_dict(cls, entry: dict) -> "ModelSignature":
        params = tuple(
            ParamSpec(p["name"], p["type"], p.get("default"), tuple(p["shape"]) if p.get("shape") else None)
            for p in json.loads(entry["params"])
        ) if entry.get("params") else ()
        return cls(
            Schema.from_json(entry["inputs"]) if entry.get("inputs") else None,
            Schema.from_json(entry["outputs"]) if entry.get("outputs") else None,
            params,
        )


# ---------------------------------------------------------------- inference from examples


def _column_type(values) -> str:
    """The MLflow type of a pandas column or 1-D array."""
    pd = _pandas()
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long" if np.dtype(dtype).itemsize >= 8 or (dtype.kind == "u" and dtype.itemsize >= 4) else "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "double" if np.dtype(dtype).itemsize >= 8 else "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    present = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if present and all(isinstance(v, str) for v in present):
        return "string"
    if present and all(isinstance(v, (bytes, bytearray)) for v in present):
        return "binary"
    if pd.api.types.is_string_dtype(dtype) and not present:
        return "string"
    raise _invalid(f"cannot infer a column type from values of dtype {dtype} (e.g. {present[:1]}); give a signature")


def _schema_of(example) -> Schema:
    pd = _pandas()
    if hasattr(example, "detach") and hasattr(example, "numpy"):  # a torch tensor
        example = example.detach().cpu().numpy()
    if isinstance(example, dict) and example and all(isinstance(v, np.ndarray) for v in example.values()):
        return Schema(tuple(TensorSpec(v.dtype, (-1, *v.shape[1:]), str(k)) for k, v in example.items()))
    if isinstance(example, np.ndarray):
        if example.dtype.kind in "OUS":
            return Schema((ColSpec(_column_type(example.ravel())),))
        return Schema((TensorSpec(example.dtype, (-1, *example.shape[1:])),))
    if isinstance(example, pd.Series):
        return Schema((ColSpec(_column_type(example), None if example.name is None else str(example.name)),))
    if isinstance(example, dict):
        example = pd.DataFrame({k: v if isinstance(v, (list, tuple, np.ndarray)) else [v] for k, v in example.items()})
    elif isinstance(example, list) and example and all(isinstance(row, dict) for row in example):
        example = pd.DataFrame(example)
    elif isinstance(example, (list, str)):
        example = pd.DataFrame({0: example if isinstance(example, list) else [example]})
        return Schema((ColSpec(_column_type(example[0])),))
    if isinstance(example, pd.DataFrame):
        return Schema(tuple(
            ColSpec(_column_type(example[column]), str(column), not bool(example[column].isna().any()))
            for column in example.columns
        ))
    raise _invalid(f"cannot infer a schema from a {type(example).__name__}; use a DataFrame, dict, list or numpy array")


def _param_type(value) -> str:
    for kind, types in (("boolean", (bool, np.bool_)), ("long", (int, np.integer)), ("double", (float, np.floating)),
                        ("string", (str,)), ("binary", (bytes,))):
        if isinstance(value, types):
            return kind
    raise _invalid(f"cannot infer a parameter type from {value!r}")


def _param_spec(name: str, value) -> ParamSpec:
    if isinstance(value, (list, tuple)):
        if not value:
            raise _invalid(f"cannot infer the type of parameter {name!r} from an empty list")
        return ParamSpec(name, _param_type(value[0]), list(value), (-1,))
    return ParamSpec(name, _param_type(value), value)


def infer_signature(model_input=None, model_output=None, params: dict | None = None) -> ModelSignature:
    """The signature of a model that takes `model_input` and returns `model_output`
    (DataFrames, dicts, lists, numpy arrays or torch tensors), with `params` as defaults."""
    return ModelSignature(
        _schema_of(model_input) if model_input is not None else None,
        _schema_of(model_output) if model_output is not None else None,
        tuple(_param_spec(k, v) for k, v in (params or {}).items()),
    )


# ---------------------------------------------------------------- enforcement at predict


def _convert(values, expected: str, what: str):
    """`values` (a pandas column or array) as the numpy type of `expected`, when that loses nothing;
    JSON gives float64 for every number, so any number is taken as a float, and int64 as int32 when it fits."""
    pd = _pandas()
    dtype = values.dtype
    target = NUMPY_TYPES[expected]
    kind = getattr(dtype, "kind", "O")
    if expected in ("float", "double") and kind in "iuf":
        return values.astype(target)
    if expected in ("integer", "long") and kind in "iu":
        if np.can_cast(dtype, target, "safe"):
            return values.astype(target)
        info = np.iinfo(target)
        if len(values) == 0 or (values.min() >= info.min and values.max() <= info.max):
            return values.astype(target)
    if expected == "boolean" and kind == "b":
        return values
    if expected == "datetime":
        if kind == "M":
            return values
        try:
            return pd.to_datetime(values)
        except (ValueError, TypeError):
            pass
    if expected in ("string", "binary") and kind in "OUST":
        wanted = str if expected == "string" else (bytes, bytearray)
        if all(v is None or isinstance(v, wanted) or (isinstance(v, float) and np.isnan(v)) for v in values):
            return values
    raise _invalid(f"incompatible input type for {what}: cannot safely convert {dtype} to {expected}")


def _as_frame(data, schema: Schema):
    pd = _pandas()
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, pd.Series):
        return data.to_frame()
    if isinstance(data, dict):
        try:
            return pd.DataFrame({k: v if isinstance(v, (list, tuple, np.ndarray)) else [v] for k, v in data.items()})
        except ValueError as error:
            raise _invalid(f"cannot read the input as columns: {error}") from None
    if isinstance(data, list) and all(isinstance(row, dict) for row in data):
        return pd.DataFrame(data)
    if isinstance(data, (list, np.ndarray)):
        array = np.asarray(data, dtype=object if isinstance(data, list) else None)
        if array.ndim == 1:
            array = array.reshape(-1, 1) if len(schema.inputs) == 1 else array.reshape(1, -1)
        if array.ndim != 2 or array.shape[1] != len(schema.inputs):
            raise _invalid(
                f"the input has shape {array.shape}; the model takes {len(schema.inputs)} column(s)"
                + (f": {', '.join(map(str, schema.names()))}" if schema.has_names else "")
            )
        names = schema.names() if schema.has_names else list(range(len(schema.inputs)))
        frame = pd.DataFrame(array, columns=names)
        return frame.infer_objects() if isinstance(data, list) else frame
    raise _invalid(f"unsupported input type {type(data).__name__}; send a DataFrame, dict, list or numpy array")


_NUMERIC_TYPES = ("boolean", "integer", "long", "float", "double")


def _has_schema_dtypes(frame, schema: Schema) -> bool:
    """Whether every column already has its numeric schema type (strings and the rest are checked value by value)."""
    return all(
        isinstance(spec.type, str) and spec.type in _NUMERIC_TYPES and dtype == NUMPY_TYPES[spec.type]
        for dtype, spec in zip(frame.dtypes, schema.inputs)
    )


def _enforce_columns(data, schema: Schema):
    frame = _as_frame(data, schema)
    if not schema.has_names:
        if frame.shape[1] != len(schema.inputs):
            raise _invalid(f"the input has {frame.shape[1]} column(s); the model takes {len(schema.inputs)}")
        frame = frame.copy()
        for position, spec in enumerate(schema.inputs):
            if isinstance(spec.type, str):
                frame.iloc[:, position] = _convert(frame.iloc[:, position], spec.type, f"column {position}")
        return frame
    given = [str(c) for c in frame.columns]
    if given == schema.names() and _has_schema_dtypes(frame, schema):
        return frame  # already what the model takes: nothing to convert
    missing = [spec.name for spec in schema.inputs if spec.required and spec.name not in given]
    if missing:
        extra = [c for c in given if c not in schema.names()]
        raise _invalid(
            f"the input is missing column(s) {missing}; the model takes {schema.names()}"
            + (f" (and got unexpected {extra})" if extra else "")
        )
    frame = frame.set_axis(given, axis=1)
    columns = {}
    for spec in schema.inputs:
        if spec.name in given:
            column = frame[spec.name]
            columns[spec.name] = _convert(column, spec.type, f"column {spec.name!r}") if isinstance(spec.type, str) else column
    return _pandas().DataFrame(columns, index=frame.index)


def _enforce_tensor(array, spec: TensorSpec, what: str) -> np.ndarray:
    if hasattr(array, "detach") and hasattr(array, "numpy"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.dtype != spec.dtype:
        lossless = np.can_cast(array.dtype, spec.dtype, "safe")
        json_float = array.dtype.kind in "iuf" and spec.dtype.kind == "f"  # JSON numbers arrive as float64/int64
        if not (lossless or json_float):
            raise _invalid(f"incompatible dtype for {what}: got {array.dtype}, the model takes {spec.dtype}")
        array = array.astype(spec.dtype)
    if len(array.shape) != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, array.shape)):
        raise _invalid(f"incompatible shape for {what}: got {tuple(array.shape)}, the model takes {tuple(spec.shape)} (-1: any size)")
    return array


def _enforce_tensors(data, schema: Schema):
    pd = _pandas()
    if not schema.has_names or len(schema.inputs) == 1 and not isinstance(data, dict):
        spec = schema.inputs[0]
        if isinstance(data, pd.DataFrame):
            data = data.to_numpy()
        return _enforce_tensor(data, spec, "the input tensor")
    if isinstance(data, pd.DataFrame):
        data = {column: data[column].to_numpy() for column in data.columns}
    if not isinstance(data, dict):
        raise _invalid(f"the model takes named tensors {schema.names()}; send a dict of arrays")
    missing = [name for name in schema.names() if name not in data]
    if missing:
        raise _invalid(f"the input is missing tensor(s) {missing}; the model takes {schema.names()}")
    return {spec.name: _enforce_tensor(data[spec.name], spec, f"tensor {spec.name!r}") for spec in schema.inputs}


def enforce_input(data, schema: Schema | None):
    """`data` checked against `schema` and converted to the types it names; INVALID_ARGUMENT with
    what is wrong otherwise. Extra columns are dropped, as MLflow does."""
    if schema is None or not schema.inputs:
        return data
    return _enforce_tensors(data, schema) if schema.is_tensor_based else _enforce_columns(data, schema)


def _param_value(spec: ParamSpec, value):
    def one(item):
        expected = NUMPY_TYPES.get(spec.type)
        if spec.type == "boolean" and isinstance(item, (bool, np.bool_)):
            return bool(item)
        if spec.type in ("integer", "long") and isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            return int(item)
        if spec.type in ("float", "double") and isinstance(item, (int, float, np.number)) and not isinstance(item, bool):
            return float(item)
        if spec.type == "string" and isinstance(item, str):
            return item
        if spec.type == "binary" and isinstance(item, bytes) or expected is None:
            return item
        raise _invalid(f"parameter {spec.name!r} takes {spec.type}{' values' if spec.shape else ''}; got {item!r}")

    if spec.shape:
        if not isinstance(value, (list, tuple, np.ndarray)):
            raise _invalid(f"parameter {spec.name!r} takes a list of {spec.type}; got {value!r}")
        return [one(item) for item in value]
    return one(value)


def enforce_params(params: dict | None, specs: tuple[ParamSpec, ...]) -> dict | None:
    """The params a model declares: given ones checked and converted, defaults for the rest. As in
    MLflow, params the model does not declare are dropped with a warning."""
    unknown = sorted(set(params or {}) - {spec.name for spec in specs})
    if unknown:
        _log.warning("ignoring param(s) %s: the model's signature declares %s", unknown, [s.name for s in specs] or "none")
    if not specs:
        return None
    given = params or {}
    return {spec.name: _param_value(spec, given[spec.name]) if spec.name in given else spec.default for spec in specs}
