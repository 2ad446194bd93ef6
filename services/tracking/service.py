"""Assembly of the tracking service: engine, schema check, store and servicer."""
from mlgrid.v1 import tracking_pb2_grpc
from services.common.config import StoreConfig
from services.common.server import Service
from services.db.migrations import checked_engine
from services.tracking.servicer import TrackingServicer
from services.tracking.store.sql import SqlTrackingStore

SERVICE_NAME = "mlgrid.v1.TrackingService"


async def open_store(config: StoreConfig) -> SqlTrackingStore:
    """Connect, check (or, on an empty database, create) the schema, and start the store."""
    async with checked_engine(config) as engine:
        store = SqlTrackingStore(engine, config)
        await store.start()
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
