"""Alembic environment: runs migrations on the async engine of the configured URL."""
import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.db.schema import metadata

# One migrator at a time on PostgreSQL (the chart's migration Job and servers that start on an empty database
# at once): the others wait for its transaction, then find the schema current and have nothing to do.
MIGRATION_LOCK_KEY = 0x6D6C67726964  # "mlgrid"


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


async def run_async() -> None:
    engine = create_async_engine(context.config.get_main_option("sqlalchemy.url"))
    async with engine.connect() as conn:
        await conn.run_sync(run_migrations)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `mlgrid db upgrade URI`")
asyncio.run(run_async())
