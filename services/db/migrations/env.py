"""Alembic environment: runs migrations on the async engine of the configured URL."""
import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from services.db.schema import metadata


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
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
