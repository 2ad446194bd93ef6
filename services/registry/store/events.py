"""The registry's event log. Every write runs in one transaction that also appends its events to
registry_events, so a change and its event are stored together or not at all; watchers read the log in
id order, woken at once by this process's commits and polling for those of other processes."""
import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mlgrid.v1 import registry_pb2 as pb
from services.common.errors import InvalidArgument, Unavailable
from services.db.clock import now_ms
from services.db.schema import registry_events

Event = pb.RegistryEvent
EVENT_PAGE = 500  # events read per query by a watcher


@dataclass
class Tx:
    """One write transaction: its connection, its time, and the events it appends when it commits."""
    conn: AsyncConnection
    now: int = field(default_factory=now_ms)
    events: list[dict] = field(default_factory=list)

    def event(self, kind: int, name: str, version: int | None = None, **details: str) -> None:
        self.events.append({
            "type": Event.Type.Name(kind), "timestamp": self.now, "name": name, "version": version,
            "details": json.dumps(details),
        })


class EventLog:
    def __init__(
        self, engine: AsyncEngine, reader: AsyncEngine, order_event_ids: Callable[[AsyncConnection], Awaitable[None]],
        poll_seconds: float,
    ):
        self._engine = engine
        self._reader = reader
        self._order_event_ids = order_event_ids
        self._poll_seconds = poll_seconds
        # Set (and replaced) after each commit of this process, to wake its watchers at once;
        # changes made by other processes are seen by polling.
        self._committed = asyncio.Event()
        self._stopping = False

    def stop(self) -> None:
        """End every watch with UNAVAILABLE (the server is stopping): watchers reconnect and resume."""
        self._stopping = True
        self._committed.set()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        async with self._engine.begin() as conn:
            tx = Tx(conn)
            yield tx
            if tx.events:
                await self._order_event_ids(conn)
                await conn.execute(registry_events.insert(), tx.events)
        self._committed.set()
        self._committed = asyncio.Event()

    async def watch(self, after_event_id: int) -> AsyncIterator[pb.RegistryEvent]:
        """Every stored event after `after_event_id` (-1: after the latest stored one), then each new one as
        it is committed, until the server stops."""
        if after_event_id < -1:
            raise InvalidArgument(f"after_event_id must be -1 (new events only), 0 (all) or a previous event's id, got {after_event_id}")
        last = after_event_id
        if last == -1:
            async with self._reader.connect() as conn:
                last = (await conn.execute(select(func.max(registry_events.c.event_id)))).scalar() or 0
        while not self._stopping:
            woken = self._committed  # taken before reading, so a commit during the read is not missed
            async with self._reader.connect() as conn:
                rows = (await conn.execute(select(registry_events).where(registry_events.c.event_id > last)
                                           .order_by(registry_events.c.event_id).limit(EVENT_PAGE))).all()
            for row in rows:
                yield pb.RegistryEvent(
                    event_id=row.event_id, type=Event.Type.Value(row.type), timestamp=row.timestamp, name=row.name,
                    version="" if row.version is None else str(row.version), details=json.loads(row.details),
                )
                last = row.event_id
            if len(rows) < EVENT_PAGE:
                try:
                    await asyncio.wait_for(woken.wait(), self._poll_seconds)
                except asyncio.TimeoutError:
                    pass
        raise Unavailable(f"the registry is stopping; watch again with after_event_id={last} to resume")
