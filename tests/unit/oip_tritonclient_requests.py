"""Cross-check of the OIP codecs against the stock client, run as a subprocess by
test_serving_oip_codec.py: tritonclient registers the same protobuf symbols (`inference.*`) as
mlgrid's generated module, so the two cannot be imported in one process.

    python oip_tritonclient_requests.py requests DIR
        builds requests with tritonclient's own request builders (gRPC and HTTP, binary and JSON
        variants), writes DIR/<case>.bin, the expected input arrays DIR/<case>.<input>.npy and
        DIR/requests.json describing each case.
    python oip_tritonclient_requests.py responses DIR
        reads DIR/responses.json (written by the test: response files, header lengths, output
        names), parses each response with tritonclient's InferResult and writes as_numpy of every
        output to DIR/parsed.<case>.<output>.npy, listed in DIR/parsed.json.

Exits 77 when tritonclient is not installed (the test then skips)."""
import json
import os
import sys

import numpy as np

try:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.grpc import _utils as grpc_utils, service_pb2
    from tritonclient.http import _utils as http_utils
except ImportError as e:  # pragma: no cover - depends on the environment
    print(f"tritonclient is not installed: {e}", file=sys.stderr)
    sys.exit(77)


def sample_arrays() -> dict[str, np.ndarray]:
    """One array per OIP datatype (the inputs' names are their datatypes), with extreme values."""
    arrays = {"FP32_2x4": (np.arange(8, dtype=np.float32).reshape(2, 4) / 3).astype(np.float32)}
    arrays["BOOL"] = np.array([[True, False, True]])
    for dtype in (np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)
        arrays[DATATYPE[np.dtype(dtype).name]] = np.array([[info.min, 0, 1], [2, 3, info.max]], dtype=dtype)
    arrays["FP16"] = np.array([0.5, -2.0, 65504.0], dtype=np.float16)
    arrays["FP32"] = np.array([1.5, -0.0, np.float32(3.4e38)], dtype=np.float32)
    arrays["FP64"] = np.array([[1e-300], [2.5]], dtype=np.float64)
    arrays["BYTES"] = np.array([b"", "h\u00e9llo \u2603".encode(), b"\x00\xff raw", b"x"], dtype=object).reshape(2, 2)
    return arrays


DATATYPE = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "object": "BYTES",
}


def _save(folder: str, case: str, arrays: dict[str, np.ndarray]) -> list[list[str]]:
    files = []
    for name, array in arrays.items():
        path = f"{case}.{name}.npy"
        np.save(os.path.join(folder, path), array, allow_pickle=True)
        files.append([name, path])
    return files


def _grpc_case(folder, case, arrays, *, request_id="", outputs=None, parameters=None, priority=0, timeout=None):
    inputs = []
    for name, array in arrays.items():
        tensor = grpcclient.InferInput(name, list(array.shape), DATATYPE[array.dtype.name])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    requested = [grpcclient.InferRequestedOutput(n) for n in outputs] if outputs else None
    request = grpc_utils._get_inference_request(
        model_name="m", inputs=inputs, model_version="", request_id=request_id, outputs=requested,
        sequence_id=0, sequence_start=False, sequence_end=False, priority=priority, timeout=timeout,
        parameters=parameters,
    )
    with open(os.path.join(folder, f"{case}.bin"), "wb") as f:
        f.write(request.SerializeToString())
    return {"name": case, "protocol": "grpc", "file": f"{case}.bin", "json_length": None, "id": request_id,
            "params": parameters, "requested_outputs": list(outputs or []), "inputs": _save(folder, case, arrays)}


def _http_case(folder, case, arrays, *, binary, request_id="", outputs=None, parameters=None, priority=0,
               expect_binary=None):
    """`binary`: input name → binary_data flag; `outputs`: (name, binary_data) pairs."""
    inputs = []
    for name, array in arrays.items():
        tensor = httpclient.InferInput(name, list(array.shape), DATATYPE[array.dtype.name])
        tensor.set_data_from_numpy(array, binary_data=binary[name])
        inputs.append(tensor)
    requested = [httpclient.InferRequestedOutput(n, binary_data=b) for n, b in outputs] if outputs else None
    body, json_length = http_utils._get_inference_request(
        inputs=inputs, request_id=request_id, outputs=requested, sequence_id=0, sequence_start=False,
        sequence_end=False, priority=priority, timeout=None, custom_parameters=parameters,
    )
    with open(os.path.join(folder, f"{case}.bin"), "wb") as f:
        f.write(body)
    return {"name": case, "protocol": "http", "file": f"{case}.bin", "json_length": json_length, "id": request_id,
            "params": parameters, "requested_outputs": [n for n, _ in outputs or []],
            "binary_outputs": expect_binary, "inputs": _save(folder, case, arrays)}


def build_requests(folder: str) -> None:
    arrays = sample_arrays()
    text = {k: v for k, v in arrays.items() if k != "BYTES"}
    text["BYTES"] = np.array([b"", "h\u00e9llo \u2603".encode(), b"plain"], dtype=object)  # JSON carries utf-8 only
    cases = [
        _grpc_case(folder, "grpc_fp32", {"x": arrays["FP32_2x4"]}, request_id="req-1", outputs=["y"],
                   parameters={"temperature": 0.5, "tag": "a", "n": 3, "flag": True}, priority=2, timeout=1000),
        _grpc_case(folder, "grpc_every_datatype", arrays),
        _grpc_case(folder, "grpc_empty", {"e": np.zeros((0, 4), dtype=np.float32), "s": np.empty((0,), dtype=object)}),
        _http_case(folder, "http_binary", arrays, binary=dict.fromkeys(arrays, True), request_id="h-1",
                   expect_binary=True),
        _http_case(folder, "http_json", text, binary=dict.fromkeys(text, False),
                   outputs=[("y", False), ("z", True)], parameters={"threshold": 0.25}, expect_binary=["z"]),
        _http_case(folder, "http_mixed", {"x": arrays["FP32_2x4"], "s": text["BYTES"], "b": arrays["BOOL"]},
                   binary={"x": True, "s": False, "b": True}, outputs=[("y", False)], priority=1,
                   expect_binary=[]),
    ]
    with open(os.path.join(folder, "requests.json"), "w") as f:
        json.dump({"cases": cases}, f)


def parse_responses(folder: str) -> None:
    with open(os.path.join(folder, "responses.json")) as f:
        cases = json.load(f)["cases"]
    parsed = {}
    for case in cases:
        with open(os.path.join(folder, case["file"]), "rb") as f:
            body = f.read()
        if case["protocol"] == "grpc":
            result = grpcclient.InferResult(service_pb2.ModelInferResponse.FromString(body))
            meta = {"model_name": result.get_response().model_name, "id": result.get_response().id}
        else:
            result = httpclient.InferResult.from_response_body(body, verbose=False, header_length=case["header_length"])
            meta = {"model_name": result.get_response()["model_name"], "id": result.get_response().get("id", "")}
        files = {}
        for name in case["outputs"]:
            path = f"parsed.{case['name']}.{name}.npy"
            np.save(os.path.join(folder, path), result.as_numpy(name), allow_pickle=True)
            files[name] = path
        parsed[case["name"]] = {"outputs": files, **meta}
    with open(os.path.join(folder, "parsed.json"), "w") as f:
        json.dump(parsed, f)


if __name__ == "__main__":
    mode, folder = sys.argv[1], sys.argv[2]
    {"requests": build_requests, "responses": parse_responses}[mode](folder)
