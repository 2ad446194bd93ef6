"""Assembly of the registry service: engine, schema check, store and servicer."""
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from mlgrid.v1 import registry_pb2_grpc
from services.common.config import RegistryConfig, StoreConfig
from services.common.db import create_engine
from services.common.errors import FailedPrecondition
from services.common.server import Service
from services.registry.servicer import SERVICE_NAME, RegistryServicer
from services.registry.store.sql import SqlRegistryStore
from services.tracking.migrations import ensure_current


async def open_store(config: StoreConfig, registry: RegistryConfig) -> SqlRegistryStore:
    """Connect to the tracking database and check (or, when empty, create) its schema, registry tables included."""
    engine = create_engine(config.backend_store_uri, config.db_pool_size)
    try:
        await ensure_current(engine, config.backend_store_uri, config.db_auto_init)
    except (OSError, DBAPIError) as e:
        await engine.dispose()
        where = engine.url.render_as_string(hide_password=True)
        raise FailedPrecondition(f"cannot use the backend store {where}: {e}. Check MLGRID_BACKEND_STORE_URI") from e
    except BaseException:
        await engine.dispose()
        raise
    return SqlRegistryStore(engine, registry.event_poll_ms / 1000)


def shared_store(engine: AsyncEngine, registry: RegistryConfig) -> SqlRegistryStore:
    """A store on the engine of this process's tracking store (`mlgrid server`), which closes it."""
    return SqlRegistryStore(engine, registry.event_poll_ms / 1000, owns_engine=False)


def registry_service(store: SqlRegistryStore) -> Service:
    servicer = RegistryServicer(store)
    return Service(
        SERVICE_NAME,
        lambda server: registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server(servicer, server),
        store.close,
        store.stop_watchers,
    )
