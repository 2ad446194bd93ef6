"""Assembly of the registry service: engine, schema check, store and servicer."""
from sqlalchemy.ext.asyncio import AsyncEngine

from mlgrid.v1 import registry_pb2_grpc
from services.common.config import AuthConfig, RegistryConfig, StoreConfig
from services.common.server import Service
from services.db.migrations import checked_engine
from services.identity.authority import local_authority
from services.identity.gate import Gate, gate_for
from services.identity.model import Permission
from services.identity.store import IdentityStore
from services.identity.visibility import OPEN, Visibility
from services.registry.access import RULES
from services.registry.servicer import SERVICE_NAME, RegistryServicer
from services.registry.store.sql import SqlRegistryStore


async def open_store(config: StoreConfig, registry: RegistryConfig) -> SqlRegistryStore:
    """Connect to the tracking database and check (or, when empty, create) its schema, registry tables included."""
    async with checked_engine(config) as engine:
        return SqlRegistryStore(engine, registry.event_poll_ms / 1000)


def shared_store(engine: AsyncEngine, registry: RegistryConfig) -> SqlRegistryStore:
    """A store on the engine of this process's tracking store (`mlgrid server`), which closes it."""
    return SqlRegistryStore(engine, registry.event_poll_ms / 1000, owns_engine=False)


def registry_service(store: SqlRegistryStore, visibility: Visibility = OPEN, gate: Gate | None = None) -> Service:
    servicer = RegistryServicer(store, visibility)
    return Service(
        SERVICE_NAME,
        lambda server: registry_pb2_grpc.add_ModelRegistryServiceServicer_to_server(servicer, server),
        store.close,
        store.stop_watchers,
        gate=gate,
    )


def secured_registry_service(store: SqlRegistryStore, auth: AuthConfig) -> Service:
    """The registry run alone: with auth on, behind a gate on its own view of the identity tables (the tracking
    service creates the first admin and serves the identity API)."""
    if not auth.enabled:
        return registry_service(store)
    try:
        identity = IdentityStore(store.engine, Permission.parse(auth.default_permission))
    except ValueError as error:
        raise SystemExit(f"MLGRID_AUTH_DEFAULT_PERMISSION: {error}") from None
    authority = local_authority(identity, auth)
    return registry_service(store, Visibility(identity, authority), gate_for({SERVICE_NAME: RULES}, authority))
