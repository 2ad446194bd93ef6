"""`python -m services.artifacts`: the artifact service alone, configured from the environment;
it asks the tracking service at MLGRID_TRACKING_TARGET about runs."""
import sys

from services.artifacts.resolver import GrpcRunResolver
from services.artifacts.service import artifact_service
from services.common.config import ArtifactsConfig, ServerConfig
from services.common.errors import MlgridError
from services.common.server import configure_logging, run_event_loop, run_until_stopped

DEFAULT_GRPC_PORT = 50052  # beside the tracking service's 50051 on one machine


async def main() -> None:
    server = ServerConfig.from_env(default_grpc_port=DEFAULT_GRPC_PORT)
    config = ArtifactsConfig.from_env()
    service = await artifact_service(config, GrpcRunResolver(config.tracking_target, config.run_cache_seconds))
    await run_until_stopped([service], server.host, server.grpc_port, server.metrics_port, server.shutdown_grace_seconds)


if __name__ == "__main__":
    configure_logging()
    try:
        run_event_loop(main())
    except MlgridError as e:
        sys.exit(f"mlgrid artifacts: {e.message}")
