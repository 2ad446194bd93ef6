"""`mlgrid server`: every service in one process, on an embedded default
(SQLite file + local artifact folder) — the same servicers that run as
separate pods in the cluster — with gRPC on --grpc-port and MLflow's REST API
(and /metrics) on --port. The REST side calls the services through a loopback
channel to the process's own gRPC port: the same code path as the gateway's."""
import ipaddress
import sys
from pathlib import Path

from services.artifacts.access import RULES as ARTIFACT_RULES
from services.artifacts.resolver import StoreRunResolver
from services.artifacts.service import artifact_service
from services.artifacts.servicer import SERVICE_NAME as ARTIFACTS
from services.common.config import ArtifactsConfig, AuthConfig, GatewayConfig, RegistryConfig, ServerConfig, StoreConfig
from services.common.errors import MlgridError
from services.common.server import configure_logging, run_event_loop, run_until_stopped
from services.gateway.rest import RestGateway
from services.gateway.service import backends
from services.identity.visibility import OPEN, Visibility
from services.registry.access import RULES as REGISTRY_RULES
from services.registry.service import registry_service, shared_store
from services.registry.servicer import SERVICE_NAME as REGISTRY
from services.tracking.service import open_store, tracking_and_identity


def run(
    host: str,
    grpc_port: int,
    http_port: int,
    backend_store_uri: str,
    default_artifact_root: str | None,
    artifacts_destination: str,
    auth: bool = False,
    insecure_no_auth: bool = False,
) -> None:
    configure_logging()
    auth_config = AuthConfig.from_env()
    if auth:
        auth_config = auth_config.model_copy(update={"enabled": True})
    refuse_open_without_auth(host, auth_config.enabled, insecure_no_auth)
    # A local folder, or s3://bucket/prefix with the MLGRID_S3_* settings from the environment.
    artifacts_config = ArtifactsConfig.from_env().model_copy(update={"destination": artifacts_destination})
    if not artifacts_config.is_s3:
        Path(artifacts_destination).mkdir(parents=True, exist_ok=True)
    config = StoreConfig(
        backend_store_uri=backend_store_uri,
        default_artifact_root=default_artifact_root or "mlgrid-artifacts:/",
        artifact_roots=[artifacts_destination],
    )

    async def main() -> None:
        store = await open_store(config)
        try:
            # The artifact service asks the tracking store of this process about runs.
            resolver = StoreRunResolver(store, artifacts_config.run_cache_seconds)
            # Tracking, and identity (users, tokens, permissions) on the same database; with auth on, one gate
            # in front of every service of this server.
            tracked, authority = await tracking_and_identity(
                config, auth_config, store, {ARTIFACTS: ARTIFACT_RULES, REGISTRY: REGISTRY_RULES}
            )
            gate = tracked[0].gate
            # The registry's tables are in the tracking database: it shares the tracking store's engine.
            registry_store = shared_store(store.engine, RegistryConfig.from_env())
            visibility = Visibility(authority.store, authority) if authority is not None else OPEN
            services = [
                *tracked,
                await artifact_service(artifacts_config, resolver, gate),
                registry_service(registry_store, visibility, gate),
            ]
        except BaseException:
            await store.close()
            raise
        shutdown = ServerConfig.from_env()  # MLGRID_SHUTDOWN_GRACE_SECONDS, MLGRID_SHUTDOWN_DRAIN_SECONDS
        await run_until_stopped(services, host, grpc_port, 0, shutdown.shutdown_grace_seconds, http_port=http_port,
                                http_app=rest_app, drain_seconds=shutdown.shutdown_drain_seconds)

    def rest_app(bound_grpc_port: int):
        loopback = f"{local_address(host)}:{bound_grpc_port}"
        config = GatewayConfig.from_env().model_copy(
            update={"tracking_target": loopback, "artifacts_target": loopback, "registry_target": loopback}
        )
        loopback_backends = backends(config)

        async def close_channels(app) -> None:
            for backend in loopback_backends:
                await backend.close()

        app = RestGateway(loopback_backends, config, auth_config).app
        app.on_cleanup.append(close_channels)
        return app

    try:
        run_event_loop(main())
    except MlgridError as e:
        sys.exit(f"mlgrid server: {e.message}")


def local_address(host: str) -> str:
    """Where this process reaches its own port listening on `host`."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def refuse_open_without_auth(host: str, auth: bool, insecure_no_auth: bool) -> None:
    """Serving beyond this machine without auth would let anyone who reaches it change and delete everything."""
    if auth or insecure_no_auth or is_loopback(host):
        return
    raise SystemExit(
        f"mlgrid server: refusing to listen on {host or 'every address'} without auth. Turn auth on with --auth "
        "(or MLGRID_AUTH=on) and set MLGRID_ADMIN_USERNAME and MLGRID_ADMIN_PASSWORD for the first admin; or, "
        "knowing that anyone who reaches this address may then read, change and delete everything, pass --insecure-no-auth."
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost, or "" (every address)
