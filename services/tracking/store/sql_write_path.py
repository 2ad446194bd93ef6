"""The write path on SQLAlchemy: portable, the one SQLite uses (see write_path)."""
import math
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import InvalidArgument
from services.db import run_data_fields, validation
from services.db.clock import now_ms
from services.db.engine import dialect_insert
from services.db.schema import (
    datasets,
    ingest_batches,
    latest_metrics,
    logged_model_metrics,
    logged_models,
    metric_chunks,
    params,
    run_input_tags,
    run_inputs,
    runs,
    tags,
)
from services.tracking.store import batch
from services.tracking.store.base import ACTIVE, active_run, no_logged_model
from services.tracking.store.batch import RUN_NAME_TAG, PreparedBatch
from services.tracking.store.write_path import WritePath


async def upsert_tags(conn: AsyncConnection, run_id: str, tag_map: dict[str, str]) -> None:
    """Set run tags (the run's name follows mlflow.runName); also UpdateRun's rename, on either write path."""
    stmt = dialect_insert(conn)(tags)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["run_uuid", "key"], set_={"value": stmt.excluded.value, "encoded": stmt.excluded.encoded}
        ),
        [{"run_uuid": run_id, "key": k, "value": v, "encoded": run_data_fields.tag(k, v)} for k, v in tag_map.items()],
    )
    if RUN_NAME_TAG in tag_map:
        await conn.execute(update(runs).where(runs.c.run_uuid == run_id).values(name=tag_map[RUN_NAME_TAG]))


class SqlWritePath(WritePath):
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.insert = dialect_insert(engine)

    async def close(self) -> None:
        """Nothing of its own: the store disposes of the engine."""

    async def log_metric(self, run_id: str, key: str, value: float, timestamp: int, step: int) -> None:
        async with self.engine.begin() as conn:
            await active_run(conn, run_id)  # raises NotFound / FailedPrecondition
            await self._write_series(conn, run_id, batch.prepare([(key, [step], [timestamp], [value])], (), ()))

    async def store_batch(
        self, run_id: str, request_id: str, prepared: PreparedBatch, model_metrics: Sequence[pb.Metric] = ()
    ) -> bool:
        async with self.engine.begin() as conn:
            await active_run(conn, run_id)  # raises NotFound / FailedPrecondition
            if request_id:
                inserted = await conn.execute(
                    self.insert(ingest_batches)
                    .values(batch_id=request_id, run_uuid=run_id, created_time=now_ms())
                    .on_conflict_do_nothing(index_elements=["batch_id"])
                )
                if inserted.rowcount == 0:
                    return False
            if prepared.params:
                await self._insert_params(conn, run_id, prepared.params)
            if prepared.tags:
                await upsert_tags(conn, run_id, prepared.tags)
            if prepared.chunks:
                await self._write_series(conn, run_id, prepared)
            if model_metrics:
                await self._insert_model_metrics(conn, run_id, model_metrics)
        return True

    async def _insert_params(self, conn: AsyncConnection, run_id: str, new_params: dict[str, str]) -> None:
        existing = dict(
            (
                await conn.execute(
                    select(params.c.key, params.c.value).where(params.c.run_uuid == run_id, params.c.key.in_(list(new_params)))
                )
            ).all()
        )
        fresh = batch.params_to_insert(run_id, existing, new_params)
        if fresh:
            try:
                await conn.execute(
                    self.insert(params).on_conflict_do_nothing(index_elements=["run_uuid", "key"]),
                    [{"run_uuid": run_id, "key": k, "value": v, "encoded": run_data_fields.param(k, v)} for k, v in fresh.items()],
                )
            except IntegrityError:
                raise InvalidArgument(f"params of run {run_id} changed concurrently; retry the call") from None

    async def _write_series(self, conn: AsyncConnection, run_id: str, prepared: PreparedBatch) -> None:
        """Append the batch's chunks and advance latest_metrics where its points are newer."""
        chunk_columns = ("key", "n", "step_data", "timestamp_data", "value_data")
        latest_columns = ("key", "value", "is_nan", "timestamp", "step", "encoded")
        await conn.execute(
            metric_chunks.insert(), [{"run_uuid": run_id, **dict(zip(chunk_columns, c))} for c in prepared.chunks]
        )
        stmt = self.insert(latest_metrics)
        newer = (stmt.excluded.step > latest_metrics.c.step) | (
            (stmt.excluded.step == latest_metrics.c.step) & (stmt.excluded.timestamp >= latest_metrics.c.timestamp)
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_uuid", "key"],
                set_={c: stmt.excluded[c] for c in latest_columns[1:]},
                where=newer,
            ),
            [{"run_uuid": run_id, **dict(zip(latest_columns, row))} for row in prepared.latest],
        )

    async def _insert_model_metrics(self, conn: AsyncConnection, run_id: str, metrics: Sequence[pb.Metric]) -> None:
        """The points that name a model_id, as that logged model's metrics too."""
        ids = {validation.model_id(m.model_id) for m in metrics}
        found = set((await conn.execute(select(logged_models.c.model_id).where(
            logged_models.c.model_id.in_(ids), logged_models.c.lifecycle_stage == ACTIVE
        ))).scalars())
        if missing := ids - found:
            raise no_logged_model(sorted(missing)[0])
        stmt = self.insert(logged_model_metrics)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["model_id", "key", "step", "timestamp", "run_id", "dataset_name", "dataset_digest"],
                set_={"value": stmt.excluded.value, "is_nan": stmt.excluded.is_nan},
            ),
            [_model_metric_row(run_id, m) for m in metrics],
        )

    async def fill_run_data(self, conn: AsyncConnection, run_ids: list[str], by_id: dict[str, pb.Run]) -> None:
        encoded = defaultdict(list)
        for table in (params, tags, latest_metrics):
            for run_uuid, field in await conn.execute(select(table.c.run_uuid, table.c.encoded).where(table.c.run_uuid.in_(run_ids))):
                encoded[run_uuid].append(field)
        for run_uuid, fields in encoded.items():
            by_id[run_uuid].data.MergeFromString(b"".join(fields))

    async def fetch_inputs(self, conn: AsyncConnection, run_ids: list[str]):
        d, t = datasets.c, run_input_tags.c
        rows = (
            await conn.execute(
                select(run_inputs.c.run_uuid, d.dataset_uuid, d.name, d.digest, d.source_type, d.source, d.schema, d.profile)
                .join(datasets, d.dataset_uuid == run_inputs.c.dataset_uuid)
                .where(run_inputs.c.run_uuid.in_(run_ids))
                .order_by(run_inputs.c.run_uuid, d.name, d.digest)
            )
        ).all()
        if not rows:
            return rows, []
        return rows, (await conn.execute(select(t.run_uuid, t.dataset_uuid, t.key, t.value).where(t.run_uuid.in_(run_ids)))).all()

    async def read_together(self, *reads: Callable[[], Awaitable[None]]) -> None:
        for read in reads:  # they share one connection: one at a time
            await read()


def _model_metric_row(run_id: str, m: pb.Metric) -> dict:
    nan = math.isnan(m.value)  # stored as 0 with is_nan (SQLite cannot store NaN)
    return {
        "model_id": m.model_id, "key": m.key, "step": m.step, "timestamp": m.timestamp, "run_id": run_id,
        "dataset_name": m.dataset_name, "dataset_digest": m.dataset_digest, "value": 0.0 if nan else m.value, "is_nan": nan,
    }
