"""The Open Inference Protocol (KServe v2) codecs: gRPC ModelInfer messages and the HTTP/JSON body
(with Triton's binary tensor data extension, which tritonclient.http uses by default) to Payloads,
and model outputs back. Pure functions: no server, no model; every bad input raises InvalidArgument
naming what is wrong and what to send.

API
- `dtype_of(datatype) -> np.dtype`, `datatype_of(dtype or array) -> str`: the datatype mapping.
- `decode_grpc_request(ModelInferRequest) -> Payload`.
- `encode_grpc_response(model_name, model_version, request_id, outputs) -> ModelInferResponse`
  (always `raw_output_contents`: the fast path, and what tritonclient reads first).
- `decode_rest_request(body, json_length) -> RestRequest(payload, binary_outputs)`.
- `encode_rest_response(model_name, model_version, request_id, outputs, binary_outputs)
  -> (body, headers)`.
- `tensor_metadata_from_schema(schema, prefix) -> [(name, datatype, shape)]` for ModelMetadata and
  GET /v2/models/{name}.

Payloads: every input keeps its wire name, `arrays={name: array}` in request order; `kind` is
"tensor" for one input and "columns" for several (the runtime decides by the model's signature);
`id`, `params` (request parameters minus the reserved ones, None when none are left) and
`requested_outputs` (names, empty: all) come from the request.

Arrays decoded from raw bytes (gRPC `raw_input_contents`, REST binary data) are zero-copy views of
the request's buffer and so read-only (except BOOL, normalised to 0/1, and BYTES); copy before
writing into them.

Reserved parameters (RESERVED_PARAMETERS, and any name starting with "triton_") steer the protocol
and never reach the model: Triton's "sequence_id", "sequence_start", "sequence_end", "priority",
"timeout", "headers", "binary_data_output"; the binary extension's "binary_data",
"binary_data_size"; shared memory's "shared_memory_region", "shared_memory_byte_size",
"shared_memory_offset" (not supported: an input naming a region is refused); the classification
extension's "classification" / "class_count" (not supported: refused); MLServer's "content_type".

One job: the Open Inference Protocol's wire formats (gRPC and REST, JSON and binary tensors, both
directions), one codec whose datatype rules both transports share.
"""
from __future__ import annotations

import json
import math
import struct
from typing import NamedTuple

import numpy as np

from mlgrid.inference.v2 import grpc_predict_v2_pb2 as pb
from services.common.errors import FailedPrecondition, InvalidArgument
from services.serving.payload import UNNAMED, Payload

# ---------------------------------------------------------------- datatypes

# Explicitly little-endian: the wire order of raw tensor data.
_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
DATATYPES = tuple(_DTYPES)
_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in _DTYPES.items() if dt.kind in "biuf"}

# The InferTensorContents field that carries each datatype (FP16 has none: raw only), and the wide
# numpy type the field's values arrive in.
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_CONTENTS_FIELDS = tuple(dict.fromkeys(_CONTENTS_FIELD.values()))
_NARROW = {"INT8", "INT16", "UINT8", "UINT16"}  # typed contents wider than the datatype: range-checked

RESERVED_PARAMETERS = frozenset({
    "sequence_id", "sequence_start", "sequence_end", "priority", "timeout", "headers",
    "binary_data_output", "binary_data", "binary_data_size",
    "shared_memory_region", "shared_memory_byte_size", "shared_memory_offset",
    "classification", "class_count",
    "content_type",
})
RESERVED_PREFIX = "triton_"
UNNAMED_OUTPUT = "output-0"  # the wire name of a model's single unnamed output (Payload's UNNAMED key)

_LENGTH = struct.Struct("<I")


def _is_reserved(key: str) -> bool:
    return key in RESERVED_PARAMETERS or key.startswith(RESERVED_PREFIX)


def dtype_of(datatype: str) -> np.dtype:
    """The numpy dtype that holds an OIP datatype (BYTES: object, elements are `bytes`)."""
    try:
        return _DTYPES[datatype]
    except (KeyError, TypeError):
        raise InvalidArgument(f"unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}") from None


