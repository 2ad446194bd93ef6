"""Assembly of the tracking service: engine, schema check, store and servicer."""
from sqlalchemy.exc import DBAPIError

from mlgrid.v1 import tracking_pb2_grpc
from services.common.errors import FailedPrecondition
from services.common.config import StoreConfig
from services.common.db import create_engine
from services.common.server import Service
from services.tracking.migrations import ensure_current
from services.tracking.servicer import TrackingServicer
from services.tracking.store.sql import SqlTrackingStore

SERVICE_NAME = "mlgrid.v1.TrackingService"


async def open_store(config: StoreConfig) -> SqlTrackingStore:
    """Connect, check (or, on an empty database, create) the schema, and start the store."""
    engine = create_engine(config.backend_store_uri, config.db_pool_size)
    try:
        await ensure_current(engine, config.backend_store_uri, config.db_auto_init)
        store = SqlTrackingStore(engine, config)
        await store.start()
    except (OSError, DBAPIError) as e:
        await engine.dispose()
        where = engine.url.render_as_string(hide_password=True)
        raise FailedPrecondition(f"cannot use the backend store {where}: {e}. Check MLGRID_BACKEND_STORE_URI") from e
    except BaseException:
        await engine.dispose()
        raise
    return store


async def tracking_service(config: StoreConfig, store: SqlTrackingStore | None = None) -> Service:
    """The service on `store`, or on a store opened from `config`."""
    store = store or await open_store(config)
    servicer = TrackingServicer(store)
    return Service(
        SERVICE_NAME,
        lambda server: tracking_pb2_grpc.add_TrackingServiceServicer_to_server(servicer, server),
        store.close,
    )
