"""MLflow's scoring protocol codec, checked against MLflow's own scoring server functions: the same
request parses to the same values and dtypes, the same predictions format to the same bytes."""
import base64
import io
import json

import numpy as np
import pandas as pd
import pytest

from mlgrid.models.signature import ColSpec, Schema, TensorSpec
from services.common.errors import InvalidArgument
from services.serving.codecs import mlflow_scoring as scoring
from services.serving.codecs.mlflow_scoring import (
    UnsupportedContentType,
    error_body,
    error_response,
    format_predictions,
    parse_invocation,
)
from services.serving.payload import UNNAMED

mlflow = pytest.importorskip("mlflow")
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.pyfunc import scoring_server  # noqa: E402
from mlflow.types import Schema as MlflowSchema  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning", "ignore::FutureWarning")

JSON = "application/json"
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_SCHEMA = Schema(tuple(ColSpec("double", c) for c in IRIS))
MIXED_SCHEMA = Schema((
    ColSpec("long", "l"), ColSpec("integer", "i"), ColSpec("float", "f"), ColSpec("double", "d"),
    ColSpec("boolean", "b"), ColSpec("string", "s"), ColSpec("binary", "bin"), ColSpec("datetime", "t"),
))
MIXED_ROWS = [
    [1, 2, 1.5, 2.5, True, "x", base64.b64encode(b"\x00hi").decode(), "2024-01-31T12:00:00"],
    [3, 4, 2, 3, False, "y", base64.b64encode(b"there").decode(), "2024-02-01T08:30:00"],
]
TENSOR_SCHEMA = Schema((TensorSpec(np.dtype("float32"), (-1, 4)),))
NAMED_TENSORS = Schema((TensorSpec(np.dtype("float32"), (-1, 2), "a"), TensorSpec(np.dtype("int64"), (-1,), "b")))
ONE_COLUMN = Schema((ColSpec("long", "x"),))
UNNAMED_COLUMNS = Schema((ColSpec("double"), ColSpec("long")))


def body(document) -> bytes:
    return json.dumps(document).encode()


def mlflow_schema(schema):
    return None if schema is None else MlflowSchema.from_json(schema.to_json())


def mlflow_parse(raw: bytes, content_type: str, schema):
    """What MLflow's scoring server hands the model (and the params) for this request."""
    mschema = mlflow_schema(schema)
    if content_type.startswith("text/csv"):
        return scoring_server.parse_csv_input(io.StringIO(raw.decode()), schema=mschema), None
    if content_type.startswith("application/vnd.apache.parquet"):
        return scoring_server.parse_parquet_input(io.BytesIO(raw)), None
    data, params = scoring_server._split_data_and_params(raw)
    return scoring_server.infer_and_parse_data(data, mschema), params


def values(array) -> list:
    """Comparable values: NaN and None alike, numpy scalars as Python ones."""
    array = np.asarray(array, dtype=object)
    if not array.ndim:
        return values(array.reshape(1))
    out = []
    for v in array.tolist():
        if isinstance(v, list):
            out.append(values(v))
        elif v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
            out.append(None)
        else:
            out.append(v.item() if isinstance(v, np.generic) else v)
    return out


def same_array(mine: np.ndarray, theirs, what: str):
    theirs_dtype = getattr(theirs, "dtype", None)
    theirs = np.asarray(theirs)
    if isinstance(theirs_dtype, pd.StringDtype) or theirs.dtype.kind == "O":
        assert mine.dtype == object, what  # strings and bytes are object arrays of str / bytes
    elif theirs.dtype.kind in "US":  # np.array's choice for tensors of text, or objects of str / bytes
        assert mine.dtype == theirs.dtype or mine.dtype == object, what
    else:
        assert mine.dtype == theirs.dtype, f"{what}: {mine.dtype} != {theirs.dtype}"
    assert mine.shape == theirs.shape, what
    assert values(mine) == values(theirs), what