def datatype_of(value) -> str:
    """The OIP datatype of a numpy dtype or array: bool → BOOL, ints and floats by kind and size,
    str / bytes / object / datetime64 → BYTES (strings go out utf-8 encoded, datetimes as ISO strings)."""
    try:
        dtype = value.dtype if hasattr(value, "dtype") else np.dtype(value)
    except TypeError:
        raise InvalidArgument(f"{value!r} is not a numpy dtype") from None
    if dtype.kind in "OUSM":
        return "BYTES"
    name = _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise InvalidArgument(
            f"numpy dtype {dtype} has no Open Inference Protocol datatype; use bool, (u)int8-64, "
            "float16/32/64, str, bytes or datetime64"
        )
    return name


# ---------------------------------------------------------------- shared decoding


def _element_count(shape: list, name: str) -> int:
    """The element count of a JSON shape: every dimension an int >= 0."""
    if not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidArgument(
            f"input {name!r} has shape {list(shape)}: every dimension must be an integer >= 0 "
            "(-1 is only for metadata); send the actual size of each dimension"
        )
    return math.prod(shape)


def _grpc_count(shape: list, name: str) -> int:
    """As _element_count for a protobuf shape, whose dimensions are ints already."""
    if shape and min(shape) < 0:
        raise InvalidArgument(
            f"input {name!r} has shape {shape}: every dimension must be >= 0 "
            "(-1 is only for metadata); send the actual size of each dimension"
        )
    return math.prod(shape)


def _count_mismatch(name: str, shape, count: int, received: int, what: str = "values") -> InvalidArgument:
    return InvalidArgument(
        f"input {name!r} has shape {list(shape)}, which holds {count} elements, but {received} {what} "
        f"were sent; send exactly {count} (row-major) or fix the shape"
    )


def _split_bytes(buf, name: str) -> list[bytes]:
    """BYTES raw data: each element prefixed by its 4-byte little-endian length."""
    elements = []
    offset, size = 0, len(buf)
    while offset < size:
        if offset + 4 > size:
            raise InvalidArgument(
                f"BYTES input {name!r}: element {len(elements)} starts at byte {offset} but only "
                f"{size - offset} bytes remain for its 4-byte length prefix; prefix every element "
                "with its length as a 4-byte little-endian integer"
            )
        (length,) = _LENGTH.unpack_from(buf, offset)
        offset += 4
        end = offset + length
        if end > size:
            raise InvalidArgument(
                f"BYTES input {name!r}: element {len(elements)} declares {length} bytes but only "
                f"{size - offset} remain; prefix every element with its own length"
            )
        elements.append(bytes(buf[offset:end]))
        offset = end
    return elements


def _object_array(elements: list, shape) -> np.ndarray:
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(shape)


def _from_raw(buf, datatype: str, shape: list, count: int, name: str) -> np.ndarray:
    """Raw little-endian tensor data (zero-copy for fixed-size datatypes), `count` elements."""
    dtype = _DTYPES.get(datatype)
    if dtype is None:
        dtype_of(datatype)  # raises, naming the datatypes
    if datatype == "BYTES":
        elements = _split_bytes(buf, name)
        if len(elements) != count:
            raise _count_mismatch(name, shape, count, len(elements), "BYTES elements")
        return _object_array(elements, shape)
    size = len(buf)
    if size != count * dtype.itemsize:
        raise InvalidArgument(
            f"input {name!r} ({datatype}, shape {list(shape)}) needs {count} elements = "
            f"{count * dtype.itemsize} bytes of raw data, but {size} bytes "
            f"({size / dtype.itemsize:g} elements) were sent; send {count} elements or fix the shape"
        )
    if datatype == "BOOL":  # one byte each; any non-zero byte is true
        return (np.frombuffer(buf, np.uint8) != 0).reshape(shape)
    return np.frombuffer(buf, dtype).reshape(shape)


def _check_range(array: np.ndarray, datatype: str, name: str) -> None:
    if array.size:
        info = np.iinfo(_DTYPES[datatype])
        low, high = array.min(), array.max()
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidArgument(
                f"input {name!r}: value {bad} does not fit {datatype} (range {info.min}..{info.max}); "
                "send values in range or use a wider datatype"
            )


# ---------------------------------------------------------------- gRPC


def _param_value(parameter):
    which = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, which) if which else None


def _params_of(parameters) -> dict | None:
    params = {key: _param_value(value) for key, value in parameters.items() if not _is_reserved(key)}
    return params or None


def _refuse_unsupported_input(parameters, name: str) -> None:
    if "shared_memory_region" in parameters:
        raise InvalidArgument(
            f"input {name!r} names a shared memory region; this server has no shared memory: "
            "send the data in the request"
        )


