"""Assembly of the identity service: its store on the tracking database's engine (the first admin created
from the settings), and the servicer. Served in the tracking service's process."""
import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from mlgrid.v1 import identity_pb2_grpc
from services.common.config import AuthConfig
from services.common.server import Service
from services.identity.gate import Gate
from services.identity.model import Permission
from services.identity.servicer import IdentityServicer
from services.identity.store import IdentityStore

SERVICE_NAME = "mlgrid.v1.IdentityService"
log = logging.getLogger("mlgrid.identity")


async def open_identity_store(engine: AsyncEngine, config: AuthConfig) -> IdentityStore:
    """The store on `engine` (owned by the caller), with the admin of MLGRID_ADMIN_USERNAME/_PASSWORD created
    if there is no user of that name yet."""
    try:
        store = IdentityStore(engine, Permission.parse(config.default_permission))
    except ValueError as error:
        raise SystemExit(f"MLGRID_AUTH_DEFAULT_PERMISSION: {error}") from None
    if config.admin_username and config.admin_password:
        await store.ensure_admin(config.admin_username, config.admin_password)
    elif config.admin_username or config.admin_password:
        log.warning("MLGRID_ADMIN_USERNAME and MLGRID_ADMIN_PASSWORD go together: no admin created")
    return store


def identity_service(store: IdentityStore, auth_enabled: bool, gate: Gate | None = None,
                     changed: Callable[[bool], None] | None = None) -> Service:
    """The service on `store`; the engine is closed by its owner (the tracking store). `changed`: called after
    each change of users, grants or tokens (True when credentials changed too)."""
    servicer = IdentityServicer(store, auth_enabled, changed)
    return Service(SERVICE_NAME, lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
                   gate=gate)