def assert_same(raw: bytes, content_type: str, schema, kind: str | None = None):
    payload = parse_invocation(raw, content_type, schema)
    theirs, params = mlflow_parse(raw, content_type, schema)
    assert payload.params == params
    if kind:
        assert payload.kind == kind
    if isinstance(theirs, list):  # `inputs` as records: the model makes a DataFrame of them
        # (without a schema MLflow wraps each value in a 0-d array, an object column; here it is typed)
        theirs = pd.DataFrame([{k: v[()] if isinstance(v, np.ndarray) and not v.ndim else v for k, v in record.items()}
                               for record in theirs])
    if isinstance(theirs, pd.DataFrame):
        assert list(payload.arrays) == [str(c) for c in theirs.columns]
        for column in theirs.columns:
            same_array(payload.arrays[str(column)], theirs[column], f"column {column}")
    elif isinstance(theirs, dict):
        assert list(payload.arrays) == list(theirs)
        for name, array in theirs.items():
            same_array(payload.arrays[name], array, f"input {name}")
    else:
        assert list(payload.arrays) == [UNNAMED]
        same_array(payload.arrays[UNNAMED], theirs, "the tensor")
    return payload


# ---------------------------------------------------------------- JSON, against MLflow

SPLIT = {"dataframe_split": {"columns": IRIS, "data": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]}}
RECORDS = {"dataframe_records": [dict(zip(IRIS, [5.1, 3.5, 1.4, 0.2])), dict(zip(IRIS, [6, 2.9, 4.3, 1.3]))]}
INSTANCES_RECORDS = {"instances": RECORDS["dataframe_records"]}
INPUTS_RECORDS = {"inputs": RECORDS["dataframe_records"]}
INPUTS_DICT = {"inputs": {c: [float(i), i + 0.5] for i, c in enumerate(IRIS)}}
INSTANCES_DICT = {"instances": {c: [i, i + 1] for i, c in enumerate(IRIS)}}


@pytest.mark.parametrize("schema", [IRIS_SCHEMA, None], ids=["schema", "no-schema"])
@pytest.mark.parametrize("params", [None, {"threshold": 0.5, "labels": ["a", "b"]}], ids=["", "params"])
@pytest.mark.parametrize("document,kind", [
    (SPLIT, "columns"), (RECORDS, "columns"), (INSTANCES_RECORDS, "columns"), (INPUTS_RECORDS, "columns"),
    (INPUTS_DICT, None), (INSTANCES_DICT, None),
], ids=["split", "records", "instances-records", "inputs-records", "inputs-dict", "instances-dict"])
def test_iris_formats_parse_as_mlflow(document, kind, schema, params):
    document = dict(document, **({"params": params} if params else {}))
    payload = assert_same(body(document), JSON, schema, kind)
    assert payload.rows == 2
    if kind is None:  # a dict of lists: columns for a column schema, named tensors without one
        assert payload.kind == ("columns" if schema else "tensors")


def test_the_benchmark_body_is_float64_columns_in_order():
    payload = parse_invocation(body(SPLIT), "application/json; charset=utf-8", IRIS_SCHEMA)
    assert list(payload.arrays) == IRIS and payload.kind == "columns" and payload.rows == 2
    assert all(a.dtype == np.float64 and a.flags.c_contiguous for a in payload.arrays.values())
    assert payload.arrays["petal_length"].tolist() == [1.4, 4.3]


@pytest.mark.parametrize("key", ["dataframe_split", "dataframe_records"])
def test_every_column_type_is_cast_as_mlflow_casts_it(key):
    names = [spec.name for spec in MIXED_SCHEMA.inputs]
    value = {"columns": names, "data": MIXED_ROWS} if key == "dataframe_split" else [dict(zip(names, r)) for r in MIXED_ROWS]
    payload = assert_same(body({key: value}), JSON, MIXED_SCHEMA)
    dtypes = {n: a.dtype for n, a in payload.arrays.items()}
    assert dtypes == {"l": np.int64, "i": np.int32, "f": np.float32, "d": np.float64, "b": np.bool_,
                      "s": object, "bin": object, "t": np.dtype("datetime64[ns]")}
    assert payload.arrays["bin"].tolist() == [b"\x00hi", b"there"]


