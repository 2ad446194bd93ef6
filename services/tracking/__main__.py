"""`python -m services.tracking`: the tracking service alone, configured from the environment."""
from services.common.config import AuthConfig, StoreConfig
from services.common.server import serve_alone
from services.tracking.service import tracking_services

if __name__ == "__main__":
    serve_alone("tracking", lambda: tracking_services(StoreConfig.from_env(), AuthConfig.from_env()))
