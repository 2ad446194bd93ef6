"""`python -m services.gateway`: the gateway's gRPC routing (MLGRID_GRPC_PORT, default 50051) to the
backends at MLGRID_GATEWAY_{TRACKING,ARTIFACTS,REGISTRY,SERVING}_TARGET, and MLflow's REST API over
the same backends (MLGRID_GATEWAY_HTTP_PORT, default 5000)."""
from services.common.config import GatewayConfig, ServerConfig
from services.common.server import configure_logging, run_event_loop, run_until_stopped
from services.gateway.rest import RestGateway
from services.gateway.service import backends, gateway_services


async def main() -> None:
    server = ServerConfig.from_env()
    config = GatewayConfig.from_env()
    routed = backends(config)  # one channel per backend, shared by the gRPC router and the REST API
    services = gateway_services(routed, config)  # one Service per routed name, hence not serve_alone
    await run_until_stopped(
        services, server.host, server.grpc_port, server.metrics_port, server.shutdown_grace_seconds,
        http_port=config.http_port, http_app=lambda grpc_port: RestGateway(routed, config).app,
    )


if __name__ == "__main__":
    configure_logging()
    run_event_loop(main())
