"""Async SQLAlchemy engines for the stores: SQLite (aiosqlite) and PostgreSQL (asyncpg); and the upsert,
the one statement whose form differs between them."""
import asyncpg
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.common.errors import register_outage_check

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def async_url(uri: str) -> str:
    """`sqlite:///f.db` -> `sqlite+aiosqlite:///f.db`, `postgresql://...` -> `postgresql+asyncpg://...`."""
    url = make_url(uri)
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"unsupported backend store {uri!r}: use sqlite:///path.db or postgresql://user@host/db")
    return url.set(drivername=_ASYNC_DRIVERS[url.drivername.split("+")[0]]).render_as_string(hide_password=False)


def create_engine(uri: str, pool_size: int = 10) -> AsyncEngine:
    url = async_url(uri)
    if url.startswith("sqlite"):
        # One connection: SQLite serializes writers anyway, and a single
        # connection avoids "database is locked" between our own sessions.
        engine = create_async_engine(url, pool_size=1, max_overflow=0)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # Searches compile to statements whose best plan depends on the values (how
    # selective a filter is); PostgreSQL's generic plans, chosen after five runs
    # of a prepared statement, were 4x slower on them.
    settings = {"plan_cache_mode": "force_custom_plan"}
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, connect_args={"server_settings": settings})


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def dialect_insert(bind: AsyncEngine | AsyncConnection):
    """The INSERT of the engine's (or connection's) dialect: both have ON CONFLICT (upserts), each its own."""
    return pg_insert if bind.dialect.name == "postgresql" else sqlite_insert


# The database is down, restarting or in recovery, or refuses more connections: each call fails UNAVAILABLE
# until it is back, and the pools reconnect by themselves.
_ASYNCPG_OUTAGES = (
    asyncpg.exceptions.PostgresConnectionError,  # class 08: the connection failed, or does not exist any more
    asyncpg.exceptions.CannotConnectNowError,  # starting up or in recovery
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)


def is_database_outage(error: BaseException) -> bool:
    if isinstance(error, (*_ASYNCPG_OUTAGES, sa_exc.TimeoutError)):  # TimeoutError: no pooled connection in time
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, asyncpg.exceptions.InterfaceError) and "connection is closed" in str(error)


register_outage_check(is_database_outage)
