"""Assembly of the artifact service: store, run resolver, handler and servicer."""
import asyncio
import ctypes
import ctypes.util

from services.artifacts.backends import make_backend
from services.artifacts.handlers import ArtifactHandler
from services.artifacts.resolver import RunResolver
from services.artifacts.servicer import SERVICE_NAME, ArtifactServicer, add_to_server
from services.common.config import ArtifactsConfig
from services.common.server import Service
from services.identity.gate import Gate


def _bound_large_allocations() -> None:
    """Large transfer buffers (S3 parts) mmapped, and so returned to the system when freed, rather
    than left in per-thread malloc arenas that grow with each thread that touches them (glibc)."""
    libc_name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(libc_name), "mallopt", None) if libc_name else None
    if mallopt is not None:
        mallopt(-3, 4 * 1024 * 1024)  # M_MMAP_THRESHOLD
        mallopt(-8, 2)  # M_ARENA_MAX


async def artifact_service(config: ArtifactsConfig, resolver: RunResolver, gate: Gate | None = None) -> Service:
    _bound_large_allocations()
    backend = await asyncio.to_thread(make_backend, config)
    handler = ArtifactHandler(backend, resolver, config.direct_threshold_mb * 1024 * 1024)
    servicer = ArtifactServicer(handler)
    return Service(
        SERVICE_NAME,
        lambda server: add_to_server(servicer, server),
        handler.close,
        gate=gate,
    )
