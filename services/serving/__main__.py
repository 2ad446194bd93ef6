"""python -m services.serving: serve the models of MLGRID_SERVING_MODELS (OIP gRPC on
MLGRID_GRPC_PORT, default 8081; REST on MLGRID_SERVING_HTTP_PORT, default 8080)."""
import sys

from services.common.config import AuthConfig, ServerConfig, ServingConfig
from services.common.errors import MlgridError
from services.common.server import configure_logging, run_event_loop
from services.serving.service import DEFAULT_GRPC_PORT, parse_models, serve


def main() -> None:
    configure_logging()
    config = ServingConfig.from_env()
    try:
        run_event_loop(serve(
            parse_models(config.models, config), config, ServerConfig.from_env(grpc_port=DEFAULT_GRPC_PORT), AuthConfig.from_env()
        ))
    except MlgridError as error:
        sys.exit(f"mlgrid serving: {error.message}")


if __name__ == "__main__":
    main()
