"""The write path: how a run's params, tags and metric points reach the database, and how the data of many runs
is read back — one interface, two implementations, chosen once when the store starts (SqlTrackingStore.start):

- sql_write_path.SqlWritePath: SQLAlchemy, portable (SQLite, and PostgreSQL too);
- pg_write_path.PgWritePath: asyncpg directly on PostgreSQL, where SQLAlchemy's per-statement overhead and the
  round trips of BEGIN/COMMIT would dominate.

Callers hand them validated input (batch.prepare, validation.run_id). Both refuse the same writes with the same
errors, found out by the implementation itself: NotFound for a missing run, FailedPrecondition for a deleted one,
InvalidArgument for a changed param, NotFound for a missing logged model. Each writes params, tags and metrics
(and takes their row locks) in one place: its store_batch, and log_metric for a single point.
"""
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.v1 import tracking_pb2 as pb
from services.tracking.store.batch import PreparedBatch


class WritePath(ABC):
    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def log_metric(self, run_id: str, key: str, value: float, timestamp: int, step: int) -> None:
        """Store one point of a run's metric and advance its latest value."""

    @abstractmethod
    async def store_batch(
        self, run_id: str, request_id: str, prepared: PreparedBatch, model_metrics: Sequence[pb.Metric] = ()
    ) -> bool:
        """Store the batch in one transaction, with `model_metrics` (points naming a model_id) as those logged
        models' metrics too; False, and nothing stored, when request_id says it was stored already."""

    @abstractmethod
    async def fill_run_data(self, conn: AsyncConnection, run_ids: list[str], by_id: dict[str, pb.Run]) -> None:
        """Set the params, tags and latest metrics of `run_ids` on the pb.Run values of `by_id`.
        `conn` is the caller's reader connection, which an implementation may use or not."""

    @abstractmethod
    async def fetch_inputs(self, conn: AsyncConnection, run_ids: list[str]) -> tuple[Sequence, Sequence]:
        """The dataset inputs of the runs, as (run, dataset, name, digest, source_type, source, schema, profile)
        rows grouped by run, and their tags as (run, dataset, key, value) rows."""

    @abstractmethod
    async def read_together(self, *reads: Callable[[], Awaitable[None]]) -> None:
        """Run reads that fill different parts of the same runs: one after another where they share the caller's
        connection, concurrently where they can (the database answers one while this process builds another)."""
