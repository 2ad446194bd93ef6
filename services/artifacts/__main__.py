"""`python -m services.artifacts`: the artifact service alone, configured from the environment;
it asks the tracking service at MLGRID_TRACKING_TARGET about runs."""
from services.artifacts.access import RULES
from services.artifacts.resolver import GrpcRunResolver
from services.artifacts.service import artifact_service
from services.artifacts.servicer import SERVICE_NAME
from services.common.config import ArtifactsConfig, AuthConfig
from services.common.server import serve_alone
from services.identity.gate import gate_for
from services.identity.remote import RemoteAuthority

DEFAULT_GRPC_PORT = 50052  # beside the tracking service's 50051 on one machine


async def build():
    config, auth = ArtifactsConfig.from_env(), AuthConfig.from_env()
    gate = None
    if auth.enabled:  # callers checked by the identity service (beside tracking) with their own credentials
        authority = RemoteAuthority(auth.identity_target or config.tracking_target, auth.cache_seconds)
        gate = gate_for({SERVICE_NAME: RULES}, authority)
    return await artifact_service(config, GrpcRunResolver(config.tracking_target, config.run_cache_seconds), gate)


if __name__ == "__main__":
    serve_alone("artifacts", build, DEFAULT_GRPC_PORT)
