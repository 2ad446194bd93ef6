"""`python -m services.registry`: the model registry alone, configured from the environment,
on the tracking database (MLGRID_BACKEND_STORE_URI)."""
import sys

from services.common.config import RegistryConfig, ServerConfig, StoreConfig
from services.common.errors import MlgridError
from services.common.server import configure_logging, run_event_loop, run_until_stopped
from services.registry.service import open_store, registry_service

DEFAULT_GRPC_PORT = 50053  # beside tracking (50051) and artifacts (50052) on one machine


async def main() -> None:
    server = ServerConfig.from_env(default_grpc_port=DEFAULT_GRPC_PORT)
    service = registry_service(await open_store(StoreConfig.from_env(), RegistryConfig.from_env()))
    await run_until_stopped([service], server.host, server.grpc_port, server.metrics_port, server.shutdown_grace_seconds)


if __name__ == "__main__":
    configure_logging()
    try:
        run_event_loop(main())
    except MlgridError as e:
        sys.exit(f"mlgrid registry: {e.message}")