@pytest.mark.parametrize("data", [
    [[1, 2.5, "a", True, None], [3, 4, "b", False, None]],
    [[1, None, "a", True, 1.5], [2, 3, None, False, 2]],
    [[2 ** 40, -1.5e300, "é", None, 0]],
], ids=["typed", "nulls", "extremes"])
def test_columns_without_a_schema_are_inferred_as_pandas_does(data):
    assert_same(body({"dataframe_split": {"columns": list("abcde"), "data": data}}), JSON, None)
    records = [dict(zip("abcde", row)) for row in data]
    assert_same(body({"dataframe_records": records}), JSON, None)


def test_records_missing_keys_and_columns_outside_the_schema():
    records = [{"sepal_length": 1.0, "extra": "x"}, {"sepal_length": 2, "sepal_width": 3.5, "n": 4}]
    payload = assert_same(body({"dataframe_records": records}), JSON, IRIS_SCHEMA)
    assert list(payload.arrays) == ["sepal_length", "extra", "sepal_width", "n"]


def test_split_without_columns_and_with_an_unnamed_schema():
    raw = body({"dataframe_split": {"data": [[1, 2], [3, 4]], "index": [7, 8]}})
    payload = assert_same(raw, JSON, UNNAMED_COLUMNS)
    assert [a.dtype for a in payload.arrays.values()] == [np.float64, np.int64]
    assert_same(raw, JSON, None)
    short = body({"dataframe_split": {"columns": IRIS, "data": [[1, 2, 3, 4], [5, 6]]}})  # pandas pads it
    assert np.isnan(assert_same(short, JSON, IRIS_SCHEMA).arrays["petal_width"][1])


@pytest.mark.parametrize("document,schema,kind", [
    ({"inputs": [[1.0, 2, 3, 4], [5, 6, 7, 8]]}, TENSOR_SCHEMA, "tensor"),
    ({"instances": [[1.0, 2, 3, 4]]}, TENSOR_SCHEMA, "tensor"),
    ({"inputs": [[1, 2], [3, 4]]}, None, "tensor"),
    ({"instances": [[1.5, 2], [3, 4]]}, None, "tensor"),
    ({"inputs": ["a", "b"]}, None, "tensor"),
    ({"inputs": {"a": [[1, 2]], "b": [3]}}, NAMED_TENSORS, "tensors"),
    ({"instances": {"a": [[1, 2], [3, 4]], "b": [5, 6]}}, NAMED_TENSORS, "tensors"),
    ({"instances": [{"a": [1, 2], "b": 3}, {"a": [3, 4], "b": 5}]}, NAMED_TENSORS, "columns"),
    ({"inputs": {"a": [1, 2], "b": ["x", "y"]}}, None, "tensors"),
    ({"inputs": [1, 2, 3]}, ONE_COLUMN, "columns"),
    ({"inputs": [[1.5, 2], [3, 4]]}, UNNAMED_COLUMNS, "tensor"),
    ({"inputs": 7}, None, "tensor"),
], ids=["inputs-tensor", "instances-tensor", "inputs-ints", "instances-floats", "inputs-strings",
        "inputs-named", "instances-named", "instances-rows", "inputs-dict-no-schema", "one-named-column",
        "unnamed-columns", "scalar"])
def test_tensor_inputs_parse_as_mlflow(document, schema, kind):
    assert_same(body(document), JSON, schema, kind)
    with_params = dict(document, params={"k": 1})
    assert parse_invocation(body(with_params), JSON, schema).params == {"k": 1}