def _from_contents(contents, datatype: str, shape, name: str) -> np.ndarray:
    """Typed InferTensorContents: the one field that matches the datatype."""
    dtype = dtype_of(datatype)
    count = _grpc_count(shape, name)
    field = _CONTENTS_FIELD.get(datatype)
    for other in _CONTENTS_FIELDS:
        if other != field and len(getattr(contents, other)):
            where = f"contents.{field} or raw_input_contents" if field else "raw_input_contents"
            raise InvalidArgument(f"input {name!r} is {datatype} but carries its data in contents.{other}; send it in {where}")
    if field is None:  # FP16: no typed field
        if count:
            raise InvalidArgument(f"input {name!r} is {datatype}, which has no typed contents field; send it in raw_input_contents")
        return np.empty(shape, dtype)
    values = list(getattr(contents, field))
    if len(values) != count:
        raise _count_mismatch(name, shape, count, len(values), f"values in contents.{field}")
    if datatype == "BYTES":
        return _object_array(values, shape)
    if datatype in _NARROW:
        array = np.array(values, dtype=np.int64)
        _check_range(array, datatype, name)
        return array.astype(dtype).reshape(shape)
    return np.array(values, dtype=dtype).reshape(shape)


def _refuse_classification(parameters, name: str) -> None:
    if "classification" in parameters and _param_value(parameters["classification"]):
        raise InvalidArgument(f"output {name!r} asks for classification; this server does not support that extension: omit it")


def decode_grpc_request(request: pb.ModelInferRequest) -> Payload:
    """A ModelInferRequest as a Payload: each input from `raw_input_contents` (one entry per input,
    in order) or from its typed `contents` (never both), reshaped to its shape."""
    # Indexing, not iterating: iterating upb repeated fields costs microseconds.
    inputs = request.inputs
    count = len(inputs)
    if not count:
        raise InvalidArgument("the request has no inputs; send at least one tensor in `inputs`")
    raw = request.raw_input_contents
    raw_count = len(raw)
    if raw_count and raw_count != count:
        raise InvalidArgument(
            f"raw_input_contents has {raw_count} entries for {count} inputs; send exactly "
            "one entry per input, in the order of `inputs`"
        )
    arrays: dict[str, np.ndarray] = {}
    for i in range(count):
        tensor = inputs[i]
        name = tensor.name
        if tensor.parameters:
            _refuse_unsupported_input(tensor.parameters, name)
        shape = tensor.shape[:]
        if raw_count:
            if tensor.HasField("contents") and tensor.contents.ByteSize():
                raise InvalidArgument(
                    f"input {name!r} has typed contents while the request also has raw_input_contents; "
                    "send every input's data one way: all raw, or all in contents"
                )
            arrays[name] = _from_raw(raw[i], tensor.datatype, shape, _grpc_count(shape, name), name)
        else:
            arrays[name] = _from_contents(tensor.contents, tensor.datatype, shape, name)
    if len(arrays) != count or UNNAMED in arrays:
        _refuse_names([inputs[i].name for i in range(count)])
    requested = []
    outputs = request.outputs
    for i in range(len(outputs)):
        output = outputs[i]
        if output.parameters:
            _refuse_classification(output.parameters, output.name)
        requested.append(output.name)
    return Payload(
        arrays,
        _params_of(request.parameters) if request.parameters else None,
        "columns" if count > 1 else "tensor",
        None,
        request.id,
        requested,
    )


def _refuse_names(names: list[str]) -> None:
    """Raise for an empty or a repeated input name."""
    if "" in names:
        raise InvalidArgument("an input has no name; give every input a name")
    seen = [n for i, n in enumerate(names) if n in names[:i]]
    raise InvalidArgument(f"input {seen[0]!r} appears more than once; give every input a distinct name")


def _wire_array(value, name: str) -> tuple[np.ndarray, str]:
    """An output as an array the wire can carry, and its datatype. Object arrays holding no strings
    (e.g. python ints from pandas) go out as their numeric type, the rest as BYTES."""
    array = np.asarray(value)
    if array.dtype.kind == "O" and array.size:
        if not any(isinstance(v, (str, bytes, bytearray, memoryview)) for v in array.flat):
            try:
                converted = np.array(array.tolist())
            except (ValueError, TypeError, OverflowError):
                converted = array
            if converted.dtype.kind in "biuf" and converted.shape == array.shape:
                array = converted
    try:
        datatype = datatype_of(array.dtype)
    except InvalidArgument as e:
        raise FailedPrecondition(f"model output {name!r}: {e.message}") from None
    if datatype != "BYTES" and array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array, datatype


