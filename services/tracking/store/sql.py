"""The tracking store on SQLAlchemy 2 asyncio: SQLite (aiosqlite) and PostgreSQL (asyncpg).

Entities cross this module as the mlgrid.v1 proto messages, which are the
domain types of the service: the servicer passes them through untouched.
"""
import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from types import SimpleNamespace

import numpy as np
from sqlalchemy import and_, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mlgrid.v1 import tracking_pb2 as pb
from services.common.config import StoreConfig
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.db import run_data_fields, validation
from services.db.clock import now_ms
from services.db.paging import decode_page_token, encode_page_token
from services.db.schema import (
    datasets,
    experiment_tags,
    experiments,
    ingest_batches,
    latest_metrics,
    metric_chunks,
    params,
    run_input_tags,
    run_inputs,
    runs,
    tags,
)
from services.tracking.store import batch, downsample, logged_models, metric_codec
from services.tracking.store.batch import RUN_NAME_TAG
from services.tracking.store.names import generate_run_name
from services.tracking.store.pg_hot_path import PgHotPath
from services.tracking.store.search import experiment_search_select, fetch_run_page

log = logging.getLogger("mlgrid.tracking")

ACTIVE, DELETED = "active", "deleted"
DEFAULT_EXPERIMENT_ID = 0
ID_CHUNK = 250  # runs per query when loading many runs
HISTORY_READS_AT_ONCE = 4


