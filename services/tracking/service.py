"""Assembly of the tracking service: engine, schema check, store and servicer; and, in the same process on
the same engine, the identity service (users, tokens and permissions live in this database)."""
from mlgrid.v1 import tracking_pb2_grpc
from services.common.config import AuthConfig, StoreConfig
from services.common.server import Service
from services.db.migrations import checked_engine
from services.identity.service import identity_service, open_identity_store
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


async def tracking_services(config: StoreConfig, auth: AuthConfig, store: SqlTrackingStore | None = None) -> list[Service]:
    """Tracking and identity on `store` (or on a store opened from `config`); the first admin is created here."""
    store = store or await open_store(config)
    try:
        identity = await open_identity_store(store.engine, auth)
    except BaseException:
        await store.close()
        raise
    return [await tracking_service(config, store), identity_service(identity, auth.enabled)]