def _bytes_elements(array: np.ndarray) -> list[bytes]:
    flat = array.ravel()
    kind = array.dtype.kind
    if kind == "S":
        return flat.tolist()
    if kind == "U":
        return [s.encode() for s in flat.tolist()]
    if kind == "M":
        return [s.encode() for s in np.datetime_as_string(flat).tolist()]
    out = []
    for v in flat.tolist():
        if isinstance(v, bytes):
            out.append(v)
        elif isinstance(v, str):
            out.append(v.encode())
        elif isinstance(v, (bytearray, memoryview)):
            out.append(bytes(v))
        elif isinstance(v, np.datetime64):
            out.append(np.datetime_as_string(v).encode())
        else:
            out.append(str(v).encode())
    return out


def _raw_bytes(array: np.ndarray, datatype: str) -> bytes:
    if datatype != "BYTES":
        return array.tobytes()
    parts = []
    for element in _bytes_elements(array):
        parts.append(_LENGTH.pack(len(element)))
        parts.append(element)
    return b"".join(parts)


def encode_grpc_response(model_name: str, model_version, request_id: str, outputs: dict[str, np.ndarray]) -> pb.ModelInferResponse:
    """Outputs as a ModelInferResponse: per output its name, datatype and shape, and its data in
    raw_output_contents (same order). The UNNAMED key goes out as "output-0"."""
    response = pb.ModelInferResponse(
        model_name=model_name, model_version="" if model_version is None else str(model_version), id=request_id
    )
    tensors, raw = response.outputs, response.raw_output_contents
    for name, value in outputs.items():
        array, datatype = _wire_array(value, name)
        tensors.add(name=name or UNNAMED_OUTPUT, datatype=datatype, shape=array.shape)
        raw.append(_raw_bytes(array, datatype))
    return response


# ---------------------------------------------------------------- REST (HTTP/JSON + binary extension)


class RestRequest(NamedTuple):
    """A decoded REST inference request. `binary_outputs`: True → every output as binary data; a
    frozenset → those outputs binary and the rest JSON (when the request lists outputs, exactly the
    listed ones are answered, so the set is exact); False → all JSON. Pass it to encode_rest_response."""

    payload: Payload
    binary_outputs: frozenset[str] | bool


def _json_error(what: str) -> InvalidArgument:
    return InvalidArgument(
        f"{what}; send a JSON object {{\"inputs\": [{{\"name\", \"shape\", \"datatype\", \"data\"}}, ...]}} "
        "(binary tensor data after it, with the JSON's length in the Inference-Header-Content-Length header)"
    )


def _parse_json(header) -> object:
    try:
        return json.loads(header)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise _json_error(f"the request's JSON is malformed ({e})") from None


def _flatten_strings(data, out: list, name: str) -> None:
    if isinstance(data, str):
        out.append(data.encode())
    elif isinstance(data, list):
        for item in data:
            _flatten_strings(item, out, name)
    else:
        raise InvalidArgument(f"BYTES input {name!r}: data holds {data!r}; BYTES data must be strings (or nested lists of them)")


_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}  # datatype kind → accepted JSON value kinds
_JSON_VALUES = {  # datatype kind → what to send, python types of such JSON values
    "b": ("true/false", (bool,)), "i": ("integers", (int,)), "u": ("integers", (int,)), "f": ("numbers", (int, float)),
}


