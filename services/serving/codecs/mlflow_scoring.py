"""MLflow's scoring protocol, as `mlflow models serve` speaks it (MLflow 3.17): the body of
POST /invocations decoded into a Payload, and predictions and errors encoded as its responses.

Pure functions, no transport: the REST server calls `parse_invocation`, predicts, and answers with
`format_predictions`, or with `error_response(error)` when something raised.

The facts of MLflow's server (mlflow/pyfunc/scoring_server/__init__.py) the server reproduces:
- an unsupported content type, a charset other than UTF-8, or a content-type parameter other than
  charset is 415 with a text/plain body (not the JSON error body); here UnsupportedContentType;
- malformed JSON, none or several of the format keys, a body the format cannot hold, a value the
  schema's type cannot take, CSV that does not parse: 400 with
  {"error_code": "BAD_REQUEST", "message": ...}; here InvalidArgument;
- a model that raises while predicting: 400 BAD_REQUEST too (PREDICT_ERROR_MESSAGE), and 504 with
  TIMEOUT_BODY after MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT (60 s by default);
- GET /ping and GET /health: 200, body "\\n", media type application/json;
- GET /version: 200, the bare version string (not JSON-quoted), media type application/json.

Where this codec differs from MLflow, on purpose:
- a missing Content-Type header is 415 (MLflow fails with 500), and the media type is matched
  case-insensitively;
- CSV columns typed `binary` are base64-decoded and `datetime` ones parsed, as in JSON (MLflow's
  CSV path leaves binary as text and rejects datetime);
- MLflow ignores unknown top-level keys; `strict=True` rejects them instead;
- DataFrame column names are strings (the Payload's keys); without "columns", "0", "1", ...

One job: MLflow's scoring protocol, every input format it accepts (dataframe_split/records, instances,
inputs, CSV, params) and its answers, kept together so its facts about MLflow stay in one place.
"""
from __future__ import annotations

import base64
import binascii
import csv
import datetime
import io
import json
import sys

import numpy as np

from mlgrid.models.signature import NUMPY_TYPES, Schema, TensorSpec
from services.common.errors import InvalidArgument
from services.serving.payload import UNNAMED, Payload

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_CSV = "text/csv"
CONTENT_TYPE_PARQUET = "application/vnd.apache.parquet"
CONTENT_TYPES = (CONTENT_TYPE_CSV, CONTENT_TYPE_JSON, CONTENT_TYPE_PARQUET)

DF_SPLIT = "dataframe_split"
DF_RECORDS = "dataframe_records"
INSTANCES = "instances"
INPUTS = "inputs"
FORMATS = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)
PARAMS_KEY = "params"

STATUS_OK = 200
STATUS_BAD_REQUEST = 400  # every InvalidArgument, and a model that raises while predicting
STATUS_UNSUPPORTED_MEDIA_TYPE = 415  # UnsupportedContentType; MLflow answers it in text/plain
STATUS_TIMEOUT = 504
ERROR_CODE_BAD_REQUEST = "BAD_REQUEST"
RESPONSE_MEDIA_TYPE = "application/json"  # of predictions, errors, /ping, /health and /version
ERROR_415_MEDIA_TYPE = "text/plain"
PING_BODY = b"\n"  # GET /ping and GET /health, status 200
TIMEOUT_BODY = b"Request processing time exceeded limit"
PREDICT_ERROR_MESSAGE = (
    "Encountered an unexpected error while evaluating the model. Verify that the serialized input"
    " Dataframe is compatible with the model for inference."
)
REQUIRED_INPUT_FORMAT = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "'dataframe_split', 'dataframe_records', 'instances' or 'inputs' (and optionally 'params')"
)
_EXAMPLE = ', e.g. {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}}'


class UnsupportedContentType(InvalidArgument):
    """A Content-Type the scoring server does not read: 415 with a text/plain body, as MLflow."""

    http_status = STATUS_UNSUPPORTED_MEDIA_TYPE


def version_body(version: str) -> bytes:
    """The body of GET /version: the bare version string (MLflow sends its own, e.g. 3.17.2)."""
    return version.encode()


