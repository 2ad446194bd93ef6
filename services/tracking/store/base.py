"""What the parts of the tracking store share: the engine and its reader, the dialect's INSERT, the
write path chosen at start, and the experiment and run lookups that every topic makes before it acts."""
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.config import StoreConfig
from services.common.errors import FailedPrecondition, NotFound
from services.db import validation
from services.db.engine import dialect_insert
from services.db.schema import experiments, runs
from services.tracking.store.write_path import WritePath

ACTIVE, DELETED = "active", "deleted"


class StoreBase:
    """The state every part of the store (experiments, runs, writes, history) works with."""

    write_path: WritePath  # set by start(): SQLAlchemy, or asyncpg on PostgreSQL

    def __init__(self, engine: AsyncEngine, config: StoreConfig):
        self.engine = engine
        # Reads run one statement at a time: autocommit spares them BEGIN and ROLLBACK round trips.
        self.reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.config = config
        self.insert = dialect_insert(engine)


async def experiment_row(conn: AsyncConnection, experiment_id: int):
    row = (await conn.execute(select(experiments).where(experiments.c.experiment_id == experiment_id))).first()
    if row is None:
        raise NotFound(f"experiment {experiment_id} does not exist")
    return row


async def run_row(conn: AsyncConnection, run_id: str):
    row = (await conn.execute(select(runs).where(runs.c.run_uuid == run_id))).first()
    if row is None:
        raise NotFound(f"run {run_id} does not exist")
    return row


def no_logged_model(model_id: str) -> NotFound:
    return NotFound(f"logged model {model_id} does not exist")


def require_active(run_id: str, lifecycle_stage: str | None) -> None:
    """Writes need a run that exists (stage not None) and is not deleted (finished runs still take data, as in MLflow)."""
    if lifecycle_stage is None:
        raise NotFound(f"run {run_id} does not exist")
    if lifecycle_stage != ACTIVE:
        raise FailedPrecondition(f"run {run_id} is deleted: restore it (RestoreRun) before logging to it")


async def active_run(conn: AsyncConnection, run_id: str) -> None:
    """Raises NotFound or FailedPrecondition unless the run takes writes."""
    stage = (
        await conn.execute(select(runs.c.lifecycle_stage).where(runs.c.run_uuid == validation.run_id(run_id)))
    ).scalar()
    require_active(run_id, stage)

