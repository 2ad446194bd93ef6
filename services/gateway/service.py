"""Assembly of the gateway's gRPC side: one backend per routed service, the router in front of them,
and health and reflection answering for the whole suite."""
import asyncio
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

# The descriptors of every routed service, for server reflection and for each method's kind of streaming.
from mlgrid.inference.v2 import grpc_predict_v2_pb2  # noqa: F401
from mlgrid.v1 import artifacts_pb2, identity_pb2, registry_pb2, tracking_pb2  # noqa: F401
from services.common.config import GatewayConfig
from services.common.server import Service
from services.gateway.router import Backend, Router

log = logging.getLogger("mlgrid.gateway")

# (full service name, label, GatewayConfig field, the variable that sets it)
ROUTES = [
    ("mlgrid.v1.TrackingService", "tracking", "tracking_target", "MLGRID_GATEWAY_TRACKING_TARGET"),
    # Users, tokens and permissions are served by tracking, next to the database they are in.
    ("mlgrid.v1.IdentityService", "identity", "tracking_target", "MLGRID_GATEWAY_TRACKING_TARGET"),
    ("mlgrid.v1.ArtifactService", "artifacts", "artifacts_target", "MLGRID_GATEWAY_ARTIFACTS_TARGET"),
    ("mlgrid.v1.ModelRegistryService", "registry", "registry_target", "MLGRID_GATEWAY_REGISTRY_TARGET"),
    ("inference.GRPCInferenceService", "serving", "serving_target", "MLGRID_GATEWAY_SERVING_TARGET"),
]
HEALTH_TIMEOUT_S = 1.0

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthMirror:
    """Keeps the gateway's health status of one routed service equal to what its backend says
    (asked every `interval` seconds); NOT_SERVING while the backend does not answer or has no address."""

    def __init__(self, backend: Backend, interval: float):
        self.backend = backend
        self.interval = interval
        self._task: asyncio.Task | None = None

    async def start(self, health_servicer: health.aio.HealthServicer) -> None:
        status = await self.status()
        await health_servicer.set(self.backend.service, status)
        if self.backend.channel is not None:
            self._task = asyncio.create_task(self._follow(health_servicer, status))

    async def status(self) -> int:
        if self.backend.channel is None:
            return NOT_SERVING
        request = health_pb2.HealthCheckRequest(service=self.backend.service)
        try:
            response = await health_pb2_grpc.HealthStub(self.backend.channel).Check(request, timeout=HEALTH_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            log.debug("health of %s at %s: %s", self.backend.label, self.backend.target, error.code().name)
            return NOT_SERVING
        return response.status

    async def _follow(self, health_servicer, last: int) -> None:
        while True:
            await asyncio.sleep(self.interval)
            status = await self.status()
            if status != last:
                log.info("%s at %s: %s", self.backend.label, self.backend.target, health_pb2.HealthCheckResponse.ServingStatus.Name(status))
            last = status
            await health_servicer.set(self.backend.service, status)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.backend.close()


def backends(config: GatewayConfig) -> list[Backend]:
    return [Backend(service, label, getattr(config, field), env_var) for service, label, field, env_var in ROUTES]


def gateway_services(routed: list[Backend], config: GatewayConfig) -> list[Service]:
    """One Service per routed service name (so that health and reflection list it); the first one
    mounts the router, which serves them all."""
    router = Router(routed)
    mounts = [lambda server: server.add_generic_rpc_handlers((router,))] + [lambda server: None] * (len(routed) - 1)
    services = []
    for backend, mount in zip(routed, mounts):
        mirror = HealthMirror(backend, config.health_interval_ms / 1000)
        services.append(Service(backend.service, mount, close=mirror.close, started=mirror.start))
    return services