# MLflow 3.17 classifies each error code: its serialized errors carry "sqlstate" and "error_class".
_ERROR_CLASSES = {
    "BAD_REQUEST": ("KAM00", "INVALID_PARAMETER_VALUE"),
    "INVALID_PARAMETER_VALUE": ("KAM00", "INVALID_PARAMETER_VALUE"),
    "RESOURCE_DOES_NOT_EXIST": ("KAM00", "RESOURCE_NOT_FOUND"),
    "INTERNAL_ERROR": ("XXM00", "CLIENT_INTERNAL_ERROR"),
}


def error_body(error_code: str, message: str) -> bytes:
    """MLflow's error body: {"error_code": "BAD_REQUEST", "message": "...", "sqlstate": "KAM00",
    "error_class": "INVALID_PARAMETER_VALUE"} (the last two for the codes MLflow classifies). MLflow
    also adds "stack_trace" for CSV and predict failures; mlgrid does not send tracebacks."""
    document = {"error_code": error_code, "message": message}
    if error_code in _ERROR_CLASSES:
        document["sqlstate"], document["error_class"] = _ERROR_CLASSES[error_code]
    return json.dumps(document).encode()


def error_response(error: InvalidArgument) -> tuple[int, bytes, str]:
    """(HTTP status, body, media type) answering a parse error as MLflow's server does."""
    if isinstance(error, UnsupportedContentType):
        return STATUS_UNSUPPORTED_MEDIA_TYPE, error.message.encode(), ERROR_415_MEDIA_TYPE
    return STATUS_BAD_REQUEST, error_body(ERROR_CODE_BAD_REQUEST, error.message), RESPONSE_MEDIA_TYPE


# ---------------------------------------------------------------- request


def parse_invocation(body: bytes, content_type: str | None, schema: Schema | None, *, strict: bool = False) -> Payload:
    """The body of POST /invocations as a Payload, typed by the model's input `schema` (or None).

    JSON: exactly one of dataframe_split / dataframe_records (kind "columns", one 1-D array per
    column), instances / inputs (a list: one unnamed tensor, kind "tensor"; a dict of lists: named
    arrays, kind "tensors", or "columns" for a column-based schema; a list of objects: kind
    "columns"), and optional "params" (a JSON object) -> Payload.params. CSV and Parquet: columns.
    Raises UnsupportedContentType (415) or InvalidArgument (400) saying what was wrong."""
    mime = _media_type(content_type)
    if mime == CONTENT_TYPE_JSON:
        return _parse_json(body, schema, strict)
    if mime == CONTENT_TYPE_CSV:
        return Payload(_parse_csv(body, schema), kind="columns")
    if mime == CONTENT_TYPE_PARQUET:
        return Payload(_parse_parquet(body), kind="columns")
    raise UnsupportedContentType(
        f"This predictor only supports the following content types: {list(CONTENT_TYPES)}. Got {content_type!r}."
    )


def _media_type(content_type: str | None) -> str:
    """The media type, lower-cased; 415 for a charset other than UTF-8 or any other parameter."""
    if not content_type:
        raise UnsupportedContentType(
            f"The request has no Content-Type; send one of {list(CONTENT_TYPES)} (JSON: {CONTENT_TYPE_JSON})."
        )
    if content_type == CONTENT_TYPE_JSON:  # the common case, without parameters
        return content_type
    mime, _, rest = content_type.partition(";")
    mime = mime.strip().lower()
    for pair in rest.split(";") if rest else ():
        key, _, value = pair.strip().partition("=")
        key = key.strip().lower()
        if key == "charset":
            if value.strip().strip('"').lower() != "utf-8":
                raise UnsupportedContentType(f"The scoring server only supports UTF-8; got {content_type!r}.")
        elif key:
            raise UnsupportedContentType(
                f"Unrecognized content type parameters: {key}; only charset=utf-8 is accepted. Got {content_type!r}."
            )
    return mime


