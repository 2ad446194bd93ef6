"""How the artifact service learns a run's experiment, artifact URI and lifecycle stage:
from the tracking store in the same process (`mlgrid server`), or from the tracking
service over gRPC (a separate pod). Answers are remembered for a few seconds."""
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import grpc

from mlgrid.v1 import tracking_pb2, tracking_pb2_grpc
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.common.server import CHANNEL_OPTIONS
from services.identity import caller

MAX_CACHED_RUNS = 10_000
TRACKING_TIMEOUT_S = 10


@dataclass(frozen=True)
class RunRef:
    run_id: str
    experiment_id: str
    artifact_uri: str
    lifecycle_stage: str

    @classmethod
    def from_info(cls, info: tracking_pb2.RunInfo) -> "RunRef":
        return cls(info.run_id, info.experiment_id, info.artifact_uri, info.lifecycle_stage)


class RunResolver(ABC):
    """Looks runs up, with a short cache; NotFound for a run that does not exist."""

    def __init__(self, cache_seconds: float):
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, RunRef]] = {}

    async def get(self, run_id: str) -> RunRef:
        now = time.monotonic()
        cached = self._cache.get(run_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        run = await self._fetch(run_id)
        if self._cache_seconds > 0:
            if len(self._cache) >= MAX_CACHED_RUNS:
                self._cache.clear()
            self._cache[run_id] = (now + self._cache_seconds, run)
        return run

    @abstractmethod
    async def _fetch(self, run_id: str) -> RunRef: ...

    async def close(self) -> None:
        pass


class StoreRunResolver(RunResolver):
    """Asks the tracking store of this process (`mlgrid server`)."""

    def __init__(self, store, cache_seconds: float):
        super().__init__(cache_seconds)
        self._store = store

    async def _fetch(self, run_id: str) -> RunRef:
        return RunRef.from_info((await self._store.get_run(run_id)).info)


class GrpcRunResolver(RunResolver):
    """Asks TrackingService.GetRun at `target` (host:port)."""

    def __init__(self, target: str, cache_seconds: float):
        super().__init__(cache_seconds)
        self._target = target
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = tracking_pb2_grpc.TrackingServiceStub(self._channel)

    async def _fetch(self, run_id: str) -> RunRef:
        try:
            response = await self._stub.GetRun(
                tracking_pb2.GetRunRequest(run_id=run_id), timeout=TRACKING_TIMEOUT_S, metadata=caller.forwarded()
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(error.details()) from None
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(error.details()) from None
            raise Unavailable(
                f"cannot look up run {run_id} at the tracking service {self._target} "
                f"({error.code().name}: {error.details()}); check MLGRID_TRACKING_TARGET"
            ) from None
        return RunRef.from_info(response.run.info)

    async def close(self) -> None:
        await self._channel.close()