def _from_json(data, datatype: str, shape, name: str) -> np.ndarray:
    dtype = dtype_of(datatype)
    count = _element_count(shape, name)
    if datatype == "BYTES":
        elements: list[bytes] = []
        _flatten_strings(data, elements, name)
        if len(elements) != count:
            raise _count_mismatch(name, shape, count, len(elements))
        return _object_array(elements, shape)
    try:
        array = np.asarray(data)
    except (ValueError, OverflowError) as e:
        raise InvalidArgument(f"input {name!r}: data is not a flat or regularly nested list of numbers ({e})") from None
    if array.size != count:
        raise _count_mismatch(name, shape, count, array.size)
    if dtype.kind in "iu" and array.dtype.kind in "fO":
        # numpy infers float64 (lossy) or object for ints beyond int64 mixed with others: convert exactly
        flat = np.array(data, dtype=object).ravel().tolist()
        if all(type(v) is int for v in flat):
            try:
                return np.array(flat, dtype=dtype).reshape(shape)
            except OverflowError:
                raise InvalidArgument(
                    f"input {name!r}: a value does not fit {datatype}; send values in range or use a wider datatype"
                ) from None
    if count and array.dtype.kind not in _JSON_KINDS[dtype.kind]:
        expected, accepted = _JSON_VALUES[dtype.kind]
        flat = np.array(data, dtype=object).ravel().tolist()
        bad = next((v for v in flat if type(v) not in accepted), flat[0])
        raise InvalidArgument(f"input {name!r} is {datatype} but its data holds {json.dumps(bad)}; send {expected}")
    if dtype.kind in "iu" and array.dtype != dtype:
        _check_range(array, datatype, name)
    return array.astype(dtype, copy=False).reshape(shape)