def _parse_json(body: bytes, schema: Schema | None, strict: bool) -> Payload:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise InvalidArgument(
            f"Invalid input. Ensure that input is a valid JSON formatted string. Error: {error!r}. {REQUIRED_INPUT_FORMAT}{_EXAMPLE}."
        ) from None
    if not isinstance(document, dict):
        what = "a list" if isinstance(document, list) else f"a JSON {type(document).__name__}"
        raise InvalidArgument(f"{REQUIRED_INPUT_FORMAT}{_EXAMPLE}. Received {what}.")
    found = [key for key in FORMATS if key in document]
    if len(found) != 1:
        raise InvalidArgument(f"{REQUIRED_INPUT_FORMAT}{_EXAMPLE}. Received dictionary with input fields: {list(document)}.")
    if strict and len(document) > 1:
        unknown = [key for key in document if key not in FORMATS and key != PARAMS_KEY]
        if unknown:
            raise InvalidArgument(f"Unknown input field(s) {unknown}. {REQUIRED_INPUT_FORMAT}.")
    params = document.get(PARAMS_KEY)
    if params is not None and not isinstance(params, dict):
        raise InvalidArgument(
            f"'params' must be a JSON object of parameter names to values, e.g. {{\"temperature\": 0.5}}; got {_json_type(params)}."
        )
    key = found[0]
    value = document[key]
    if key == DF_SPLIT:
        payload = Payload(_split(value, schema), kind="columns")
    elif key == DF_RECORDS:
        payload = Payload(_records(value, schema), kind="columns")
    else:
        payload = _tf_serving(value, schema, key)
    payload.params = params
    return payload


def _json_type(value) -> str:
    return {list: "a list", dict: "an object", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), "null" if value is None else type(value).__name__)


# ---------------------------------------------------------------- schema plans

_NUMERIC = {"double": np.float64, "float": np.float32, "long": np.int64, "integer": np.int32, "boolean": np.bool_}
_plans: dict[int, tuple] = {}


def _plan(schema: Schema | None):
    """(column types by name, column types by position, one numeric dtype for every named column
    or None), computed once per schema object."""
    if schema is None or not schema.inputs or schema.is_tensor_based:
        return None
    cached = _plans.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    types = [spec.type for spec in schema.inputs]
    by_name = {spec.name: spec.type for spec in schema.inputs} if schema.has_names else {}
    uniform = _NUMERIC.get(types[0]) if isinstance(types[0], str) and all(t == types[0] for t in types) else None
    plan = (by_name, types, uniform)
    if len(_plans) > 256:
        _plans.clear()
    _plans[id(schema)] = (schema, plan)
    return plan


def _column_types(names: list[str], plan) -> list:
    """The schema's type for each named column (None: not in the schema, inferred). A named schema
    types by name; an unnamed one by position, as MLflow's cast does."""
    if plan is None:
        return [None] * len(names)
    by_name, types, _ = plan
    if by_name:
        return [by_name.get(name) for name in names]
    return [types[i] if i < len(types) else None for i in range(len(names))]


# ---------------------------------------------------------------- DataFrame formats


def _split(value, schema: Schema | None) -> dict[str, np.ndarray]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"Invalid input. Dataframe split format must be a dictionary; got {_json_type(value)}{_EXAMPLE}.")
    if "data" not in value or len(value) > 3 or any(k not in ("columns", "data", "index") for k in value):
        raise InvalidArgument(
            "Invalid input. Dataframe split format must have 'data' field and optionally 'columns' and 'index' fields."
            f" Got {sorted(value)}{_EXAMPLE}."
        )
    data = value["data"]
    columns = value.get("columns")
    if not isinstance(data, list):
        raise InvalidArgument(f"Invalid input. dataframe_split 'data' must be a list of rows (lists); got {_json_type(data)}.")
    if columns is not None and not isinstance(columns, list):
        raise InvalidArgument(f"Invalid input. dataframe_split 'columns' must be a list of column names; got {_json_type(columns)}.")
    if data and not isinstance(data[0], list):  # a list of values: one column, as pandas reads it
        data = [[v] for v in data]
    width = len(columns) if columns is not None else (len(data[0]) if data else 0)
    return _table(_names(columns, width), data, _plan(schema))


