"""`python -m services.registry`: the model registry alone, configured from the environment,
on the tracking database (MLGRID_BACKEND_STORE_URI)."""
from services.common.config import AuthConfig, RegistryConfig, StoreConfig
from services.common.server import serve_alone
from services.registry.service import open_store, secured_registry_service

DEFAULT_GRPC_PORT = 50053  # beside tracking (50051) and artifacts (50052) on one machine


async def build():
    return secured_registry_service(await open_store(StoreConfig.from_env(), RegistryConfig.from_env()), AuthConfig.from_env())


if __name__ == "__main__":
    serve_alone("registry", build, DEFAULT_GRPC_PORT)
