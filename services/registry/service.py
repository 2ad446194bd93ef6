"""Assembly of the registry service: engine, schema check, store and servicer."""
from sqlalchemy.ext.asyncio import AsyncEngine

from mlgrid.v1 import registry_pb2_grpc
from services.common.config import RegistryConfig, StoreConfig
from services.common.server import Service
from services.db.migrations import checked_engine
from services.registry.servicer import SERVICE_NAME, RegistryServicer
from services.registry.store.sql import SqlRegistryStore


async def open_store(config: StoreConfig, registry: RegistryConfig) -> SqlRegistryStore:
    """Connect to the tracking database and check (or, when empty, create) its schema, registry tables included."""
    async with checked_engine(config) as engine:
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