def _table(names: list[str], data: list, plan) -> dict[str, np.ndarray]:
    """Rows (lists) as typed columns."""
    width = len(names)
    if plan is not None and plan[2] is not None and data and (not plan[0] or all(n in plan[0] for n in names)) \
            and (plan[0] or len(plan[1]) >= width):
        try:  # the hot path: every column of one numeric type, converted in one call
            table = np.array(data, dtype=plan[2])
        except (ValueError, TypeError, OverflowError):
            pass  # the per-column path says which column is wrong
        else:
            if table.ndim == 2 and table.shape[1] == width:
                return dict(zip(names, table.T.copy()))
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) > width:
            got = f"{len(row)} value(s)" if isinstance(row, list) else _json_type(row)
            raise InvalidArgument(
                f"Invalid input. dataframe_split row {i} has {got}; every row needs one value per column"
                f" ({width}: {names})."
            )
        if len(row) < width:  # pandas fills a short row with missing values
            data = [r if len(r) == width else r + [None] * (width - len(r)) for r in data]
            break
    values = list(zip(*data)) if data else [()] * width
    return {name: _column(col, kind, name) for name, col, kind in zip(names, values, _column_types(names, plan))}


def _names(columns, width: int) -> list[str]:
    if columns is None:
        return [str(i) for i in range(width)]
    names = [c if isinstance(c, str) else str(c) for c in columns]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"Invalid input. Column names must be unique; got {names}.")
    return names


def _records(value, schema: Schema | None) -> dict[str, np.ndarray]:
    if not isinstance(value, list):
        raise InvalidArgument(
            f"Invalid input. Dataframe records format must be a list of records; got {_json_type(value)}."
            ' Send [{"a": 1, "b": 2}, {"a": 3, "b": 4}].'
        )
    if value and all(isinstance(r, list) for r in value):  # rows without names, as pandas reads them
        return _split({"data": value}, schema)
    if not all(isinstance(r, dict) for r in value):
        bad = next(i for i, r in enumerate(value) if not isinstance(r, dict))
        raise InvalidArgument(
            f"Invalid input. Dataframe records format must be a list of records ({{column: value}});"
            f" record {bad} is {_json_type(value[bad])}."
        )
    plan = _plan(schema)
    keys = list(value[0]) if value else []
    if plan is not None and plan[2] is not None and all(len(r) == len(keys) for r in value):
        try:  # records sharing their keys: rows for the one-call path
            return _table(_names(keys, len(keys)), [[r[k] for k in keys] for r in value], plan)
        except KeyError:
            pass
    columns = _record_columns(value)
    names = list(columns)
    kinds = _column_types(names, plan)
    return {name: _column(columns[name], kind, name) for name, kind in zip(names, kinds)}


def _record_columns(records: list[dict]) -> dict[str, list]:
    """Records as columns: names in order of first appearance, None where a record lacks one."""
    first = records[0] if records else {}
    keys = list(first)
    if all(len(r) == len(keys) and all(k in r for k in keys) for r in records):
        return {str(k): [r[k] for r in records] for k in keys}
    seen = dict.fromkeys(k for r in records for k in r)
    return {str(k): [r.get(k) for r in records] for k in seen}


def _object_array(values) -> np.ndarray:
    return np.fromiter(values, dtype=object, count=len(values))


_NONE = type(None)


def _infer(values) -> np.ndarray:
    """A column's dtype chosen as pandas chooses it for JSON values."""
    kinds = set(map(type, values))
    if kinds and kinds <= {int, float, _NONE} and kinds != {_NONE}:
        dtype = np.int64 if kinds == {int} else np.float64
        try:
            return np.array(values, dtype=dtype)
        except OverflowError:  # beyond int64: keep the Python ints
            return _object_array(values)
    if kinds == {bool}:
        return np.array(values, dtype=np.bool_)
    return _object_array(values)


