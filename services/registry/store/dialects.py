"""Where the registry's two databases differ, chosen once when the store is built (dialect_of)."""
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.db.engine import dialect_insert

# pg_advisory_xact_lock key held by a writer from taking its event ids to its commit (any constant).
EVENT_LOCK_KEY = 0x6D6C677269640001


@dataclass(frozen=True)
class Dialect:
    insert: Callable  # the dialect's INSERT, whose on_conflict_do_update upserts tags, aliases and leases
    order_event_ids: Callable[[AsyncConnection], Awaitable[None]]  # awaited by a write just before it appends events


async def _lock_event_ids(conn: AsyncConnection) -> None:
    """Event ids must become visible in increasing order, or a watcher that has read id n could miss an n-1
    committed after it: writers take their ids one at a time, holding this lock until they commit. Taken
    last, after every row lock, it cannot deadlock with them."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_LOCK_KEY})


async def _serialized_already(conn: AsyncConnection) -> None:
    """SQLite serializes writers, so their event ids are committed in order without a lock."""


def dialect_of(engine: AsyncEngine) -> Dialect:
    postgresql = engine.dialect.name == "postgresql"
    return Dialect(insert=dialect_insert(engine), order_event_ids=_lock_event_ids if postgresql else _serialized_already)