def test_unknown_top_level_keys_are_ignored_as_mlflow_unless_strict():
    raw = body(dict(SPLIT, client_request_id="abc"))
    assert_same(raw, JSON, IRIS_SCHEMA)
    with pytest.raises(InvalidArgument, match="Unknown input field.*client_request_id"):
        parse_invocation(raw, JSON, IRIS_SCHEMA, strict=True)
    assert parse_invocation(body(dict(SPLIT, params={})), JSON, None, strict=True).params == {}


# ---------------------------------------------------------------- CSV and Parquet, against MLflow

CSV = "text/csv"


@pytest.mark.parametrize("schema", [IRIS_SCHEMA, None], ids=["schema", "no-schema"])
def test_csv_parses_as_mlflow(schema):
    raw = pd.DataFrame([[5.1, 3.5, 1.4, 0.2], [6, 2.9, 4.3, 1.3]], columns=IRIS).to_csv(index=False).encode()
    payload = assert_same(raw, CSV, schema, "columns")
    assert payload.params is None and payload.rows == 2


def test_csv_without_a_schema_infers_as_pandas_read_csv():
    frame = pd.DataFrame({"i": [1, 2, 3], "f": [1.5, None, 2], "s": ["a", None, "c,d"], "b": [True, False, True],
                          "empty": [None, None, None], "ni": [1, None, 3], "q": ['say "hi"', "x", "y"]})
    assert_same(frame.to_csv().encode(), "text/csv; charset=utf-8", None)  # with the unnamed index column
    assert_same(b"a,b,a\n1,x,2\n\n3,y\n", CSV, None)  # a blank line, a short row, a duplicate name


def test_csv_typed_by_the_schema():
    names = [spec.name for spec in MIXED_SCHEMA.inputs]
    typed = Schema(MIXED_SCHEMA.inputs[:6])
    raw = pd.DataFrame([row[:6] for row in MIXED_ROWS], columns=names[:6]).to_csv(index=False).encode()
    payload = assert_same(raw, CSV, typed)
    assert [a.dtype for a in payload.arrays.values()] == [np.int64, np.int32, np.float32, np.float64, np.bool_, object]
    # binary and datetime, which MLflow's CSV path leaves as text or refuses: decoded as in JSON
    raw = pd.DataFrame(MIXED_ROWS, columns=names).to_csv(index=False).encode()
    payload = parse_invocation(raw, CSV, MIXED_SCHEMA)
    assert payload.arrays["bin"].tolist() == [b"\x00hi", b"there"]
    assert payload.arrays["t"].dtype == np.dtype("datetime64[ns]")


def test_parquet_parses_as_mlflow():
    frame = pd.DataFrame({"a": [1.5, 2.5], "b": [1, 2], "s": ["x", "y"]})
    assert_same(frame.to_parquet(), "application/vnd.apache.parquet", None)


# ---------------------------------------------------------------- bad requests

BAD_JSON = [
    (b"{not json", "valid JSON"),
    (b"\xff\xfe", "valid JSON"),
    (b"[1, 2]", "Received a list"),
    (b'"text"', "exactly one of"),
    (body({"data": [[1]]}), "exactly one of"),
    (body({"columns": IRIS, "data": [[1, 2, 3, 4]]}), "exactly one of"),
    (body(dict(SPLIT, inputs=[[1]])), "exactly one of"),
    (body({"dataframe_split": [[1, 2]]}), "must be a dictionary"),
    (body({"dataframe_split": {"colums": IRIS, "data": [[1, 2, 3, 4]]}}), "'data' field"),
    (body({"dataframe_split": {"columns": IRIS, "data": [[1, 2, 3, 4], [1, 2, 3, 4, 5]]}}), "row 1"),
    (body({"dataframe_split": {"columns": IRIS, "data": [[1, 2, 3, "abc"]]}}), "petal_width"),
    (body({"dataframe_records": {"a": 1}}), "list of records"),
    (body({"dataframe_records": [{"sepal_length": "x"}]}), "sepal_length"),
    (body({"inputs": [[1, 2], [3]]}), "Failed to convert"),
]


