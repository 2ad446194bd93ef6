"""A run's data written: params, tags, metric points (one, a batch, a streamed IngestBatch), dataset inputs.

Input is validated and prepared here (batch.prepare), then stored through the write path chosen at start
(write_path): SQLAlchemy, or asyncpg on PostgreSQL. The writes that are not hot (deleting a tag, dataset inputs,
pruning old batch ids) go through SQLAlchemy on either backend.
"""
import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import and_, delete, select

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import InvalidArgument, NotFound
from services.db import validation
from services.db.schema import datasets, ingest_batches, run_input_tags, run_inputs, runs, tags
from services.tracking.store import batch, metric_codec
from services.tracking.store.base import StoreBase, active_run, run_row
from services.tracking.store.history import chunks


class RunWrites(StoreBase):
    async def log_param(self, run_id: str, key: str, value: str) -> None:
        await self.log_batch(run_id, (), [pb.Param(key=key, value=value)], (), "")

    async def set_tag(self, run_id: str, key: str, value: str) -> None:
        await self.log_batch(run_id, (), (), [pb.RunTag(key=key, value=value)], "")

    async def delete_tag(self, run_id: str, key: str) -> None:
        async with self.engine.begin() as conn:
            await active_run(conn, run_id)
            result = await conn.execute(delete(tags).where(tags.c.run_uuid == run_id, tags.c.key == key))
            if result.rowcount == 0:
                raise NotFound(f"run {run_id} has no tag {key!r}")

    async def log_metric(self, run_id: str, key: str, value: float, timestamp: int, step: int, model: pb.Metric | None = None) -> None:
        """One point; with `model` (a Metric naming a model_id, and maybe a dataset), also a metric of that logged model."""
        validation.key("metric", key)
        run_id = validation.run_id(run_id)
        if model is None:
            await self.write_path.log_metric(run_id, key, value, timestamp, step)
        else:
            await self.write_path.store_batch(run_id, "", batch.prepare([(key, [step], [timestamp], [value])], (), ()), [model])

    async def log_batch(
        self,
        run_id: str,
        metrics: Sequence[pb.Metric],
        param_list: Sequence[pb.Param],
        tag_list: Sequence[pb.RunTag],
        request_id: str,
    ) -> bool:
        """Store the batch atomically; False when request_id says it was stored already. Metrics that name a
        model_id are also that logged model's; such a point already in the run's history is not added again."""
        validation.batch_sizes(len(metrics), len(param_list), len(tag_list))
        model_metrics = [m for m in metrics if m.model_id]
        if model_metrics:
            metrics = [m for m in metrics if not m.model_id] + await self._points_not_logged(run_id, model_metrics)
        series = defaultdict(lambda: ([], [], []))
        for m in metrics:
            steps, timestamps, values = series[m.key]
            steps.append(m.step)
            timestamps.append(m.timestamp)
            values.append(m.value)
        return await self._store_batch(
            run_id, request_id, [(k, *cols) for k, cols in series.items()], param_list, tag_list, model_metrics
        )

    async def _points_not_logged(self, run_id: str, metrics: Sequence[pb.Metric]) -> list[pb.Metric]:
        """The points that the run's history does not hold yet. MLflow's log_model logs the run's metrics of the
        model's step again with the model's id: MLflow's own store ignores such repeats, so this store does too."""
        logged = {}
        async with self.reader.connect() as conn:
            await run_row(conn, validation.run_id(run_id))
            for key in {m.key for m in metrics}:
                steps, timestamps, values = metric_codec.unpack(await chunks(conn, run_id, key))
                logged[key] = set(zip(steps.tolist(), timestamps.tolist(), values.tolist()))
        return [m for m in metrics if (m.step, m.timestamp, m.value) not in logged[m.key]]

    async def ingest(self, batch: pb.IngestBatch) -> tuple[bool, int]:
        """Store one IngestBatch atomically, at most once per batch_id; returns (stored now, points)."""
        if not batch.batch_id:
            raise InvalidArgument("every IngestBatch needs a batch_id (a client-chosen unique id, e.g. a UUID)")
        series, points = [], 0
        for s in batch.metrics:
            n = len(s.values)
            if len(s.steps) != n or len(s.timestamps) != n:
                raise InvalidArgument(
                    f"metric {s.key!r}: steps, timestamps and values must have the same length "
                    f"(got {len(s.steps)}, {len(s.timestamps)}, {n})"
                )
            if n:
                series.append((s.key, s.steps, s.timestamps, s.values))
                points += n
        if points > validation.MAX_INGEST_POINTS_PER_BATCH:
            raise InvalidArgument(
                f"an IngestBatch may hold at most {validation.MAX_INGEST_POINTS_PER_BATCH} points; "
                f"this one has {points}. Split it into several batches"
            )
        validation.batch_sizes(0, len(batch.params), len(batch.tags))
        stored = await self._store_batch(batch.run_id, batch.batch_id, series, batch.params, batch.tags)
        return stored, points if stored else 0

    async def _store_batch(self, run_id, request_id, series, param_list, tag_list, model_metrics=()) -> bool:
        prepared = batch.prepare(series, param_list, tag_list)
        validation.run_id(run_id)
        validation.request_id(request_id)
        return await self.write_path.store_batch(run_id, request_id, prepared, model_metrics)

    async def prune_batch_ids(self, older_than_ms: int) -> int:
        """Forget the ids of batches stored before `older_than_ms`; returns how many."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(ingest_batches).where(ingest_batches.c.created_time < older_than_ms))
        return result.rowcount

    async def log_inputs(self, run_id: str, inputs: Sequence[pb.DatasetInput]) -> None:
        for item in inputs:
            d = item.dataset
            if not d.name or not d.digest:
                raise InvalidArgument("every dataset input needs a dataset name and digest")
            if len(d.name) > 500 or len(d.digest) > 36 or len(d.source_type) > 36:
                raise InvalidArgument(
                    f"dataset {d.name[:40]!r}: name is limited to 500 characters, digest and source_type to 36"
                )
            for t in item.tags:
                if not t.key or len(t.key) > 255 or len(t.value) > 500:
                    raise InvalidArgument("input tag keys need 1 to 255 characters and values at most 500")
        async with self.engine.begin() as conn:
            await active_run(conn, run_id)
            exp_id = (await conn.execute(select(runs.c.experiment_id).where(runs.c.run_uuid == run_id))).scalar()
            for item in inputs:
                d = item.dataset
                stmt = self.insert(datasets).values(
                    dataset_uuid=uuid.uuid4().hex,
                    experiment_id=exp_id,
                    name=d.name,
                    digest=d.digest,
                    source_type=d.source_type,
                    source=d.source,
                    schema=d.schema or None,
                    profile=d.profile or None,
                )
                await conn.execute(stmt.on_conflict_do_nothing(index_elements=["experiment_id", "name", "digest"]))
                dataset_uuid = (
                    await conn.execute(
                        select(datasets.c.dataset_uuid).where(
                            and_(datasets.c.experiment_id == exp_id, datasets.c.name == d.name, datasets.c.digest == d.digest)
                        )
                    )
                ).scalar()
                await conn.execute(
                    self.insert(run_inputs)
                    .values(run_uuid=run_id, dataset_uuid=dataset_uuid)
                    .on_conflict_do_nothing(index_elements=["run_uuid", "dataset_uuid"])
                )
                if item.tags:
                    stmt = self.insert(run_input_tags)
                    await conn.execute(
                        stmt.on_conflict_do_update(
                            index_elements=["run_uuid", "dataset_uuid", "key"], set_={"value": stmt.excluded.value}
                        ),
                        [{"run_uuid": run_id, "dataset_uuid": dataset_uuid, "key": t.key, "value": t.value} for t in item.tags],
                    )
