"""`python -m services.gateway`: the gateway's gRPC routing (MLGRID_GRPC_PORT, default 50051) to the
backends at MLGRID_GATEWAY_{TRACKING,ARTIFACTS,REGISTRY,SERVING}_TARGET — by nginx where it is installed
(MLGRID_GATEWAY_NGINX), in Python otherwise — and MLflow's REST API and the web UI over the same backends
(MLGRID_GATEWAY_HTTP_PORT, default 5000)."""
import sys

from services.common.config import AuthConfig, GatewayConfig, ServerConfig
from services.common.errors import MlgridError
from services.common.server import configure_logging, free_port, run_event_loop, run_until_stopped
from services.gateway.nginx import NginxDataPlane, nginx_binary
from services.gateway.rest import RestGateway
from services.gateway.service import backends, gateway_services


def then(first, second):
    """A `started` hook that runs `first` (given the health servicer), then `second`."""

    async def started(health_servicer) -> None:
        await first(health_servicer)
        await second()

    return started


async def main() -> None:
    server = ServerConfig.from_env()
    config = GatewayConfig.from_env()
    auth = AuthConfig.from_env()  # the UI's sign-in: its OIDC client and session length
    routed = backends(config)  # one channel per backend, shared by the gRPC router and the REST API
    services = gateway_services(routed, config)  # one Service per routed name, hence not serve_alone
    binary = nginx_binary(config.nginx)
    data_plane = None
    grpc_host, grpc_port = server.host, server.grpc_port
    if binary:  # nginx takes the public port; the Python server answers what nginx does not route, on loopback
        grpc_host, grpc_port = "127.0.0.1", free_port()
        data_plane = NginxDataPlane(binary, routed, server.host, server.grpc_port, grpc_port, server.shutdown_grace_seconds)
        # Once the Python server listens and every health mirror has set its service's status.
        services[-1].started = then(services[-1].started, data_plane.start)
    try:
        await run_until_stopped(
            services, grpc_host, grpc_port, server.metrics_port, server.shutdown_grace_seconds,
            http_port=config.http_port, http_app=lambda bound: RestGateway(routed, config, auth).app, http_host=server.host,
            drain_seconds=server.shutdown_drain_seconds,
        )
    finally:
        if data_plane is not None:
            await data_plane.stop()


if __name__ == "__main__":
    configure_logging()
    try:
        run_event_loop(main())
    except MlgridError as error:
        sys.exit(f"mlgrid gateway: {error.message}")