def _field(obj: dict, key: str, kind: type, what: str, default=None):
    """obj[key] checked to be a `kind`; absent or null: default."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise _json_error(f"{what} {key!r} is {value!r}")
    return value


def decode_rest_request(body: bytes, json_length: int | str | None = None) -> RestRequest:
    """An OIP REST request body. `json_length`: the Inference-Header-Content-Length header (int or
    its string), None when the whole body is JSON. Inputs whose parameters carry
    `binary_data_size` take that many bytes, in input order, from the body after the JSON."""
    if json_length is None:
        header, binary = body, memoryview(b"")
    else:
        try:
            json_length = int(json_length)
        except (TypeError, ValueError):
            raise InvalidArgument(f"Inference-Header-Content-Length is {json_length!r}; send the JSON header's length in bytes") from None
        if not 0 <= json_length <= len(body):
            raise InvalidArgument(
                f"Inference-Header-Content-Length is {json_length} but the body has {len(body)} bytes; "
                "send the length of the JSON part of the body"
            )
        header, binary = body[:json_length], memoryview(body)[json_length:]
    doc = _parse_json(header)
    if not isinstance(doc, dict):
        raise _json_error("the request's JSON is not an object")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _json_error("the request has no \"inputs\" list")
    request_id = _field(doc, "id", str, "request", "")
    parameters = _field(doc, "parameters", dict, "request", None) or {}

    arrays: dict[str, np.ndarray] = {}
    names = []
    offset = 0
    for spec in inputs:
        if not isinstance(spec, dict):
            raise _json_error(f"input {spec!r} is not an object")
        name = _field(spec, "name", str, "input", None)
        if not name:
            raise _json_error("an input has no \"name\"")
        datatype = _field(spec, "datatype", str, f"input {name!r}", None)
        shape = _field(spec, "shape", list, f"input {name!r}", None)
        if datatype is None or shape is None:
            raise _json_error(f"input {name!r} lacks \"datatype\" or \"shape\"")
        input_params = _field(spec, "parameters", dict, f"input {name!r}", None) or {}
        _refuse_unsupported_input(input_params, name)
        size = input_params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0:
                raise InvalidArgument(f"input {name!r}: binary_data_size is {size!r}; send the byte count of its binary data")
            if "data" in spec:
                raise InvalidArgument(f"input {name!r} has both \"data\" and binary_data_size; send its data one way")
            if json_length is None:
                raise InvalidArgument(
                    f"input {name!r} has binary_data_size but the request has no Inference-Header-Content-Length "
                    "header; send the JSON's length in that header, binary data after the JSON"
                )
            if offset + size > len(binary):
                raise InvalidArgument(
                    f"input {name!r}: binary_data_size {size} at offset {offset} runs past the end of the "
                    f"binary data ({len(binary)} bytes after the JSON); check the sizes and the header length"
                )
            dtype_of(datatype)
            arrays[name] = _from_raw(binary[offset:offset + size], datatype, shape, _element_count(shape, name), name)
            offset += size
        else:
            if "data" not in spec:
                raise _json_error(f"input {name!r} has neither \"data\" nor parameters.binary_data_size")
            arrays[name] = _from_json(spec["data"], datatype, shape, name)
        names.append(name)
    if offset != len(binary):
        raise InvalidArgument(
            f"the body has {len(binary) - offset} bytes after the inputs' binary data; "
            "check binary_data_size of each input and the Inference-Header-Content-Length header"
        )
    if len(arrays) != len(names):
        _refuse_names(names)

    binary_all = parameters.get("binary_data_output", False)
    if not isinstance(binary_all, bool):
        raise InvalidArgument(f"parameter binary_data_output is {binary_all!r}; send true or false")
    outputs = _field(doc, "outputs", list, "request", None) or []
    requested, binary_set = [], set()
    for spec in outputs:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _json_error(f"requested output {spec!r} has no \"name\"")
        name = spec["name"]
        output_params = _field(spec, "parameters", dict, f"output {name!r}", None) or {}
        if output_params.get("class_count"):
            raise InvalidArgument(f"output {name!r} asks for class_count; this server does not support classification: omit it")
        wants_binary = output_params.get("binary_data", binary_all)
        if not isinstance(wants_binary, bool):
            raise InvalidArgument(f"output {name!r}: binary_data is {wants_binary!r}; send true or false")
        if wants_binary:
            binary_set.add(name)
        requested.append(name)
    payload = Payload(
        arrays,
        params={k: v for k, v in parameters.items() if not _is_reserved(k)} or None,
        kind="columns" if len(arrays) > 1 else "tensor",
        id=request_id,
        requested_outputs=requested,
    )
    return RestRequest(payload, frozenset(binary_set) if outputs else binary_all)


def _json_data(array: np.ndarray, datatype: str, name: str) -> list:
    if datatype != "BYTES":
        return array.ravel().tolist()
    try:
        return [element.decode() for element in _bytes_elements(array)]
    except UnicodeDecodeError:
        raise InvalidArgument(f"output {name!r} holds bytes that are not UTF-8, which JSON cannot carry; request it with \"binary_data\": true") from None


def encode_rest_response(
    model_name: str, model_version, request_id: str, outputs: dict[str, np.ndarray], binary_outputs: frozenset[str] | set[str] | bool = False
) -> tuple[bytes, dict[str, str]]:
    """Outputs as an OIP REST response body and its extra headers. Outputs named in
    `binary_outputs` (all when True) go as binary data after the JSON, with
    parameters.binary_data_size; then Content-Type is application/octet-stream and
    Inference-Header-Content-Length the JSON's length. Otherwise JSON only (flat row-major
    data; BYTES as utf-8 strings), Content-Type application/json. The UNNAMED key goes out as "output-0"."""
    entries, blobs = [], []
    for name, value in outputs.items():
        array, datatype = _wire_array(value, name)
        wire_name = name or UNNAMED_OUTPUT
        entry = {"name": wire_name, "datatype": datatype, "shape": list(array.shape)}
        if binary_outputs is True or (binary_outputs and (name in binary_outputs or wire_name in binary_outputs)):
            blob = _raw_bytes(array, datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(array, datatype, wire_name)
        entries.append(entry)
    doc = {"model_name": model_name}
    if model_version not in (None, ""):
        doc["model_version"] = str(model_version)
    if request_id:
        doc["id"] = request_id
    doc["outputs"] = entries
    header = json.dumps(doc, separators=(",", ":")).encode()
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }


# ---------------------------------------------------------------- metadata

_COLUMN_DATATYPES = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


def tensor_metadata_from_schema(schema, prefix: str = "input") -> list[tuple[str, str, list[int]]]:
    """A signature Schema as OIP tensor metadata [(name, datatype, shape)]: each column a 1-D
    tensor of shape [-1] (structured column types as BYTES), each TensorSpec its dtype and shape.
    Unnamed entries are called f"{prefix}-0", f"{prefix}-1"... (prefix "input" or "output")."""
    if schema is None:
        return []
    metadata = []
    for i, spec in enumerate(schema.inputs):
        name = spec.name if spec.name is not None else f"{prefix}-{i}"
        if hasattr(spec, "dtype"):  # TensorSpec
            metadata.append((name, datatype_of(spec.dtype), [int(d) for d in spec.shape]))
        else:
            kind = spec.type if isinstance(spec.type, str) else None
            metadata.append((name, _COLUMN_DATATYPES.get(kind, "BYTES"), [-1]))
    return metadata


__all__ = [
    "DATATYPES", "RESERVED_PARAMETERS", "RESERVED_PREFIX", "UNNAMED_OUTPUT", "RestRequest",
    "dtype_of", "datatype_of", "decode_grpc_request", "encode_grpc_response",
    "decode_rest_request", "encode_rest_response", "tensor_metadata_from_schema",
]