def _column(values, kind, name: str) -> np.ndarray:
    """One DataFrame column as the schema's type `kind` (None: inferred), as MLflow casts it."""
    if kind is None:
        return _infer(values)
    if isinstance(kind, dict):  # array / object / map / any: the values as they came
        return _object_array(values)
    dtype = _NUMERIC.get(kind)
    if dtype is not None:
        try:
            array = np.array(values, dtype=dtype)
        except (ValueError, TypeError, OverflowError) as error:
            raise _bad_column(name, kind, values, error) from None
        if array.ndim != 1:
            raise InvalidArgument(
                f"Invalid input. Data is not compatible with model signature: column {name!r} takes one {kind} per row;"
                " got nested lists."
            )
        return array
    if kind == "string":
        return _object_array(values)
    if kind == "binary":
        try:
            return _object_array([base64.decodebytes(v.encode("utf8")) for v in values])
        except (AttributeError, binascii.Error, UnicodeError) as error:
            raise _bad_column(name, kind, values, error, " Send binary values as base64 strings.") from None
    if kind == "datetime":
        return _datetimes(values, name)
    raise _bad_column(name, kind, values, ValueError(f"unknown column type {kind!r}"))


def _bad_column(name, kind, values, error, hint: str = "") -> InvalidArgument:
    dtype = NUMPY_TYPES.get(kind, kind)
    return InvalidArgument(
        f"Invalid input. Data is not compatible with model signature. Failed to convert column {name!r} to type"
        f" {kind!r} ({dtype}): {error}.{hint}"
    )


def _datetimes(values, name: str) -> np.ndarray:
    import pandas as pd

    try:
        parsed = pd.to_datetime(list(values))
        return np.asarray(parsed.as_unit("ns").to_numpy(dtype="datetime64[ns]") if parsed.tz is None else parsed.to_numpy())
    except (ValueError, TypeError, OverflowError) as error:
        raise _bad_column(name, "datetime", values, error, " Send ISO 8601 strings, e.g. 2024-01-31T12:00:00.") from None


# ---------------------------------------------------------------- instances / inputs (TF serving)


def _tf_serving(value, schema: Schema | None, key: str) -> Payload:
    """MLflow's parse_tf_serving_input: np.array of the values with the schema's dtype."""
    named = schema is not None and bool(schema.inputs) and schema.has_names
    specs = {spec.name: spec for spec in schema.inputs} if named else {}
    table_kind = "tensors" if schema is None or not schema.inputs or schema.is_tensor_based else "columns"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        if key == INSTANCES:  # each record's values converted, then stacked per column
            columns: dict[str, list] = {}
            for record in value:
                for column, v in record.items():
                    columns.setdefault(str(column), []).append(v)
            arrays = {name: _tensor(vals, specs.get(name), name) for name, vals in columns.items()}
            _same_lengths(arrays, schema, specs)
        else:  # a list of records: a DataFrame's rows
            arrays = {name: _tensor(vals, specs.get(name), name) for name, vals in _record_columns(value).items()}
        return Payload(arrays, kind="columns")
    if schema is not None and schema.inputs:
        if len(specs) == 1 and isinstance(value, list):  # one named input: the list is it
            name = next(iter(specs))
            return Payload({name: _tensor(value, specs[name], name)}, kind=table_kind)
        if not named and isinstance(value, dict):
            raise InvalidArgument(
                "Invalid input. Failed to parse input data. This model contains an un-named model signature which"
                " expects a single n-dimensional array or a single value as input, however, an input of type dict"
                f" was found. Send {{\"{key}\": [[...], ...]}}."
            )
    if isinstance(value, dict):
        arrays = {str(name): _tensor(v, specs.get(name), str(name)) for name, v in value.items()}
        if key == INSTANCES:
            _same_lengths(arrays, schema, specs)
        return Payload(arrays, kind=table_kind)
    spec = schema.inputs[0] if schema is not None and schema.inputs else None
    return Payload({UNNAMED: _tensor(value, spec, "the input")}, kind="tensor")


