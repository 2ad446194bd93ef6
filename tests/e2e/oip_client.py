"""A stock Open Inference Protocol client (tritonclient) calling a served model, in its own process:
tritonclient registers the same protobuf names (inference.*) as mlgrid's server code, so the two
cannot share a process. Usage: oip_client.py grpc|http URL MODEL ROWS_JSON; prints a JSON report."""
import json
import sys

import numpy as np


def main() -> None:
    protocol, url, model, rows = sys.argv[1], sys.argv[2], sys.argv[3], np.asarray(json.loads(sys.argv[4]), dtype=np.float32)
    if protocol == "grpc":
        import tritonclient.grpc as client_module
    else:
        import tritonclient.http as client_module
    client = client_module.InferenceServerClient(url)
    metadata = client.get_model_metadata(model)
    if protocol == "grpc":
        metadata = json.loads(__import__("google.protobuf.json_format", fromlist=["x"]).MessageToJson(metadata))
    report = {
        "live": client.is_server_live(), "ready": client.is_server_ready(), "model_ready": client.is_model_ready(model),
        "metadata": metadata,
    }
    as_tensor = client_module.InferInput("input-0", list(rows.shape), "FP32")
    as_tensor.set_data_from_numpy(rows)
    result = client.infer(model, [as_tensor], outputs=[client_module.InferRequestedOutput("output-0")])
    report["tensor"] = result.as_numpy("output-0").tolist()
    columns = []
    for index, name in enumerate(["sepal_length", "sepal_width", "petal_length", "petal_width"]):
        column = client_module.InferInput(name, [len(rows), 1], "FP64")
        column.set_data_from_numpy(rows[:, index:index + 1].astype(np.float64))
        columns.append(column)
    report["columns"] = client.infer(model, columns).as_numpy("output-0").tolist()
    try:
        client.infer("no-such-model", [as_tensor])
    except Exception as error:  # noqa: BLE001 - the client's own exception type
        report["missing_model_error"] = str(error)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
