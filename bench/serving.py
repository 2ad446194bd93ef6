"""Serving benchmark: a scikit-learn LogisticRegression on iris (4 float columns), requests of 2
rows, closed loop, over MLflow's /invocations, OIP REST and OIP gRPC at concurrency 1, 8 and 64.
Load comes from C generators so that the client costs little CPU: wrk for HTTP, h2load for gRPC
(HTTP/2 with gRPC framing). As a reference for how fast this machine is at the time, the same server's
empty ServerLive call is measured beside each gRPC figure. Prints JSON: req/s, p50, p99 (ms) and errors per protocol and concurrency.

    python bench/serving.py [--duration 5] [--workers 1] [--max-batch-size 32]
Needs wrk and h2load (Debian: apt-get install wrk nghttp2-client)."""
import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "client"))
sys.path.insert(0, ROOT)
from services.common.server import free_port  # noqa: E402

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]
WARM_UP_S = 1  # h2load's warm-up, left out of its rate and of the latencies
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout
  io.write(string.format('{"requests": %%d, "seconds": %%f, "p50_ms": %%f, "p99_ms": %%f, "errors": %%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end
"""


def save_model(folder: str) -> str:
    import pandas as pd
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import mlgrid.sklearn

    data = load_iris()
    X = pd.DataFrame(data.data, columns=COLUMNS)
    path = os.path.join(folder, "iris")
    mlgrid.sklearn.save_model(LogisticRegression(max_iter=500).fit(X, data.target), path, input_example=X.head(2))
    return path


def grpc_frame(method: str) -> bytes:
    from mlgrid.inference.v2 import grpc_predict_v2_pb2 as pb

    if method == "ServerLive":
        message = pb.ServerLiveRequest().SerializeToString()
    else:
        request = pb.ModelInferRequest(model_name="iris", raw_input_contents=[np.asarray(ROWS, dtype=np.float32).tobytes()])
        request.inputs.add(name="input-0", datatype="FP32", shape=[2, 4])
        message = request.SerializeToString()
    return b"\x00" + struct.pack(">I", len(message)) + message


def run_wrk(port: int, path: str, body: dict, concurrency: int, duration: int, folder: str) -> dict:
    script = os.path.join(folder, "wrk.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % json.dumps(json.dumps(body)))
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{duration}s", "--timeout", "10s", "-s", script,
         f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return {"req_per_s": round(result["requests"] / result["seconds"]), "p50_ms": round(result["p50_ms"], 3),
            "p99_ms": round(result["p99_ms"], 3), "errors": result["errors"]}


def grpc_errors(http_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics") as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("mlgrid_serving_request_errors_total{") and 'protocol="grpc"' in line)


def run_h2load(grpc_port: int, http_port: int, concurrency: int, duration: int, folder: str, method: str = "ModelInfer") -> dict:
    data, log = os.path.join(folder, f"{method}.bin"), os.path.join(folder, f"h2load-{method}-{concurrency}.log")
    with open(data, "wb") as f:
        f.write(grpc_frame(method))
    errors_before = grpc_errors(http_port)
    out = subprocess.run(
        ["h2load", "-c", str(concurrency), "-m", "1", "-t", "1", "-D", str(duration), f"--warm-up-time={WARM_UP_S}",
         "-d", data, "-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file", log,
         f"http://127.0.0.1:{grpc_port}/inference.GRPCInferenceService/{method}"],
        capture_output=True, text=True, check=True,
    ).stdout
    lines = [line.split("\t") for line in open(log).read().splitlines() if line.strip()]
    measured_from = min(int(line[0]) for line in lines) + WARM_UP_S * 1_000_000
    latencies = np.array([int(line[2]) for line in lines if int(line[0]) >= measured_from]) / 1000  # after the warm-up
    statuses = [line[1] for line in lines]
    failed = sum(1 for s in statuses if s != "200") + int(grpc_errors(http_port) - errors_before)
    rate = float(re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out).group(1))  # the measured period only
    return {"req_per_s": round(rate), "p50_ms": round(float(np.percentile(latencies, 50)), 3),
            "p99_ms": round(float(np.percentile(latencies, 99)), 3), "errors": failed,
            "h2load": [line for line in out.splitlines() if line.startswith("requests:")][0].strip()}


def wait_ready(port: int, proc) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the serving process exited; see its output above")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("serving did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 8, 64])
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "h2load") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install wrk nghttp2-client")
    with tempfile.TemporaryDirectory(prefix="mlgrid-bench-serving-") as folder:
        model = save_model(folder)
        http_port, grpc_port = free_port(), free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlgrid.cli.main", "models", "serve", "-m", model, "--name", "iris",
             "-p", str(http_port), "--grpc-port", str(grpc_port), "-w", str(args.workers),
             "--max-batch-size", str(args.max_batch_size)],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(folder, "serving.log"), "w"),
        )
        try:
            wait_ready(http_port, proc)
            results = {}
            bodies = {
                "invocations": ("/invocations", {"dataframe_split": {"columns": COLUMNS, "data": ROWS}}),
                "oip_rest": ("/v2/models/iris/infer",
                             {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": sum(ROWS, [])}]}),
            }
            for concurrency in args.concurrency:
                for protocol, (path, body) in bodies.items():
                    results[f"{protocol}_c{concurrency}"] = run_wrk(http_port, path, body, concurrency, args.duration, folder)
                results[f"oip_grpc_c{concurrency}"] = run_h2load(grpc_port, http_port, concurrency, args.duration, folder)
                # The same server answering an empty ServerLive: what grpc.aio itself costs on this machine right now.
                results[f"reference_grpc_serverlive_c{concurrency}"] = run_h2load(
                    grpc_port, http_port, concurrency, args.duration, folder, "ServerLive")
        finally:
            proc.terminate()
            proc.wait(30)
    print(json.dumps({"workers": args.workers, "max_batch_size": args.max_batch_size, "duration_s": args.duration,
                      "rows_per_request": len(ROWS), **results}, indent=2))


if __name__ == "__main__":
    main()