class SqlTrackingStore:
    def __init__(self, engine: AsyncEngine, config: StoreConfig):
        self.engine = engine
        # Reads run one statement at a time: autocommit spares them BEGIN and ROLLBACK round trips.
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.config = config
        self.dialect = engine.dialect.name
        self._insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        self._pg: PgHotPath | None = None
        self._pruner: asyncio.Task | None = None
        self.logged_models = logged_models.LoggedModels(self)

    async def start(self) -> None:
        """Make sure the default experiment "0" exists (the schema is checked by migrations.ensure_current),
        and start forgetting old batch ids."""
        if self.dialect == "postgresql":
            self._pg = await PgHotPath.connect(
                self.config.backend_store_uri, self.config.db_pool_size, self.config.metrics_synchronous_commit
            )
        await self._ensure_default_experiment()
        self._pruner = asyncio.create_task(self._prune_batch_ids_hourly())

    async def _prune_batch_ids_hourly(self) -> None:
        while True:
            try:
                await self.prune_batch_ids(now_ms() - self.config.ingest_dedup_hours * 3_600_000)
            except Exception:  # noqa: BLE001 - a failed pass is retried in an hour; the store keeps serving
                log.exception("could not prune old ingest batch ids")
            await asyncio.sleep(3600)

    async def prune_batch_ids(self, older_than_ms: int) -> int:
        """Forget the ids of batches stored before `older_than_ms`; returns how many."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(ingest_batches).where(ingest_batches.c.created_time < older_than_ms))
        return result.rowcount

    async def _ensure_default_experiment(self) -> None:
        async with self.engine.begin() as conn:
            now = now_ms()
            await conn.execute(
                self._insert(experiments)
                .values(
                    experiment_id=DEFAULT_EXPERIMENT_ID,
                    name="Default",
                    artifact_location=self._default_location(DEFAULT_EXPERIMENT_ID),
                    lifecycle_stage=ACTIVE,
                    creation_time=now,
                    last_update_time=now,
                )
                .on_conflict_do_nothing(index_elements=["experiment_id"])
            )

    async def close(self) -> None:
        if self._pruner:
            self._pruner.cancel()
        if self._pg:
            await self._pg.close()
        await self.engine.dispose()

    def _default_location(self, experiment_id: int) -> str:
        return f"{self.config.default_artifact_root.rstrip('/')}/{experiment_id}"

    # ------------------------------------------------------------ experiments

    async def create_experiment(self, name: str, artifact_location: str, tag_map: dict[str, str]) -> str:
        validation.experiment_name(name)
        if artifact_location:
            artifact_location = validation.artifact_location(artifact_location, self.config.artifact_roots)
        for key, value in tag_map.items():
            validation.tag_value(validation.key("experiment tag", key), value)
        async with self.engine.begin() as conn:
            existing = (await conn.execute(select(experiments.c.lifecycle_stage).where(experiments.c.name == name))).first()
            if existing:
                hint = " (it is deleted: restore it, or choose another name)" if existing.lifecycle_stage == DELETED else ""
                raise AlreadyExists(f"experiment {name!r} already exists{hint}")
            now = now_ms()
            try:
                result = await conn.execute(
                    experiments.insert().values(
                        name=name,
                        artifact_location=artifact_location or "",
                        lifecycle_stage=ACTIVE,
                        creation_time=now,
                        last_update_time=now,
                    )
                )
            except IntegrityError:
                raise AlreadyExists(f"experiment {name!r} already exists") from None
            experiment_id = result.inserted_primary_key[0]
            if not artifact_location:
                await conn.execute(
                    update(experiments)
                    .where(experiments.c.experiment_id == experiment_id)
                    .values(artifact_location=self._default_location(experiment_id))
                )
            if tag_map:
                await conn.execute(
                    experiment_tags.insert(),
                    [{"experiment_id": experiment_id, "key": k, "value": v} for k, v in tag_map.items()],
                )
        return str(experiment_id)

    async def get_experiment(self, experiment_id: str) -> pb.Experiment:
        async with self._reader.connect() as conn:
            row = await self._experiment_row(conn, validation.experiment_id(experiment_id))
            return (await self._experiments_from_rows(conn, [row]))[0]

    async def get_experiment_by_name(self, name: str) -> pb.Experiment:
        async with self._reader.connect() as conn:
            row = (await conn.execute(select(experiments).where(experiments.c.name == name))).first()
            if row is None:
                raise NotFound(f"no experiment named {name!r}")
            return (await self._experiments_from_rows(conn, [row]))[0]

    async def search_experiments(
        self, filter_string: str, view_type: int, order_by: Sequence[str], max_results: int, page_token: str
    ) -> tuple[list[pb.Experiment], str]:
        limit = validation.max_results(max_results)
        offset = decode_page_token(page_token)
        query = experiment_search_select(filter_string, view_type, list(order_by), offset, limit + 1)
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
            found = await self._experiments_from_rows(conn, rows[:limit])
        return found, encode_page_token(offset + limit) if len(rows) > limit else ""

    async def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        validation.experiment_name(new_name)
        async with self.engine.begin() as conn:
            row = await self._experiment_row(conn, validation.experiment_id(experiment_id))
            if row.lifecycle_stage != ACTIVE:
                raise FailedPrecondition(f"experiment {experiment_id} is deleted: restore it before renaming it")
            try:
                await conn.execute(
                    update(experiments)
                    .where(experiments.c.experiment_id == row.experiment_id)
                    .values(name=new_name, last_update_time=now_ms())
                )
            except IntegrityError:
                raise AlreadyExists(f"experiment {new_name!r} already exists; choose another name") from None

    async def set_experiment_lifecycle(self, experiment_id: str, stage: str) -> None:
        """Delete (soft) or restore an experiment, with the runs deleted along with it."""
        exp_id = validation.experiment_id(experiment_id)
        if exp_id == DEFAULT_EXPERIMENT_ID and stage == DELETED:
            raise InvalidArgument("the default experiment '0' cannot be deleted")
        async with self.engine.begin() as conn:
            row = await self._experiment_row(conn, exp_id)
            if row.lifecycle_stage == stage:
                raise FailedPrecondition(f"experiment {experiment_id} is already {stage}")
            now = now_ms()
            await conn.execute(
                update(experiments)
                .where(experiments.c.experiment_id == exp_id)
                .values(lifecycle_stage=stage, last_update_time=now)
            )
            if stage == DELETED:
                await conn.execute(
                    update(runs)
                    .where(runs.c.experiment_id == exp_id, runs.c.lifecycle_stage == ACTIVE)
                    .values(lifecycle_stage=DELETED, deleted_time=now)
                )
            else:
                await conn.execute(
                    update(runs)
                    .where(runs.c.experiment_id == exp_id, runs.c.deleted_time >= row.last_update_time)
                    .values(lifecycle_stage=ACTIVE, deleted_time=None)
                )

    async def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        validation.tag_value(validation.key("experiment tag", key), value)
        async with self.engine.begin() as conn:
            row = await self._experiment_row(conn, validation.experiment_id(experiment_id))
            if row.lifecycle_stage != ACTIVE:
                raise FailedPrecondition(f"experiment {experiment_id} is deleted: restore it before tagging it")
            stmt = self._insert(experiment_tags).values(experiment_id=row.experiment_id, key=key, value=value)
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["experiment_id", "key"], set_={"value": stmt.excluded.value})
            )

    async def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        async with self.engine.begin() as conn:
            row = await self._experiment_row(conn, validation.experiment_id(experiment_id))
            result = await conn.execute(
                delete(experiment_tags).where(experiment_tags.c.experiment_id == row.experiment_id, experiment_tags.c.key == key)
            )
            if result.rowcount == 0:
                raise NotFound(f"experiment {experiment_id} has no tag {key!r}")

    async def _experiment_row(self, conn: AsyncConnection, experiment_id: int):
        row = (await conn.execute(select(experiments).where(experiments.c.experiment_id == experiment_id))).first()
        if row is None:
            raise NotFound(f"experiment {experiment_id} does not exist")
        return row

    async def _experiments_from_rows(self, conn: AsyncConnection, rows) -> list[pb.Experiment]:
        found = [
            pb.Experiment(
                experiment_id=str(r.experiment_id),
                name=r.name,
                artifact_location=r.artifact_location,
                lifecycle_stage=r.lifecycle_stage,
                creation_time=r.creation_time,
                last_update_time=r.last_update_time,
            )
            for r in rows
        ]
        if found:
            by_id = {e.experiment_id: e for e in found}
            tag_rows = await conn.execute(
                select(experiment_tags).where(experiment_tags.c.experiment_id.in_([r.experiment_id for r in rows]))
            )
            for t in tag_rows:
                by_id[str(t.experiment_id)].tags[t.key] = t.value
        return found

    # ------------------------------------------------------------ runs

    async def create_run(
        self, experiment_id: str, user_id: str, start_time: int | None, run_tags: Iterable[pb.RunTag], run_name: str
    ) -> pb.Run:
        exp_id = validation.experiment_id(experiment_id or "0")
        validation.user_id(user_id)
        tag_map = {}
        for tag in run_tags:
            tag_map[validation.key("tag", tag.key)] = validation.tag_value(tag.key, tag.value)
        run_name = validation.run_name(run_name or tag_map.get(RUN_NAME_TAG) or generate_run_name())
        tag_map[RUN_NAME_TAG] = run_name
        run_uuid = uuid.uuid4().hex
        async with self.engine.begin() as conn:
            exp = await self._experiment_row(conn, exp_id)
            if exp.lifecycle_stage != ACTIVE:
                raise FailedPrecondition(f"experiment {exp_id} is deleted: restore it, or create the run in another experiment")
            row = {
                "run_uuid": run_uuid,
                "name": run_name,
                "experiment_id": exp_id,
                "user_id": user_id,
                "status": "RUNNING",
                "start_time": now_ms() if start_time is None else start_time,
                "end_time": None,
                "lifecycle_stage": ACTIVE,
                "artifact_uri": f"{exp.artifact_location.rstrip('/')}/{run_uuid}/artifacts",
            }
            await conn.execute(runs.insert().values(**row))
            await conn.execute(
                tags.insert(),
                [{"run_uuid": run_uuid, "key": k, "value": v, "encoded": run_data_fields.tag(k, v)} for k, v in tag_map.items()],
            )
        run = pb.Run(info=self._run_info(SimpleNamespace(**row)))
        run.data.tags.update(tag_map)
        return run

    async def get_run(self, run_id: str) -> pb.Run:
        async with self._reader.connect() as conn:
            row = await self._run_row(conn, validation.run_id(run_id))
            return (await self._load_runs(conn, [row], pb.SearchRunsResponse().runs))[0]

    async def update_run(self, run_id: str, status: int, end_time: int | None, run_name: str) -> pb.RunInfo:
        values = {}
        if status:
            if status not in pb.RunStatus.values():
                raise InvalidArgument(f"unknown run status {status}: use RUNNING, SCHEDULED, FINISHED, FAILED or KILLED")
            values["status"] = pb.RunStatus.Name(status)
        if end_time is not None:
            values["end_time"] = end_time
        if run_name:
            values["name"] = validation.run_name(run_name)
        async with self.engine.begin() as conn:
            await self._active_run(conn, run_id)
            if values:
                await conn.execute(update(runs).where(runs.c.run_uuid == run_id).values(**values))
            if run_name:
                await self._upsert_tags(conn, run_id, {RUN_NAME_TAG: run_name})
            return self._run_info(await self._run_row(conn, run_id))

    async def set_run_lifecycle(self, run_id: str, stage: str) -> None:
        async with self.engine.begin() as conn:
            row = await self._run_row(conn, validation.run_id(run_id))
            if stage == ACTIVE:
                exp = await self._experiment_row(conn, row.experiment_id)
                if exp.lifecycle_stage != ACTIVE:
                    raise FailedPrecondition(f"run {run_id} belongs to deleted experiment {exp.experiment_id}: restore that first")
            await conn.execute(
                update(runs)
                .where(runs.c.run_uuid == run_id)
                .values(lifecycle_stage=stage, deleted_time=now_ms() if stage == DELETED else None)
            )

    async def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str,
        view_type: int,
        order_by: Sequence[str],
        max_results: int,
        page_token: str,
    ) -> pb.SearchRunsResponse:
        """One page of runs, built in place in the response (a page can hold 50,000 runs: no copies)."""
        exp_ids = [validation.experiment_id(e) for e in experiment_ids] or None
        limit = validation.max_results(max_results)
        offset = decode_page_token(page_token)
        response = pb.SearchRunsResponse()
        async with self._reader.connect() as conn:
            rows = await fetch_run_page(conn, exp_ids, filter_string, view_type, list(order_by), offset, limit + 1)
            await self._load_runs(conn, rows[:limit], response.runs)
        if len(rows) > limit:
            response.next_page_token = encode_page_token(offset + limit)
        return response

    async def search_runs_pages(
        self,
        experiment_ids: Sequence[str],
        filter_string: str,
        view_type: int,
        order_by: Sequence[str],
        page_size: int,
        page_token: str,
    ) -> AsyncIterator[pb.SearchRunsResponse]:
        """Every page from page_token on; the next page is read while the caller sends this one."""
        args = (experiment_ids, filter_string, view_type, order_by, page_size)
        pending = asyncio.ensure_future(self.search_runs(*args, page_token))
        try:
            while pending is not None:
                page = await pending
                pending = asyncio.ensure_future(self.search_runs(*args, page.next_page_token)) if page.next_page_token else None
                yield page
        finally:
            if pending is not None:
                pending.cancel()

    async def _run_row(self, conn: AsyncConnection, run_id: str):
        row = (await conn.execute(select(runs).where(runs.c.run_uuid == run_id))).first()
        if row is None:
            raise NotFound(f"run {run_id} does not exist")
        return row

    async def _active_run(self, conn: AsyncConnection, run_id: str) -> None:
        """Writes need a run that exists and is not deleted (finished runs still take data, as in MLflow)."""
        stage = (
            await conn.execute(select(runs.c.lifecycle_stage).where(runs.c.run_uuid == validation.run_id(run_id)))
        ).scalar()
        if stage is None:
            raise NotFound(f"run {run_id} does not exist")
        if stage != ACTIVE:
            raise FailedPrecondition(f"run {run_id} is deleted: restore it (RestoreRun) before logging to it")

    @staticmethod
    def _run_info(row) -> pb.RunInfo:
        info = pb.RunInfo(
            run_id=row.run_uuid,
            run_name=row.name,
            experiment_id=str(row.experiment_id),
            user_id=row.user_id,
            status=pb.RunStatus.Value(row.status),
            start_time=row.start_time,
            artifact_uri=row.artifact_uri,
            lifecycle_stage=row.lifecycle_stage,
        )
        if row.end_time is not None:
            info.end_time = row.end_time
        return info

    async def _load_runs(self, conn: AsyncConnection, rows, into) -> list[pb.Run]:
        """Runs with their params, latest metrics, tags, inputs and logged models, in the order of `rows`, built in `into`
        (a repeated Run field, such as a response's)."""
        found = [into.add(info=self._run_info(r)) for r in rows]
        by_id = {run.info.run_id: run for run in found}
        ids = list(by_id)
        chunks = [ids[start : start + ID_CHUNK] for start in range(0, len(ids), ID_CHUNK)]
        if not ids:
            return found
        if self._pg:
            # Queries in flight together: the database answers one while this process builds another.
            await asyncio.gather(
                *(self._pg.fill_run_data({run_id: by_id[run_id] for run_id in chunk}) for chunk in chunks),
                self._load_inputs(conn, ids, by_id),
                self.logged_models.fill_runs(conn, ids, by_id),
            )
        else:
            for chunk in chunks:
                await self._fill_run_data(conn, chunk, by_id)
            await self._load_inputs(conn, ids, by_id)
            await self.logged_models.fill_runs(conn, ids, by_id)
        return found

    async def _fill_run_data(self, conn: AsyncConnection, chunk: list[str], by_id: dict[str, pb.Run]) -> None:
        """Params, tags and latest metrics of the runs in `chunk` (the portable path; PostgreSQL has its own)."""
        encoded = defaultdict(list)
        for table in (params, tags, latest_metrics):
            for run_uuid, field in await conn.execute(select(table.c.run_uuid, table.c.encoded).where(table.c.run_uuid.in_(chunk))):
                encoded[run_uuid].append(field)
        for run_uuid, fields in encoded.items():
            by_id[run_uuid].data.MergeFromString(b"".join(fields))

    async def _load_inputs(self, conn: AsyncConnection, run_ids: list[str], by_id: dict[str, pb.Run]) -> None:
        if self._pg:
            rows, tag_rows = await self._pg.fetch_inputs(run_ids)
        else:
            rows, tag_rows = await self._fetch_inputs(conn, run_ids)
        input_tags = defaultdict(list)
        for run_uuid, dataset_uuid, key, value in tag_rows:
            input_tags[run_uuid, dataset_uuid].append((key, value))
        current = None
        for run_uuid, dataset_uuid, name, digest, source_type, source, schema, profile in rows:
            if run_uuid != current:  # rows come grouped by run
                add, current = by_id[run_uuid].inputs.dataset_inputs.add, run_uuid
            item = add()
            dataset = item.dataset  # set in place: 2x faster than building and copying a Dataset
            dataset.name, dataset.digest, dataset.source_type, dataset.source = name, digest, source_type, source
            dataset.schema, dataset.profile = schema or "", profile or ""
            for key, value in input_tags.get((run_uuid, dataset_uuid), ()):
                item.tags.add(key=key, value=value)

    @staticmethod
    async def _fetch_inputs(conn: AsyncConnection, run_ids: list[str]):
        """(run, dataset, name, digest, source_type, source, schema, profile) rows and (run, dataset, key, value) tags."""
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

    # ------------------------------------------------------------ params, tags, metrics

    async def log_param(self, run_id: str, key: str, value: str) -> None:
        await self.log_batch(run_id, (), [pb.Param(key=key, value=value)], (), "")

    async def set_tag(self, run_id: str, key: str, value: str) -> None:
        await self.log_batch(run_id, (), (), [pb.RunTag(key=key, value=value)], "")

    async def delete_tag(self, run_id: str, key: str) -> None:
        async with self.engine.begin() as conn:
            await self._active_run(conn, run_id)
            result = await conn.execute(delete(tags).where(tags.c.run_uuid == run_id, tags.c.key == key))
            if result.rowcount == 0:
                raise NotFound(f"run {run_id} has no tag {key!r}")

    async def log_metric(self, run_id: str, key: str, value: float, timestamp: int, step: int, model: pb.Metric | None = None) -> None:
        """One point; with `model` (a Metric naming a model_id, and maybe a dataset), also a metric of that logged model."""
        validation.key("metric", key)
        if model is None and self._pg and await self._pg.log_metric(validation.run_id(run_id), key, value, timestamp, step):
            return
        async with self.engine.begin() as conn:
            await self._active_run(conn, run_id)  # raises NotFound / FailedPrecondition
            await self._write_series(conn, run_id, batch.prepare([(key, [step], [timestamp], [value])], (), ()))
            if model is not None:
                await self.logged_models.insert_metrics(conn, run_id, [model])

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
        async with self._reader.connect() as conn:
            await self._run_row(conn, validation.run_id(run_id))
            for key in {m.key for m in metrics}:
                steps, timestamps, values = metric_codec.unpack(await self._chunks(conn, run_id, key))
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
        if self._pg and not model_metrics:
            stored = await self._pg.store_batch(run_id, request_id, prepared, now_ms())
            if stored is not None:
                return stored
        async with self.engine.begin() as conn:
            await self._active_run(conn, run_id)  # raises NotFound / FailedPrecondition
            if request_id:
                inserted = await conn.execute(
                    self._insert(ingest_batches)
                    .values(batch_id=request_id, run_uuid=run_id, created_time=now_ms())
                    .on_conflict_do_nothing(index_elements=["batch_id"])
                )
                if inserted.rowcount == 0:
                    return False
            if prepared.params:
                await self._insert_params(conn, run_id, prepared.params)
            if prepared.tags:
                await self._upsert_tags(conn, run_id, prepared.tags)
            if prepared.chunks:
                await self._write_series(conn, run_id, prepared)
            if model_metrics:
                await self.logged_models.insert_metrics(conn, run_id, model_metrics)
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
                    self._insert(params).on_conflict_do_nothing(index_elements=["run_uuid", "key"]),
                    [{"run_uuid": run_id, "key": k, "value": v, "encoded": run_data_fields.param(k, v)} for k, v in fresh.items()],
                )
            except IntegrityError:
                raise InvalidArgument(f"params of run {run_id} changed concurrently; retry the call") from None

    async def _upsert_tags(self, conn: AsyncConnection, run_id: str, tag_map: dict[str, str]) -> None:
        stmt = self._insert(tags)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_uuid", "key"], set_={"value": stmt.excluded.value, "encoded": stmt.excluded.encoded}
            ),
            [{"run_uuid": run_id, "key": k, "value": v, "encoded": run_data_fields.tag(k, v)} for k, v in tag_map.items()],
        )
        if RUN_NAME_TAG in tag_map:
            await conn.execute(update(runs).where(runs.c.run_uuid == run_id).values(name=tag_map[RUN_NAME_TAG]))

    async def _write_series(self, conn: AsyncConnection, run_id: str, prepared: batch.PreparedBatch) -> None:
        """Append the batch's chunks and advance latest_metrics where its points are newer."""
        chunk_columns = ("key", "n", "step_data", "timestamp_data", "value_data")
        latest_columns = ("key", "value", "is_nan", "timestamp", "step", "encoded")
        await conn.execute(
            metric_chunks.insert(), [{"run_uuid": run_id, **dict(zip(chunk_columns, c))} for c in prepared.chunks]
        )
        stmt = self._insert(latest_metrics)
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

    async def metric_history(self, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All points of one metric, as (steps, timestamps, values) arrays ordered by step then timestamp."""
        async with self._reader.connect() as conn:
            await self._run_row(conn, validation.run_id(run_id))
            return metric_codec.unpack(await self._chunks(conn, run_id, key))

    async def sampled_metric_history(
        self, run_ids: Sequence[str], key: str, start_step: int | None, end_step: int | None, max_results: int
    ) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        """One metric of several runs for charts: per run (run_id, steps, timestamps, values) within
        [start_step, end_step], at most max_results points, peaks and dips kept (see downsample)."""
        validation.bulk_run_ids(run_ids)
        validation.key("metric", key)
        if (start_step is None) != (end_step is None):
            raise InvalidArgument("start_step and end_step go together: give both, or neither for every step")
        if start_step is not None and start_step > end_step:
            raise InvalidArgument(f"start_step ({start_step}) must not be above end_step ({end_step})")
        max_results = validation.max_results(max_results, downsample.DEFAULT_MAX_RESULTS, downsample.MAX_RESULTS)
        sampled = []
        # A few histories read at a time: concurrent on PostgreSQL, and never a long wait for the pool.
        for start in range(0, len(run_ids), HISTORY_READS_AT_ONCE):
            some = run_ids[start : start + HISTORY_READS_AT_ONCE]
            histories = await asyncio.gather(*(self.metric_history(run_id, key) for run_id in some))
            sampled += [
                (run_id, *downsample.downsample(history, start_step, end_step, max_results))
                for run_id, history in zip(some, histories)
            ]
        return sampled

    async def _chunks(self, conn: AsyncConnection, run_id: str, key: str):
        mc = metric_chunks.c
        return (
            await conn.execute(
                select(mc.step_data, mc.timestamp_data, mc.value_data)
                .where(mc.run_uuid == run_id, mc.key == key)
                .order_by(mc.chunk_id)
            )
        ).all()

    # ------------------------------------------------------------ inputs

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
            await self._active_run(conn, run_id)
            exp_id = (await conn.execute(select(runs.c.experiment_id).where(runs.c.run_uuid == run_id))).scalar()
            for item in inputs:
                d = item.dataset
                stmt = self._insert(datasets).values(
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
                    self._insert(run_inputs)
                    .values(run_uuid=run_id, dataset_uuid=dataset_uuid)
                    .on_conflict_do_nothing(index_elements=["run_uuid", "dataset_uuid"])
                )
                if item.tags:
                    stmt = self._insert(run_input_tags)
                    await conn.execute(
                        stmt.on_conflict_do_update(
                            index_elements=["run_uuid", "dataset_uuid", "key"], set_={"value": stmt.excluded.value}
                        ),
                        [{"run_uuid": run_id, "dataset_uuid": dataset_uuid, "key": t.key, "value": t.value} for t in item.tags],
                    )
