"""Schema migrations (Alembic): `mlgrid db upgrade URI` applies them; servers refuse a stale schema."""
import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config import StoreConfig
from services.common.errors import FailedPrecondition
from services.db.engine import async_url, create_engine

MIGRATIONS_DIR = Path(__file__).parent


def alembic_config(uri: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", async_url(uri).replace("%", "%%"))
    return config


def upgrade(uri: str, revision: str = "head") -> None:
    """Bring the database at `uri` to `revision` (blocking; runs its own event loop)."""
    command.upgrade(alembic_config(uri), revision)


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def ensure_current(engine: AsyncEngine, uri: str, auto_init: bool) -> None:
    """Create the schema in an empty database (when auto_init); refuse any other revision than head."""

    def inspect_db(sync_conn):
        current = MigrationContext.configure(sync_conn).get_current_revision()
        return current, bool(inspect(sync_conn).get_table_names())

    async with engine.connect() as conn:
        current, has_tables = await conn.run_sync(inspect_db)
    head = head_revision()
    if current == head:
        return
    if current is None and not has_tables and auto_init:
        await asyncio.to_thread(upgrade, uri)
        return
    found = f"revision {current}" if current else "no mlgrid schema"
    raise FailedPrecondition(
        f"the database at {engine.url.render_as_string(hide_password=True)} has {found}, "
        f"this server needs revision {head}: run `mlgrid db upgrade <backend store URI>` first"
    )


@contextlib.asynccontextmanager
async def checked_engine(config: StoreConfig) -> AsyncIterator[AsyncEngine]:
    """An engine on the backend store with a current schema (see ensure_current), for the block to open
    a store on. Database errors in it become FAILED_PRECONDITION naming the store; if it fails, the
    engine is disposed, otherwise it is the store's to close."""
    engine = create_engine(config.backend_store_uri, config.db_pool_size)
    try:
        await ensure_current(engine, config.backend_store_uri, config.db_auto_init)
        yield engine
    except (OSError, DBAPIError) as e:
        await engine.dispose()
        where = engine.url.render_as_string(hide_password=True)
        raise FailedPrecondition(f"cannot use the backend store {where}: {e}. Check MLGRID_BACKEND_STORE_URI") from e
    except BaseException:
        await engine.dispose()
        raise
