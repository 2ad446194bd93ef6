"""`python -m services.artifacts`: the artifact service alone, configured from the environment;
it asks the tracking service at MLGRID_TRACKING_TARGET about runs."""
from services.artifacts.resolver import GrpcRunResolver
from services.artifacts.service import artifact_service
from services.common.config import ArtifactsConfig
from services.common.server import serve_alone

DEFAULT_GRPC_PORT = 50052  # beside the tracking service's 50051 on one machine


async def build():
    config = ArtifactsConfig.from_env()
    return await artifact_service(config, GrpcRunResolver(config.tracking_target, config.run_cache_seconds))


if __name__ == "__main__":
    serve_alone("artifacts", build, DEFAULT_GRPC_PORT)
