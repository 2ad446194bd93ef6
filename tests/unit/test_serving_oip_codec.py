"""The Open Inference Protocol codecs: every datatype through typed contents, raw contents, REST
JSON and REST binary data, both directions; bad input as InvalidArgument; and a cross-check with
the stock client (tritonclient, in a subprocess: it registers the same protobuf symbols)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mlgrid.inference.v2 import grpc_predict_v2_pb2 as pb
from mlgrid.models.signature import ColSpec, Schema, TensorSpec
from services.common.errors import FailedPrecondition, InvalidArgument
from services.serving.codecs import oip
from services.serving.codecs.oip import (
    decode_grpc_request,
    decode_rest_request,
    encode_grpc_response,
    encode_rest_response,
)

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "oip_tritonclient_requests.py")


def _ints(dtype):
    info = np.iinfo(dtype)
    return np.array([[info.min, 0, 1], [7, info.max - 1, info.max]], dtype=dtype)


SAMPLES = {
    "BOOL": np.array([[True, False], [False, True]]),
    **{name: _ints(name.lower()) for name in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")},
    "FP16": np.array([0.5, -2.0, 65504.0, np.inf], dtype=np.float16),
    "FP32": (np.arange(8, dtype=np.float32).reshape(2, 4) / 3).astype(np.float32),
    "FP64": np.array([[1e-300, -2.5, np.pi]]),
    "BYTES": np.array([b"", "h\u00e9llo \u2603".encode(), b"\x00\xff", b"plain"], dtype=object).reshape(2, 2),
}
TEXT_BYTES = np.array([b"", "h\u00e9llo \u2603".encode(), b"plain"], dtype=object)  # what JSON can carry
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def assert_same(got: np.ndarray, expected: np.ndarray):
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    if got.dtype == object:
        assert got.ravel().tolist() == expected.ravel().tolist()
    else:
        np.testing.assert_array_equal(got, expected)


def bytes_raw(elements) -> bytes:
    return b"".join(len(e).to_bytes(4, "little") + e for e in elements)


def raw_of(array: np.ndarray) -> bytes:
    return bytes_raw(array.ravel().tolist()) if array.dtype == object else array.tobytes()


def grpc_request(inputs: dict, *, raw=True, **fields) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m", **fields)
    for name, (datatype, array) in inputs.items():
        tensor = request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            request.raw_input_contents.append(raw_of(array))
        else:
            getattr(tensor.contents, CONTENTS_FIELD[datatype]).extend(array.ravel().tolist())
    return request


def rest_body(inputs: list[dict], binary: bytes = b"", **fields) -> tuple[bytes, int | None]:
    header = json.dumps({"inputs": inputs, **fields}).encode()
    return (header + binary, len(header)) if binary else (header, None)


# ---------------------------------------------------------------- datatypes


@pytest.mark.parametrize("datatype", oip.DATATYPES)
def test_datatype_mapping_round_trips(datatype):
    assert oip.datatype_of(oip.dtype_of(datatype)) == datatype
    assert oip.datatype_of(SAMPLES[datatype]) == datatype


def test_strings_bytes_datetimes_are_bytes_and_the_rest_is_refused():
    for value in (np.array(["a", "b"]), np.array([b"a"]), np.array(["a", None], dtype=object),
                  np.array(["2024-01-02"], dtype="datetime64[ns]"), np.dtype(object), np.dtype("U3")):
        assert oip.datatype_of(value) == "BYTES"
    assert oip.datatype_of(np.dtype(">i4")) == "INT32"
    with pytest.raises(InvalidArgument, match="complex128 has no Open Inference Protocol datatype"):
        oip.datatype_of(np.array([1j]))
    with pytest.raises(InvalidArgument, match="unknown datatype 'FLOAT32'; use one of BOOL, UINT8"):
        oip.dtype_of("FLOAT32")


# ---------------------------------------------------------------- gRPC


@pytest.mark.parametrize("datatype", [d for d in oip.DATATYPES if d != "FP16"])  # FP16 has no typed field
def test_grpc_typed_contents_decode_every_datatype(datatype):
    payload = decode_grpc_request(grpc_request({"x": (datatype, SAMPLES[datatype])}, raw=False))
    assert payload.kind == "tensor" and list(payload.arrays) == ["x"]
    assert_same(payload.arrays["x"], SAMPLES[datatype].astype(oip.dtype_of(datatype)))


@pytest.mark.parametrize("datatype", oip.DATATYPES)
def test_grpc_raw_contents_decode_every_datatype(datatype):
    payload = decode_grpc_request(grpc_request({"x": (datatype, SAMPLES[datatype])}))
    assert_same(payload.arrays["x"], SAMPLES[datatype])


@pytest.mark.parametrize("datatype", oip.DATATYPES)
def test_grpc_response_carries_every_datatype_raw(datatype):
    array = SAMPLES[datatype]
    response = encode_grpc_response("m", 3, "req-9", {"y": array})
    assert (response.model_name, response.model_version, response.id) == ("m", "3", "req-9")
    (tensor,) = response.outputs
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("y", datatype, list(array.shape))
    assert response.raw_output_contents[0] == raw_of(array)
    # and the decoder reads it back
    echo = pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(name="y", datatype=datatype, shape=tensor.shape)],
                                raw_input_contents=response.raw_output_contents)
    assert_same(decode_grpc_request(echo).arrays["y"], array)


def test_grpc_request_fields_reach_the_payload_without_reserved_parameters():
    request = grpc_request({"a": ("FP32", SAMPLES["FP32"]), "b": ("BYTES", SAMPLES["BYTES"][0])}, id="r1")
    request.outputs.add(name="proba")
    request.outputs.add(name="label")
    for key, field, value in [("temperature", "double_param", 0.5), ("n", "int64_param", -3), ("tag", "string_param", "x"),
                              ("flag", "bool_param", True), ("big", "uint64_param", 2**64 - 1), ("priority", "uint64_param", 1),
                              ("binary_data_output", "bool_param", True), ("content_type", "string_param", "np"),
                              ("triton_enable_empty_final_response", "bool_param", True)]:
        setattr(request.parameters[key], field, value)
    payload = decode_grpc_request(request)
    assert payload.kind == "columns" and list(payload.arrays) == ["a", "b"]
    assert payload.id == "r1" and payload.requested_outputs == ["proba", "label"]
    assert payload.params == {"temperature": 0.5, "n": -3, "tag": "x", "flag": True, "big": 2**64 - 1}
    assert payload.rows == 2


def test_grpc_raw_arrays_are_zero_copy_views_and_bool_is_normalised():
    request = grpc_request({"x": ("FP32", SAMPLES["FP32"])})
    array = decode_grpc_request(request).arrays["x"]
    assert not array.flags.owndata and not array.flags.writeable
    weird = pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(name="b", datatype="BOOL", shape=[3])],
                                 raw_input_contents=[b"\x00\x02\x01"])
    assert decode_grpc_request(weird).arrays["b"].view(np.uint8).tolist() == [0, 1, 1]


def test_grpc_empty_tensors_and_scalars():
    request = grpc_request({"e": ("FP32", np.zeros((0, 4), np.float32)), "s": ("BYTES", np.empty((0,), object)),
                            "k": ("INT64", np.array(5))})
    arrays = decode_grpc_request(request).arrays
    assert arrays["e"].shape == (0, 4) and arrays["s"].shape == (0,) and arrays["k"].shape == () and arrays["k"] == 5
    fp16 = pb.ModelInferRequest(inputs=[pb.ModelInferRequest.InferInputTensor(name="h", datatype="FP16", shape=[0])])
    assert decode_grpc_request(fp16).arrays["h"].dtype == np.float16


def test_encoders_name_the_unnamed_output_and_convert_object_numbers():
    from services.serving.payload import UNNAMED

    response = encode_grpc_response("m", "", "", {UNNAMED: np.array([1, 2], dtype=object),
                                                  "when": np.array(["2024-01-02T03:04:05"], dtype="datetime64[s]"),
                                                  "mixed": np.array(["a", 1], dtype=object)})
    assert [(o.name, o.datatype) for o in response.outputs] == [("output-0", "INT64"), ("when", "BYTES"), ("mixed", "BYTES")]
    assert response.raw_output_contents[1] == bytes_raw([b"2024-01-02T03:04:05"])
    assert response.raw_output_contents[2] == bytes_raw([b"a", b"1"])
    with pytest.raises(FailedPrecondition, match="model output 'c': numpy dtype complex128"):
        encode_grpc_response("m", "", "", {"c": np.array([1j])})


def _bad_grpc(mutate) -> pb.ModelInferRequest:
    request = grpc_request({"x": ("FP32", SAMPLES["FP32"]), "s": ("BYTES", SAMPLES["BYTES"])})
    mutate(request)
    return request


def _typed(datatype, shape, field, values):
    request = pb.ModelInferRequest()
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return request


@pytest.mark.parametrize("request_, message", [
    (pb.ModelInferRequest(), "the request has no inputs"),
    (_bad_grpc(lambda r: r.inputs[0].shape.__setitem__(0, 3)),
     r"input 'x' \(FP32, shape \[3, 4\]\) needs 12 elements = 48 bytes of raw data, but 32 bytes \(8 elements\) were sent"),
    (_bad_grpc(lambda r: r.inputs[0].shape.__setitem__(0, -1)), r"input 'x' has shape \[-1, 4\]: every dimension must be >= 0"),
    (_bad_grpc(lambda r: setattr(r.inputs[0], "datatype", "FLOAT")), "unknown datatype 'FLOAT'; use one of BOOL"),
    (_bad_grpc(lambda r: r.raw_input_contents.pop()), "raw_input_contents has 1 entries for 2 inputs; send exactly one entry per input"),
    (_bad_grpc(lambda r: r.inputs[1].contents.bytes_contents.append(b"a")),
     "input 's' has typed contents while the request also has raw_input_contents"),
    (_bad_grpc(lambda r: r.raw_input_contents.__setitem__(1, b"\x01\x00\x00\x00a\x02\x00")),
     "BYTES input 's': element 1 starts at byte 5 but only 2 bytes remain for its 4-byte length prefix"),
    (_bad_grpc(lambda r: r.raw_input_contents.__setitem__(1, b"\x09\x00\x00\x00abc")),
     "BYTES input 's': element 0 declares 9 bytes but only 3 remain"),
    (_bad_grpc(lambda r: r.raw_input_contents.__setitem__(1, bytes_raw([b"a"] * 3))),
     r"input 's' has shape \[2, 2\], which holds 4 elements, but 3 BYTES elements were sent"),
    (_bad_grpc(lambda r: setattr(r.inputs[1], "name", "x")), "input 'x' appears more than once"),
    (_bad_grpc(lambda r: setattr(r.inputs[1], "name", "")), "an input has no name"),
    (_bad_grpc(lambda r: r.inputs[0].parameters["shared_memory_region"].__setattr__("string_param", "r")),
     "input 'x' names a shared memory region"),
    (_bad_grpc(lambda r: r.outputs.add(name="y").parameters["classification"].__setattr__("int64_param", 3)),
     "output 'y' asks for classification"),
    (_typed("INT32", [2, 2], "int_contents", [1, 2, 3]),
     r"input 'x' has shape \[2, 2\], which holds 4 elements, but 3 values in contents.int_contents were sent"),
    (_typed("FP32", [2], "fp64_contents", [1.0, 2.0]), "input 'x' is FP32 but carries its data in contents.fp64_contents; send it in contents.fp32_contents"),
    (_typed("INT8", [2], "int_contents", [1, 200]), r"input 'x': value 200 does not fit INT8 \(range -128..127\)"),
    (_typed("UINT16", [1], "uint_contents", [70000]), "value 70000 does not fit UINT16"),
    (_typed("FP16", [1], "fp32_contents", [1.0]), "input 'x' is FP16 but carries its data in contents.fp32_contents; send it in raw_input_contents"),
    (_typed("FP16", [1], "bool_contents", []), "input 'x' is FP16, which has no typed contents field; send it in raw_input_contents"),
])
def test_bad_grpc_requests_are_invalid_argument_with_a_useful_message(request_, message):
    with pytest.raises(InvalidArgument, match=message):
        decode_grpc_request(request_)


# ---------------------------------------------------------------- REST


def _json_value(array: np.ndarray):
    if array.dtype == object:
        return [e.decode() for e in array.ravel().tolist()]
    return array.tolist()  # nested


@pytest.mark.parametrize("datatype", oip.DATATYPES)
def test_rest_json_decode_every_datatype(datatype):
    array = TEXT_BYTES if datatype == "BYTES" else SAMPLES[datatype]
    body, _ = rest_body([{"name": "x", "shape": list(array.shape), "datatype": datatype, "data": _json_value(array)}])
    payload, binary = decode_rest_request(body, None)
    assert binary is False and payload.kind == "tensor"
    assert_same(payload.arrays["x"], array)


@pytest.mark.parametrize("datatype", oip.DATATYPES)
def test_rest_binary_decode_every_datatype(datatype):
    array = SAMPLES[datatype]
    data = raw_of(array)
    body, length = rest_body([{"name": "t", "shape": [1], "datatype": "INT32", "data": [7]},
                              {"name": "x", "shape": list(array.shape), "datatype": datatype, "parameters": {"binary_data_size": len(data)}},
                              {"name": "z", "shape": [1], "datatype": "INT8", "parameters": {"binary_data_size": 1}}], data + b"\x05")
    payload, _ = decode_rest_request(body, str(length))
    assert payload.kind == "columns" and list(payload.arrays) == ["t", "x", "z"]
    assert_same(payload.arrays["x"], array)
    assert payload.arrays["t"].tolist() == [7] and payload.arrays["z"].tolist() == [5]


@pytest.mark.parametrize("datatype", oip.DATATYPES)
def test_rest_response_json_and_binary_carry_every_datatype(datatype):
    array = TEXT_BYTES if datatype == "BYTES" else SAMPLES[datatype]
    body, headers = encode_rest_response("m", 1, "r", {"y": array}, False)
    assert headers == {"Content-Type": "application/json"}
    doc = json.loads(body)
    assert doc == {"model_name": "m", "model_version": "1", "id": "r", "outputs": [
        {"name": "y", "datatype": datatype, "shape": list(array.shape), "data": json.loads(json.dumps(_json_flat(array)))}]}
    back, _ = decode_rest_request(json.dumps({"inputs": doc["outputs"]}).encode(), None)
    assert_same(back.arrays["y"], array)

    body, headers = encode_rest_response("m", "", "", {"y": SAMPLES[datatype]}, True)
    assert headers["Content-Type"] == "application/octet-stream"
    length = int(headers["Inference-Header-Content-Length"])
    doc = json.loads(body[:length])
    assert "id" not in doc and "model_version" not in doc
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": len(raw_of(SAMPLES[datatype]))}
    assert body[length:] == raw_of(SAMPLES[datatype])
    back, _ = decode_rest_request(json.dumps({"inputs": doc["outputs"]}).encode() + body[length:],
                                  len(json.dumps({"inputs": doc["outputs"]})))
    assert_same(back.arrays["y"], SAMPLES[datatype])


def _json_flat(array):
    return _json_value(array) if array.dtype == object else array.ravel().tolist()


def test_rest_binary_outputs_follow_outputs_and_binary_data_output():
    inputs = [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]
    assert decode_rest_request(rest_body(inputs)[0]).binary_outputs is False
    assert decode_rest_request(rest_body(inputs, parameters={"binary_data_output": True})[0]).binary_outputs is True
    listed = rest_body(inputs, outputs=[{"name": "a"}, {"name": "b", "parameters": {"binary_data": True}}])[0]
    assert decode_rest_request(listed) == (decode_rest_request(listed).payload, frozenset({"b"}))
    overridden = rest_body(inputs, parameters={"binary_data_output": True, "k": "v"},
                           outputs=[{"name": "a", "parameters": {"binary_data": False}}, {"name": "b"}])[0]
    payload, binary = decode_rest_request(overridden)
    assert binary == {"b"} and payload.requested_outputs == ["a", "b"] and payload.params == {"k": "v"}

    body, headers = encode_rest_response("m", "1", "", {"a": np.array([1.5]), "b": np.array([b"\xff"], dtype=object)}, binary)
    length = int(headers["Inference-Header-Content-Length"])
    assert json.loads(body[:length])["outputs"] == [
        {"name": "a", "datatype": "FP64", "shape": [1], "data": [1.5]},
        {"name": "b", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 5}}]
    assert body[length:] == b"\x01\x00\x00\x00\xff"


def test_rest_request_fields_and_nested_or_flat_data():
    body, _ = rest_body([{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
                         {"name": "s", "shape": [2, 1], "datatype": "BYTES", "data": [["\u00e9"], [""]]}],
                        id="abc", parameters={"priority": 1, "threshold": 0.3, "content_type": "pd"})
    payload, _ = decode_rest_request(body)
    assert payload.id == "abc" and payload.params == {"threshold": 0.3}
    assert payload.arrays["x"].tolist() == [[1, 2], [3, 4]]
    assert payload.arrays["s"].tolist() == [["\u00e9".encode()], [b""]]


def test_rest_bytes_output_that_is_not_utf8_must_be_asked_binary():
    with pytest.raises(InvalidArgument, match="output 'b' holds bytes that are not UTF-8.*\"binary_data\": true"):
        encode_rest_response("m", "", "", {"b": np.array([b"\xff"], dtype=object)}, False)


X = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]}


def with_binary(name, datatype, shape, size, tail) -> tuple[bytes, int]:
    header = json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}]})
    return header.encode() + tail, len(header)


@pytest.mark.parametrize("body, length, message", [
    (b'{"inputs": [', None, r"the request's JSON is malformed \(Expecting value: line 1 column 13"),
    (b"\xff\xfe", None, "the request's JSON is malformed"),
    (b"[1]", None, "the request's JSON is not an object"),
    (b'{"inputs": []}', None, 'the request has no "inputs" list'),
    (json.dumps({"inputs": [dict(X, shape=[3])]}).encode(), None,
     r"input 'x' has shape \[3\], which holds 3 elements, but 2 values were sent"),
    (json.dumps({"inputs": [dict(X, shape=[-1, 2])]}).encode(), None, r"input 'x' has shape \[-1, 2\]: every dimension must be an integer >= 0"),
    (json.dumps({"inputs": [dict(X, shape=[2.0])]}).encode(), None, r"every dimension must be an integer >= 0"),
    (json.dumps({"inputs": [dict(X, datatype="DOUBLE")]}).encode(), None, "unknown datatype 'DOUBLE'"),
    (json.dumps({"inputs": [dict(X, data=[[1], [2, 3]])]}).encode(), None, "input 'x': data is not a flat or regularly nested list"),
    (json.dumps({"inputs": [dict(X, data=["a", "b"])]}).encode(), None, "input 'x' is FP32 but its data holds \"a\"; send numbers"),
    (json.dumps({"inputs": [dict(X, data=[1, None])]}).encode(), None, "input 'x' is FP32 but its data holds null; send numbers"),
    (json.dumps({"inputs": [dict(X, datatype="UINT64", data=[-1, 2**64 - 1])]}).encode(), None, "a value does not fit UINT64"),
    (json.dumps({"inputs": [dict(X, datatype="INT64", data=[2**63, 2**64])]}).encode(), None, "a value does not fit INT64"),
    (json.dumps({"inputs": [dict(X, datatype="INT8", data=[1, 300])]}).encode(), None, "value 300 does not fit INT8"),
    (json.dumps({"inputs": [dict(X, datatype="INT32", data=[1.5, 2])]}).encode(), None, "is INT32 but its data holds 1.5; send integers"),
    (json.dumps({"inputs": [dict(X, datatype="BOOL", data=[1, 0])]}).encode(), None, "is BOOL but its data holds 1; send true/false"),
    (json.dumps({"inputs": [dict(X, datatype="BYTES", data=["a", 1])]}).encode(), None, "BYTES data must be strings"),
    (json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32"}]}).encode(), None,
     "input 'x' has neither \"data\" nor parameters.binary_data_size"),
    (json.dumps({"inputs": [X, X]}).encode(), None, "input 'x' appears more than once"),
    (json.dumps({"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}).encode(), None, 'an input has no "name"'),
    (json.dumps({"inputs": [X], "id": 5}).encode(), None, "request 'id' is 5"),
    (json.dumps({"inputs": [X], "parameters": {"binary_data_output": "yes"}}).encode(), None, "binary_data_output is 'yes'; send true or false"),
    (json.dumps({"inputs": [X], "outputs": [{"name": "y", "parameters": {"class_count": 2}}]}).encode(), None, "does not support classification"),
    (*with_binary("x", "FP32", [2], 8, b"\0" * 4),
     "input 'x': binary_data_size 8 at offset 0 runs past the end of the binary data \\(4 bytes after the JSON\\)"),
    (*with_binary("x", "FP32", [2], 8, b"\0" * 9), "the body has 1 bytes after the inputs' binary data"),
    (with_binary("x", "FP32", [2], 8, b"")[0], None,
     "input 'x' has binary_data_size but the request has no Inference-Header-Content-Length header"),
    (*with_binary("x", "FP32", [3], 8, b"\0" * 8), r"input 'x' \(FP32, shape \[3\]\) needs 3 elements = 12 bytes of raw data, but 8 bytes"),
    (*with_binary("s", "BYTES", [1], 2, b"\1\0"),
     "BYTES input 's': element 0 starts at byte 0 but only 2 bytes remain for its 4-byte length prefix"),
    (*with_binary("x", "FP32", [2], -8, b""), "input 'x': binary_data_size is -8; send the byte count"),
    (b"{}", 10, "Inference-Header-Content-Length is 10 but the body has 2 bytes"),
    (b"{}", "ten", "Inference-Header-Content-Length is 'ten'"),
])
def test_bad_rest_requests_are_invalid_argument_with_a_useful_message(body, length, message):
    with pytest.raises(InvalidArgument, match=message):
        decode_rest_request(body, length)


# ---------------------------------------------------------------- metadata


def test_tensor_metadata_from_column_and_tensor_schemas():
    columns = Schema((ColSpec("double", "sepal"), ColSpec("long", "n"), ColSpec("string", "s"), ColSpec("boolean", "b"),
                      ColSpec({"type": "array", "items": {"type": "long"}}, "arr")))
    assert oip.tensor_metadata_from_schema(columns) == [
        ("sepal", "FP64", [-1]), ("n", "INT64", [-1]), ("s", "BYTES", [-1]), ("b", "BOOL", [-1]), ("arr", "BYTES", [-1])]
    tensors = Schema((TensorSpec(np.dtype("float32"), (-1, 4)), TensorSpec(np.dtype("int64"), (-1,))))
    assert oip.tensor_metadata_from_schema(tensors, "output") == [("output-0", "FP32", [-1, 4]), ("output-1", "INT64", [-1])]
    assert oip.tensor_metadata_from_schema(Schema((ColSpec("float"),))) == [("input-0", "FP32", [-1])]
    assert oip.tensor_metadata_from_schema(None) == []


# ---------------------------------------------------------------- the stock client


def _run_helper(mode: str, folder) -> None:
    done = subprocess.run([sys.executable, HELPER, mode, str(folder)], capture_output=True, text=True, timeout=60)
    if done.returncode == 77:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def tritonclient_requests(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oip_requests")
    _run_helper("requests", folder)
    with open(folder / "requests.json") as f:
        return folder, json.load(f)["cases"]


def test_requests_built_by_tritonclient_decode(tritonclient_requests):
    folder, cases = tritonclient_requests
    assert {c["name"] for c in cases} >= {"grpc_fp32", "grpc_every_datatype", "http_binary", "http_json", "http_mixed"}
    for case in cases:
        body = (folder / case["file"]).read_bytes()
        if case["protocol"] == "grpc":
            payload = decode_grpc_request(pb.ModelInferRequest.FromString(body))
        else:
            payload, binary = decode_rest_request(body, case["json_length"])
            expected = case["binary_outputs"]
            assert binary == (expected if isinstance(expected, bool) else frozenset(expected)), case["name"]
        assert list(payload.arrays) == [name for name, _ in case["inputs"]], case["name"]
        for name, file in case["inputs"]:
            assert_same(payload.arrays[name], np.load(folder / file, allow_pickle=True))
        assert payload.id == case["id"]
        assert payload.params == case["params"], case["name"]  # tritonclient's priority/timeout are reserved
        assert payload.requested_outputs == case["requested_outputs"]
        assert payload.kind == ("tensor" if len(case["inputs"]) == 1 else "columns")


def test_tritonclient_parses_encoded_responses(tmp_path):
    outputs = {**SAMPLES, "TEXT": TEXT_BYTES}
    text_only = {k: (TEXT_BYTES if k == "BYTES" else v) for k, v in SAMPLES.items()}
    cases = []
    response = encode_grpc_response("m", "2", "g1", outputs)
    (tmp_path / "grpc.bin").write_bytes(response.SerializeToString())
    cases.append({"name": "grpc", "protocol": "grpc", "file": "grpc.bin", "header_length": None, "sent": outputs, "id": "g1"})
    for name, sent, binary in [("http_binary", outputs, True), ("http_json", text_only, False),
                               ("http_mixed", outputs, frozenset(k for k in outputs if k not in ("TEXT", "FP32")))]:
        body, headers = encode_rest_response("m", "2", name, sent, binary)
        (tmp_path / f"{name}.bin").write_bytes(body)
        length = headers.get("Inference-Header-Content-Length")
        cases.append({"name": name, "protocol": "http", "file": f"{name}.bin", "sent": sent, "id": name,
                      "header_length": None if length is None else int(length)})
    manifest = [{k: v for k, v in c.items() if k != "sent"} | {"outputs": list(c["sent"])} for c in cases]
    (tmp_path / "responses.json").write_text(json.dumps({"cases": manifest}))
    _run_helper("responses", tmp_path)
    parsed = json.loads((tmp_path / "parsed.json").read_text())
    for case in cases:
        got = parsed[case["name"]]
        assert (got["model_name"], got["id"]) == ("m", case["id"])
        binary_json = case["protocol"] == "http" and case["header_length"] is None
        for name, array in case["sent"].items():
            value = np.load(tmp_path / got["outputs"][name], allow_pickle=True)
            if array.dtype == object and value.size and isinstance(value.flat[0], str):  # BYTES sent as JSON
                value = np.array([v.encode() for v in value.ravel()], dtype=object).reshape(value.shape)
            assert_same(value, array)
        assert binary_json == (case["name"] == "http_json")