@pytest.mark.parametrize("raw,words", BAD_JSON)
def test_bad_json_is_invalid_argument_as_in_mlflow(raw, words):
    with pytest.raises(InvalidArgument, match=words) as caught:
        parse_invocation(raw, JSON, IRIS_SCHEMA)
    assert not isinstance(caught.value, UnsupportedContentType)
    status, response, media_type = error_response(caught.value)
    assert status == 400 and media_type == "application/json"
    assert json.loads(response)["error_code"] == "BAD_REQUEST"
    with pytest.raises(MlflowException) as theirs:  # MLflow refuses it too, with the same code
        mlflow_parse(raw, JSON, IRIS_SCHEMA)
    assert theirs.value.get_http_status_code() == status and theirs.value.error_code == "BAD_REQUEST"


@pytest.mark.parametrize("document,schema,words", [
    ({"dataframe_split": {"columns": ["l"], "data": [[None]]}}, MIXED_SCHEMA, "column 'l'.*long"),
    ({"dataframe_split": {"columns": ["i"], "data": [[2 ** 40]]}}, MIXED_SCHEMA, "column 'i'"),
    ({"dataframe_split": {"columns": ["bin"], "data": [["not base64!"]]}}, MIXED_SCHEMA, "base64"),
    ({"dataframe_split": {"columns": ["t"], "data": [["yesterday-ish"]]}}, MIXED_SCHEMA, "column 't'.*ISO 8601"),
    ({"dataframe_split": {"columns": ["d"], "data": [[[1, 2]]]}}, MIXED_SCHEMA, "column 'd'"),
    ({"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}, None, "unique"),
    ({"inputs": {"x": [1]}}, UNNAMED_COLUMNS, "un-named"),
    ({"instances": {"a": [[1, 2]], "b": [1, 2]}}, NAMED_TENSORS, "length"),
    ({"instances": [{"a": [1, 2], "b": 1}, {"a": [1, 2]}]}, NAMED_TENSORS, "length"),
    ({"inputs": {"a": [["x"]], "b": [1]}}, NAMED_TENSORS, "input 'a'.*float32"),
    (dict(SPLIT, params=[1, 2]), None, "'params' must be a JSON object"),
])
def test_values_the_schema_cannot_take_name_the_column(document, schema, words):
    with pytest.raises(InvalidArgument, match=words):
        parse_invocation(body(document), JSON, schema)


@pytest.mark.parametrize("raw,words,theirs_too", [
    (b"", "No columns", True),
    (b"sepal_length\n1.5\nabc\n", "sepal_length", True),
    (b"a\n\xff\n", "UTF-8", True),
    # pandas would take a first column without a header as the index when every row has one more field
    (b"a,b\n1,2,3\n", "Expected 2 fields in line 2, saw 3", False),
])
def test_bad_csv_is_invalid_argument(raw, words, theirs_too):
    with pytest.raises(InvalidArgument, match=words):
        parse_invocation(raw, CSV, IRIS_SCHEMA)
    if theirs_too:
        with pytest.raises((MlflowException, UnicodeDecodeError)):
            mlflow_parse(raw, CSV, IRIS_SCHEMA)


def test_typed_csv_columns_refuse_what_they_cannot_hold():
    for raw, words in [(b"l\n1.5\n", "column 'l'"), (b"l,b\n,true\n", "column 'l'"), (b"b\nmaybe\n", "column 'b'")]:
        with pytest.raises(InvalidArgument, match=words):
            parse_invocation(raw, CSV, MIXED_SCHEMA)
    payload = parse_invocation(b"l,b\n2.0,TRUE\n3,false\n", CSV, MIXED_SCHEMA)
    assert payload.arrays["l"].tolist() == [2, 3] and payload.arrays["b"].tolist() == [True, False]


@pytest.mark.parametrize("content_type,words", [
    ("text/plain", "only supports the following content types.*application/json"),
    ("application/x-www-form-urlencoded", "text/csv"),
    ("application/json; charset=latin-1", "only supports UTF-8"),
    ("application/json; format=pandas-split", "Unrecognized content type parameters: format"),
    (None, "no Content-Type"),
])
def test_unsupported_content_types_are_415(content_type, words):
    with pytest.raises(UnsupportedContentType, match=words) as caught:
        parse_invocation(body(SPLIT), content_type, None)
    assert isinstance(caught.value, InvalidArgument)
    status, response, media_type = error_response(caught.value)
    assert (status, media_type) == (415, "text/plain") and response == caught.value.message.encode()


@pytest.mark.parametrize("content_type", ["application/json;charset=UTF-8", "Application/JSON", 'application/json; charset="utf-8"'])
def test_json_content_type_variants_are_accepted(content_type):
    assert list(parse_invocation(body(SPLIT), content_type, None).arrays) == IRIS


# ---------------------------------------------------------------- responses, against MLflow


def mlflow_format(predictions, metadata=None) -> bytes:
    out = io.StringIO()
    scoring_server.predictions_to_json(predictions, out, metadata)
    return out.getvalue().encode()


@pytest.mark.parametrize("predictions", [
    np.array([0, 2, 1]),
    np.array([[0.1, np.nan], [np.inf, -np.inf]]),
    np.array([1.5], dtype=np.float32),
    np.array(["a", "b"]),
    np.array([b"\x00bytes", "s", 1], dtype=object),
    pd.DataFrame({"label": [0, 1], "score": [0.25, np.nan], "name": ["a", "b"]}),
    pd.DataFrame({"t": pd.to_datetime(["2024-01-31", "2024-02-01"])}),
    pd.Series([0.5, 1.5]),
    pd.Series([1, 2], name="label"),
    {"a": np.array([1, 2]), "b": np.array([[1.5]]), "c": "text"},
    [np.int64(1), np.float32(0.5), np.bool_(True)],
    np.float64(0.75),
    3,
    "text",
    None,
], ids=["ints", "nan-inf", "float32", "strings", "bytes", "frame", "timestamps", "series", "named-series",
        "dict", "numpy-scalars", "scalar", "int", "str", "none"])
def test_predictions_format_as_mlflow(predictions):
    mine = format_predictions(predictions)
    assert mine == mlflow_format(predictions)
    assert "predictions" in json.loads(mine)


def test_predictions_with_metadata_and_errors_as_mlflow():
    assert format_predictions([1], {"model": "m"}) == mlflow_format([1], {"model": "m"})
    with pytest.raises(InvalidArgument, match="predictions"):
        format_predictions([1], {"predictions": 1})
    with pytest.raises(TypeError):
        format_predictions(object())
    theirs = MlflowException("bad input", error_code=mlflow.protos.databricks_pb2.BAD_REQUEST).serialize_as_json()
    assert error_body("BAD_REQUEST", "bad input") == theirs.encode()


def test_the_other_endpoints_bodies_are_mlflows():
    assert scoring.PING_BODY == b"\n" and scoring.RESPONSE_MEDIA_TYPE == "application/json"
    assert scoring.version_body(mlflow.__version__) == mlflow.__version__.encode()
    assert scoring.CONTENT_TYPES == tuple(sorted(scoring_server.CONTENT_TYPES, key=scoring.CONTENT_TYPES.index))
    assert set(scoring.FORMATS) == scoring_server.SUPPORTED_FORMATS
    assert (scoring.STATUS_UNSUPPORTED_MEDIA_TYPE, scoring.STATUS_BAD_REQUEST) == (415, 400)