def _tensor(values, spec, name: str) -> np.ndarray:
    """MLflow's convert_data_type: np.array(values, dtype of the spec), np.array's choice without one."""
    try:
        if spec is None:
            return np.array(values)
        if isinstance(spec, TensorSpec):
            return np.array(values, dtype=spec.dtype)
        kind = spec.type
        if isinstance(kind, dict):
            return np.array(values) if kind.get("type") == "array" else np.asarray(values, dtype=object)
        if kind in _NUMERIC:
            return np.array(values, dtype=_NUMERIC[kind])
        if kind == "string":  # MLflow: np.array(values, str)
            return _strings(values)
        if kind == "binary":  # MLflow: np.array(values, bytes), the text's bytes (no base64 here)
            return _strings(values, encode=True)
        if kind == "datetime":
            return np.array(values, dtype="datetime64[ns]")
        raise ValueError(f"unknown column type {kind!r}")
    except (ValueError, TypeError, OverflowError, UnicodeError) as error:
        target = f" to {spec.dtype if isinstance(spec, TensorSpec) else spec.type}" if spec is not None else ""
        raise InvalidArgument(f"Invalid input. Failed to convert {_what(name)}{target}: {error}.") from None


def _what(name: str) -> str:
    return name if name == "the input" else f"input {name!r}"


def _strings(values, encode: bool = False):
    def one(v):
        if isinstance(v, list):
            return [one(x) for x in v]
        text = v if isinstance(v, str) else str(v)
        return text.encode("ascii") if encode else text

    if not isinstance(values, list):
        return np.asarray(one(values), dtype=object)
    out = np.empty(len(values), dtype=object) if not any(isinstance(v, list) for v in values) else None
    if out is None:
        return np.array([one(v) for v in values], dtype=object)
    for i, v in enumerate(values):
        out[i] = one(v)
    return out


def _same_lengths(arrays: dict[str, np.ndarray], schema: Schema | None, specs: dict) -> None:
    """`instances` is row-shaped: every input shares the first dimension (MLflow's check)."""
    check = [n for n, a in arrays.items() if a.ndim]
    if specs:
        required = {s.name for s in schema.inputs if getattr(s, "required", True)
                    and not (isinstance(getattr(s, "type", None), dict) and s.type.get("type") == "array")}
        check = [n for n in check if n in required]
    if len({len(arrays[n]) for n in check}) > 1:
        raise InvalidArgument(
            "Invalid input. The length of values for each input/column name are not the same: "
            + ", ".join(f"{n}: {len(arrays[n])}" for n in check) + "."
        )


# ---------------------------------------------------------------- CSV and Parquet

# pandas.read_csv's default missing-value strings.
_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                 "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_CSV_HINT = (
    "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid CSV-formatted Pandas"
    " DataFrame produced using the `pandas.DataFrame.to_csv()` method (a header line of column names, then"
    " one line per row)"
)


def _parse_csv(body: bytes, schema: Schema | None) -> dict[str, np.ndarray]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidArgument(f"Invalid input. Ensure that input is a valid UTF-8 encoded string. Error: {error!r}") from None
    try:
        lines = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as error:
        raise InvalidArgument(f"{_CSV_HINT}. Error: '{error}'") from None
    if not lines:
        raise InvalidArgument(f"{_CSV_HINT}. Error: 'No columns to parse from file'")
    header, rows = lines[0], lines[1:]
    names: list[str] = []
    for i, name in enumerate(header):
        name = name or f"Unnamed: {i}"
        base, n = name, 0
        while name in names:  # pandas' mangling of duplicate names
            n += 1
            name = f"{base}.{n}"
        names.append(name)
    width = len(names)
    for i, row in enumerate(rows):
        if len(row) > width:
            raise InvalidArgument(f"{_CSV_HINT}. Error: 'Expected {width} fields in line {i + 2}, saw {len(row)}'")
        if len(row) < width:
            row.extend([""] * (width - len(row)))
    values = list(zip(*rows)) if rows else [()] * width
    kinds = _column_types(names, _plan(schema))
    return {name: _csv_column(col, kind, name) for name, col, kind in zip(names, values, kinds)}


