"""Assembly of the serving service: the models, the data plane, the gRPC servicer and the HTTP API."""
from __future__ import annotations

import asyncio
import json
import logging
import signal

from mlgrid.client import grpc_target
from services.common.config import AuthConfig, ServerConfig, ServingConfig
from services.common.errors import InvalidArgument
from services.common.http import start_http
from services.common.server import Service, start_grpc
from services.identity.gate import gate_for
from services.identity.remote import RemoteAuthority
from services.serving.access import RULES, SERVED_MODEL, served_resource
from services.serving.dataplane import DataPlane
from services.serving.grpc_servicer import SERVICE_NAME, InferenceServicer, add_to_server
from services.serving.repository import ModelRepository, ModelSpec, registered_model_name
from services.serving.rest import RestApi

log = logging.getLogger("mlgrid.serving")
DEFAULT_GRPC_PORT = 8081
STOP_MARGIN_S = 15  # beyond the grace period, for unloading models


def parse_models(text: str, config: ServingConfig) -> list[ModelSpec]:
    """MLGRID_SERVING_MODELS: `name=uri,...`, one bare URI, or a JSON list of model objects."""
    defaults = {"workers": config.workers, "max_batch_size": config.max_batch_size, "max_batch_wait_ms": config.max_batch_wait_ms}
    text = text.strip()
    if not text:
        raise InvalidArgument("no model to serve: set MLGRID_SERVING_MODELS (name=uri,...) or pass -m URI")
    if text.startswith("["):
        try:
            entries = json.loads(text)
            return [ModelSpec(**{**defaults, **entry}) for entry in entries]
        except (ValueError, TypeError) as error:
            raise InvalidArgument(f"MLGRID_SERVING_MODELS is not a JSON list of {{name, uri, ...}} objects: {error}") from None
    specs = []
    for item in (part.strip() for part in text.split(",") if part.strip()):
        name, sep, uri = item.partition("=")
        if not sep or "://" in name or name.startswith(("models:", "runs:")):
            uri, name = item, default_name(item)
        specs.append(ModelSpec(name=name, uri=uri, **defaults))
    return specs


def default_name(uri: str) -> str:
    return registered_model_name(uri) if uri.startswith("models:/") else "model"


class ServingServer:
    """Both servers of one serving process over one repository of models."""

    def __init__(self, specs: list[ModelSpec], config: ServingConfig, auth: AuthConfig | None = None):
        self.config = config
        self.repository = ModelRepository(specs, config.tracking_uri, config.follower or None, config.lease_seconds)
        self.plane = DataPlane(self.repository)
        self.authority = self.gate = None
        if auth is not None and auth.enabled:
            target = auth.identity_target or grpc_target(config.tracking_uri)
            self.authority = RemoteAuthority(target, auth.cache_seconds, {SERVED_MODEL: self._served})
            self.gate = gate_for({SERVICE_NAME: RULES}, self.authority)
        only = specs[0].name if len(specs) == 1 else None
        self.rest = RestApi(self.plane, only, config.max_body_mb * 1024 * 1024, self.gate)
        self._grpc = None
        self._http = None
        self._health = None

    async def start(self, host: str, grpc_port: int) -> int:
        """Load every model, then listen; returns the bound gRPC port."""
        await self.repository.start()
        service = Service(SERVICE_NAME, lambda server: add_to_server(InferenceServicer(self.plane), server), gate=self.gate)
        self._grpc, self._health, bound = await start_grpc([service], host, grpc_port)
        self._http = await start_http(self.rest.app, host, self.config.http_port)
        log.info("serving %s: OIP gRPC on %s:%d, REST and /invocations on %s:%d",
                 ", ".join(self.repository.models), host, bound, host, self.config.http_port)
        return bound

    async def drain(self, seconds: float) -> None:
        """Not ready (gRPC health and /v2/health/ready), while still answering, for `seconds`."""
        log.info("stopping: not ready, still answering for %.0fs (MLGRID_SHUTDOWN_DRAIN_SECONDS)", seconds)
        self.plane.draining = True
        await self._health.enter_graceful_shutdown()
        await asyncio.sleep(seconds)

    async def stop(self, grace_seconds: float) -> None:
        await self._health.enter_graceful_shutdown()
        await self._http.shutdown()
        await self._grpc.stop(grace_seconds)
        await self._http.cleanup()
        await self.repository.stop()
        if self.authority is not None:
            await self.authority.close()

    async def _served(self, name: str) -> tuple[str, str] | None:
        served = self.repository.models.get(name)
        return served_resource(served.spec.uri) if served is not None else None


async def serve(specs: list[ModelSpec], config: ServingConfig, server: ServerConfig, auth: AuthConfig | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then finish in-flight requests and unload the models."""
    serving = ServingServer(specs, config, auth)
    await serving.start(server.host, server.grpc_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if server.shutdown_drain_seconds:
        await serving.drain(server.shutdown_drain_seconds)
    log.info("stopping: finishing in-flight requests (up to %.0fs)", server.shutdown_grace_seconds)
    try:
        await asyncio.wait_for(serving.stop(server.shutdown_grace_seconds), server.shutdown_grace_seconds + STOP_MARGIN_S)
    except TimeoutError:
        log.error("stopping took longer than the grace period; exiting anyway")
