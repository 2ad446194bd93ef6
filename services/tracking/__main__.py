"""`python -m services.tracking`: the tracking service alone, configured from the environment."""
import sys

from services.common.config import ServerConfig, StoreConfig
from services.common.errors import MlgridError
from services.common.server import configure_logging, run_event_loop, run_until_stopped
from services.tracking.service import tracking_service


async def main() -> None:
    server = ServerConfig.from_env()
    service = await tracking_service(StoreConfig.from_env())
    await run_until_stopped([service], server.host, server.grpc_port, server.metrics_port, server.shutdown_grace_seconds)


if __name__ == "__main__":
    configure_logging()
    try:
        run_event_loop(main())
    except MlgridError as e:
        sys.exit(f"mlgrid tracking: {e.message}")
