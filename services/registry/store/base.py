"""What every topic of the registry store stands on: the engine and its autocommit reader, the dialect,
the event log that every write goes through, and the row checks that writes share."""
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mlgrid.v1 import registry_pb2 as pb
from services.common.errors import NotFound
from services.db.schema import model_versions, registered_models
from services.registry.store.dialects import dialect_of
from services.registry.store.events import EventLog, Tx


def no_model(name: str) -> NotFound:
    return NotFound(f"registered model {name!r} not found")


def no_version(name: str, version: int) -> NotFound:
    return NotFound(f"registered model {name!r} has no version {version}")


class RegistryBase:
    """The state every topic shares. `owns_engine`: close() disposes of the engine (False when it is shared
    with this process's tracking store); `poll_seconds`: how often watchers look for other processes' events."""

    def __init__(self, engine: AsyncEngine, poll_seconds: float = 0.2, owns_engine: bool = True):
        self.engine = engine
        self._owns_engine = owns_engine
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._dialect = dialect_of(engine)
        self._events = EventLog(engine, self._reader, self._dialect.order_event_ids, poll_seconds)

    def watch_events(self, after_event_id: int) -> AsyncIterator[pb.RegistryEvent]:
        return self._events.watch(after_event_id)

    def stop_watchers(self) -> None:
        self._events.stop()

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    def _write(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction; the events it records are appended to the log in it."""
        return self._events.write()

    async def _touch_model(self, tx: Tx, name: str) -> int:
        """Lock the model's row for this transaction, mark it updated; its id. NotFound if there is none."""
        row = (await tx.conn.execute(
            update(registered_models).where(registered_models.c.name == name)
            .values(last_updated_time=tx.now).returning(registered_models.c.model_id)
        )).first()
        if row is None:
            raise no_model(name)
        return row.model_id

    async def _require_version(self, conn: AsyncConnection, model_id: int, name: str, version: int) -> None:
        found = (await conn.execute(select(model_versions.c.version).where(
            model_versions.c.model_id == model_id, model_versions.c.version == version
        ))).first()
        if found is None:
            raise no_version(name, version)
