"""`python -m services.gateway`: the gateway's gRPC routing (MLGRID_GRPC_PORT, default 50051) to the
backends at MLGRID_GATEWAY_{TRACKING,ARTIFACTS,REGISTRY,SERVING}_TARGET."""
from services.common.config import GatewayConfig, ServerConfig
from services.common.server import configure_logging, run_event_loop, run_until_stopped
from services.gateway.service import gateway_services


async def main() -> None:
    server = ServerConfig.from_env()
    services = gateway_services(GatewayConfig.from_env())  # one Service per routed name, hence not serve_alone
    await run_until_stopped(services, server.host, server.grpc_port, server.metrics_port, server.shutdown_grace_seconds)


if __name__ == "__main__":
    configure_logging()
    run_event_loop(main())
