"""The tracking store on SQLAlchemy 2 asyncio: SQLite (aiosqlite) and PostgreSQL (asyncpg).

One class assembled from its parts, a module per topic, so that the servicer, the artifact service's run
resolver, tests and bench call one object:

    experiments.py   ExperimentStore   experiments and their tags
    runs.py          RunStore          runs: create, update, delete; get and search with their data
    writes.py        RunWrites         params, tags, metric points, batches, ingest, dataset inputs
    history.py       MetricHistory     a metric's full history, and sampled for charts
    logged_models.py LoggedModels      MLflow 3's logged models (store.logged_models)

The parts share only what StoreBase holds (base.py); the write path (write_path.py) is chosen once, in start().
Entities cross the store as the mlgrid.v1 proto messages, which are the domain types of the service:
the servicer passes them through untouched.
"""
import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config import StoreConfig
from services.db.clock import now_ms
from services.tracking.store.experiments import ExperimentStore
from services.tracking.store.history import MetricHistory
from services.tracking.store.logged_models import LoggedModels
from services.tracking.store.pg_write_path import PgWritePath
from services.tracking.store.runs import RunStore
from services.tracking.store.sql_write_path import SqlWritePath
from services.tracking.store.write_path import WritePath
from services.tracking.store.writes import RunWrites

log = logging.getLogger("mlgrid.tracking")


class SqlTrackingStore(ExperimentStore, RunStore, RunWrites, MetricHistory):
    def __init__(self, engine: AsyncEngine, config: StoreConfig):
        super().__init__(engine, config)
        self.logged_models = LoggedModels(self)
        self._pruner: asyncio.Task | None = None

    async def start(self) -> None:
        """Choose the write path, make sure the default experiment "0" exists (the schema is checked by
        migrations.ensure_current), and start forgetting old batch ids."""
        self.write_path = await self._open_write_path()
        await self._ensure_default_experiment()
        self._pruner = asyncio.create_task(self._prune_batch_ids_hourly())

    async def _open_write_path(self) -> WritePath:
        if self.engine.dialect.name == "postgresql":
            return await PgWritePath.connect(
                self.config.backend_store_uri, self.config.db_pool_size, self.config.metrics_synchronous_commit
            )
        return SqlWritePath(self.engine)

    async def _prune_batch_ids_hourly(self) -> None:
        while True:
            try:
                await self.prune_batch_ids(now_ms() - self.config.ingest_dedup_hours * 3_600_000)
            except Exception:  # noqa: BLE001 - a failed pass is retried in an hour; the store keeps serving
                log.exception("could not prune old ingest batch ids")
            await asyncio.sleep(3600)

    async def close(self) -> None:
        if self._pruner:  # started, so the write path is open
            self._pruner.cancel()
            await self.write_path.close()
        await self.engine.dispose()
