"""`python -m services.tracking`: the tracking service alone, configured from the environment."""
from services.common.config import StoreConfig
from services.common.server import serve_alone
from services.tracking.service import tracking_service

if __name__ == "__main__":
    serve_alone("tracking", lambda: tracking_service(StoreConfig.from_env()))
