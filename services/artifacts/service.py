"""Assembly of the artifact service: store, run resolver, handler and servicer."""
import asyncio

from services.artifacts.backends import make_backend
from services.artifacts.handlers import ArtifactHandler
from services.artifacts.resolver import RunResolver
from services.artifacts.servicer import SERVICE_NAME, ArtifactServicer, add_to_server
from services.common.config import ArtifactsConfig
from services.common.server import Service


async def artifact_service(config: ArtifactsConfig, resolver: RunResolver) -> Service:
    backend = await asyncio.to_thread(make_backend, config)
    handler = ArtifactHandler(backend, resolver, config.direct_threshold_mb * 1024 * 1024)
    servicer = ArtifactServicer(handler)
    return Service(
        SERVICE_NAME,
        lambda server: add_to_server(servicer, server),
        handler.close,
    )