def _csv_column(texts, kind, name: str) -> np.ndarray:
    values = [None if t in _NA else t for t in texts]
    if kind is None:
        return _csv_infer(values)
    if isinstance(kind, dict) or kind == "string":
        return _object_array(values)
    if kind in ("long", "integer"):
        try:
            numbers = [int(v) if v is not None and v.lstrip("+-").isdigit() else _integral(v) for v in values]
        except ValueError as error:
            raise _bad_column(name, kind, texts, error) from None
        return _column(numbers, kind, name)
    if kind == "boolean":
        try:
            return np.array([_bool(v) for v in values], dtype=np.bool_)
        except ValueError as error:
            raise _bad_column(name, kind, texts, error) from None
    if kind in ("double", "float"):
        return _column([float("nan") if v is None else v for v in values], kind, name)
    return _column(values, kind, name)  # binary (base64), datetime


def _integral(text):
    if text is None:
        raise ValueError("Integer column has NA values")
    number = float(text)
    if not number.is_integer():
        raise ValueError(f"cannot safely convert {text!r} to an integer")
    return int(number)


def _bool(text):
    if text is None:
        raise ValueError("Bool column has NA values")
    if text in _TRUE or text == "1":
        return True
    if text in _FALSE or text == "0":
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def _csv_infer(values) -> np.ndarray:
    """A CSV column's dtype as pandas.read_csv infers it: int64, float64, bool, else strings."""
    present = [v for v in values if v is not None]
    if not present:
        return np.full(len(values), np.nan)
    if len(present) == len(values) and all(v.lstrip("+-").isdigit() for v in values):
        try:
            return np.array([int(v) for v in values], dtype=np.int64)
        except OverflowError:
            pass
    try:
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    except ValueError:
        pass
    if len(present) == len(values) and all(v in _TRUE or v in _FALSE for v in values):
        return np.array([v in _TRUE for v in values], dtype=np.bool_)
    return _object_array(values)


def _parse_parquet(body: bytes) -> dict[str, np.ndarray]:
    import pandas as pd

    try:
        frame = pd.read_parquet(io.BytesIO(body))
    except Exception as error:  # noqa: BLE001 - whatever pyarrow raises is a bad body
        raise InvalidArgument(
            "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid Parquet Pandas DataFrame"
            f" produced using the `pandas.DataFrame.to_parquet()` method. Error: '{error}'"
        ) from None
    return {str(c): np.asarray(frame[c].to_numpy(dtype=object if frame[c].dtype.kind not in "biufcmM" else None))
            for c in frame.columns}


# ---------------------------------------------------------------- response


def _default(o):
    """MLflow's NumpyEncoder: numpy values as Python ones, bytes as base64 (encodebytes, newlines
    included), dates as ISO 8601, pydantic models as dicts."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (bytes, bytearray)):
        return base64.encodebytes(o).decode("ascii")
    if isinstance(o, (datetime.date, datetime.datetime, datetime.time)):  # pandas.Timestamp included
        return o.isoformat()
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(o, pydantic.BaseModel):
        return o.model_dump()
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(default=_default)  # NaN and infinities written as NaN / Infinity, as MLflow


def format_predictions(predictions, metadata: dict | None = None) -> bytes:
    """The body MLflow's scoring server answers predictions with: {"predictions": ...}. Arrays as
    lists, a DataFrame as records ([{column: value}, ...]), a Series as the records of its one-column
    DataFrame (as MLflow), dicts and lists with their numpy values converted; extra `metadata` keys
    go beside "predictions"."""
    if isinstance(predictions, np.ndarray):
        predictions = predictions.tolist()
    else:
        pd = sys.modules.get("pandas")
        if pd is not None:
            if isinstance(predictions, pd.DataFrame):
                predictions = predictions.to_dict(orient="records")
            elif isinstance(predictions, pd.Series):
                predictions = pd.DataFrame(predictions).to_dict(orient="records")
    if metadata:
        if "predictions" in metadata:
            raise InvalidArgument("metadata cannot contain 'predictions' key")
        return _ENCODER.encode({"predictions": predictions, **metadata}).encode()
    return _ENCODER.encode({"predictions": predictions}).encode()
