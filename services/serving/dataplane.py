"""What the serving protocols share, whatever the transport (Seldon MLServer's data plane):
health, metadata, and inference with its metrics. The gRPC servicer and the REST routes only
convert wire messages to Payloads and back."""
from __future__ import annotations

import time

import numpy as np
from prometheus_client import Counter, Histogram

from services.common.errors import InvalidArgument, MlgridError
from services.serving.codecs import oip
from services.serving.payload import UNNAMED, Payload, Prediction
from services.serving.repository import LoadedVersion, ModelRepository

SERVER_NAME = "mlgrid"
DEFAULT_OUTPUT = oip.UNNAMED_OUTPUT  # the name of an unnamed model output over OIP, as its metadata says
REQUESTS = Counter("mlgrid_serving_requests_total", "inference requests, by model, version and protocol", ["model", "version", "protocol"])
ERRORS = Counter("mlgrid_serving_request_errors_total", "failed inference requests, by model, version, protocol and code",
                 ["model", "version", "protocol", "code"])
LATENCY = Histogram(
    "mlgrid_serving_request_duration_seconds", "inference latency, by model and protocol", ["model", "protocol"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def server_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlgrid")
    except PackageNotFoundError:
        return "unknown"


class DataPlane:
    def __init__(self, repository: ModelRepository):
        self.repository = repository
        self.draining = False  # stopping: not ready, though still answering (MLGRID_SHUTDOWN_DRAIN_SECONDS)

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.ready and not self.draining

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.repository.get(name, version)
        except MlgridError:
            return False
        return True

    def model(self, name: str, version: str = "") -> LoadedVersion:
        return self.repository.get(name, version)

    async def infer(self, name: str, version: str, payload: Payload, protocol: str) -> tuple[LoadedVersion, Prediction]:
        started = time.perf_counter()
        model = None
        try:
            model = self.repository.get(name, version)
            prediction = await model.predict(payload)
        except MlgridError as error:
            ERRORS.labels(name, model.version if model else version or "-", protocol, error.code.name).inc()
            raise
        REQUESTS.labels(name, model.version, protocol).inc()
        LATENCY.labels(name, protocol).observe(time.perf_counter() - started)
        return model, prediction


def output_tensors(prediction: Prediction, requested: list[str]) -> dict[str, np.ndarray]:
    """A prediction as OIP's named output tensors (an unnamed one is "output-0"), those requested only."""
    if prediction.kind == "json":
        raise InvalidArgument("the model's output is not a tensor or table; call it over /invocations instead")
    outputs = {DEFAULT_OUTPUT if name == UNNAMED else name: array for name, array in prediction.arrays.items()}
    if not requested:
        return outputs
    missing = [name for name in requested if name not in outputs]
    if missing:
        raise InvalidArgument(f"the model has no output(s) {missing}; it has {sorted(outputs)}")
    return {name: outputs[name] for name in requested}
