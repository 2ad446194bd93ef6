"""Assembly of the tracking service: engine, schema check, store and servicer; and, in the same process on
the same engine, the identity service (users, tokens and permissions live in this database)."""
from mlgrid.v1 import tracking_pb2_grpc
from services.common.config import AuthConfig, StoreConfig
from services.common.server import Service
from services.db.migrations import checked_engine
from services.identity.access import IDENTITY_RULES
from services.identity.authority import LocalAuthority, local_authority
from services.identity.gate import Gate, gate_for
from services.identity.service import SERVICE_NAME as IDENTITY_SERVICE
from services.identity.service import identity_service, open_identity_store
from services.identity.visibility import OPEN, Visibility
from services.tracking.access import RULES, resolvers
from services.tracking.servicer import TrackingServicer
from services.tracking.store.sql import SqlTrackingStore

SERVICE_NAME = "mlgrid.v1.TrackingService"


async def open_store(config: StoreConfig) -> SqlTrackingStore:
    """Connect, check (or, on an empty database, create) the schema, and start the store."""
    async with checked_engine(config) as engine:
        store = SqlTrackingStore(engine, config)
        await store.start()
    return store


async def tracking_service(config: StoreConfig, store: SqlTrackingStore | None = None,
                           visibility: Visibility = OPEN, gate: Gate | None = None) -> Service:
    """The service on `store`, or on a store opened from `config`."""
    store = store or await open_store(config)
    servicer = TrackingServicer(store, visibility)
    return Service(
        SERVICE_NAME,
        lambda server: tracking_pb2_grpc.add_TrackingServiceServicer_to_server(servicer, server),
        store.close,
        gate=gate,
    )


async def tracking_services(config: StoreConfig, auth: AuthConfig) -> list[Service]:
    """`python -m services.tracking`: tracking and identity, from the settings."""
    return (await tracking_and_identity(config, auth))[0]


async def tracking_and_identity(config: StoreConfig, auth: AuthConfig, store: SqlTrackingStore | None = None,
                                others: dict | None = None) -> tuple[list[Service], LocalAuthority | None]:
    """Tracking and identity on `store` (or on a store opened from `config`); the first admin is created here.
    With auth on, both behind one gate, which also guards the `others` (full service name -> access rules)
    mounted on the same server; returns the services and the authority (None with auth off)."""
    store = store or await open_store(config)
    try:
        identity = await open_identity_store(store.engine, auth)
        if auth.enabled and not auth.oidc_issuer and not await identity.list_users():
            raise SystemExit(
                "auth is on but there is no user to sign in as: set MLGRID_ADMIN_USERNAME and MLGRID_ADMIN_PASSWORD "
                "(at least 12 characters) for the first admin, or MLGRID_AUTH_OIDC_ISSUER to sign in through OIDC"
            )
    except BaseException:
        await store.close()
        raise
    if not auth.enabled:
        return [await tracking_service(config, store), identity_service(identity, False)], None
    authority = local_authority(identity, auth, resolvers(store))
    gate = gate_for({SERVICE_NAME: RULES, IDENTITY_SERVICE: IDENTITY_RULES, **(others or {})}, authority)
    services = [
        await tracking_service(config, store, Visibility(identity, authority), gate),
        identity_service(identity, True, gate, authority.forget),
    ]
    return services, authority
