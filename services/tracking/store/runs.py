"""Runs: create, update, delete and restore; read one or search many, each loaded with its params, tags,
latest metrics, dataset inputs and logged models."""
import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from functools import partial
from types import SimpleNamespace

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import FailedPrecondition, InvalidArgument
from services.db import run_data_fields, validation
from services.db.clock import now_ms
from services.db.filters import Visible
from services.db.paging import decode_page_token, encode_page_token
from services.db.schema import runs, tags
from services.tracking.store import logged_models
from services.tracking.store.base import ACTIVE, DELETED, StoreBase, active_run, experiment_row, run_row
from services.tracking.store.batch import RUN_NAME_TAG
from services.tracking.store.names import generate_run_name
from services.tracking.store.search import fetch_run_page
from services.tracking.store.sql_write_path import upsert_tags

ID_CHUNK = 250  # runs per query when loading many runs


class RunStore(StoreBase):
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
            exp = await experiment_row(conn, exp_id)
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
        run = pb.Run(info=run_info(SimpleNamespace(**row)))
        run.data.tags.update(tag_map)
        return run

    async def get_run(self, run_id: str) -> pb.Run:
        async with self.reader.connect() as conn:
            row = await run_row(conn, validation.run_id(run_id))
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
            await active_run(conn, run_id)
            if values:
                await conn.execute(update(runs).where(runs.c.run_uuid == run_id).values(**values))
            if run_name:
                await upsert_tags(conn, run_id, {RUN_NAME_TAG: run_name})
            return run_info(await run_row(conn, run_id))

    async def set_run_lifecycle(self, run_id: str, stage: str) -> None:
        async with self.engine.begin() as conn:
            row = await run_row(conn, validation.run_id(run_id))
            if stage == ACTIVE:
                exp = await experiment_row(conn, row.experiment_id)
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
        visible: Visible | None = None,
    ) -> pb.SearchRunsResponse:
        """One page of runs, built in place in the response (a page can hold 50,000 runs: no copies)."""
        exp_ids = [validation.experiment_id(e) for e in experiment_ids] or None
        limit = validation.max_results(max_results)
        offset = decode_page_token(page_token)
        response = pb.SearchRunsResponse()
        async with self.reader.connect() as conn:
            rows = await fetch_run_page(conn, exp_ids, filter_string, view_type, list(order_by), offset, limit + 1, visible)
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
        visible: Visible | None = None,
    ) -> AsyncIterator[pb.SearchRunsResponse]:
        """Every page from page_token on; the next page is read while the caller sends this one."""
        args = (experiment_ids, filter_string, view_type, order_by, page_size)
        pending = asyncio.ensure_future(self.search_runs(*args, page_token, visible))
        try:
            while pending is not None:
                page = await pending
                pending = asyncio.ensure_future(self.search_runs(*args, page.next_page_token, visible)) if page.next_page_token else None
                yield page
        finally:
            if pending is not None:
                pending.cancel()

    async def _load_runs(self, conn: AsyncConnection, rows, into) -> list[pb.Run]:
        """Runs with their params, latest metrics, tags, inputs and logged models, in the order of `rows`, built in `into`
        (a repeated Run field, such as a response's)."""
        found = [into.add(info=run_info(r)) for r in rows]
        by_id = {run.info.run_id: run for run in found}
        ids = list(by_id)
        if not ids:
            return found
        chunks = [ids[start : start + ID_CHUNK] for start in range(0, len(ids), ID_CHUNK)]
        # Params, tags and latest metrics a chunk of runs at a time, their inputs, their logged models.
        await self.write_path.read_together(
            *(partial(self.write_path.fill_run_data, conn, chunk, by_id) for chunk in chunks),
            partial(self._load_inputs, conn, ids, by_id),
            partial(logged_models.fill_runs, conn, ids, by_id),
        )
        return found

    async def _load_inputs(self, conn: AsyncConnection, run_ids: list[str], by_id: dict[str, pb.Run]) -> None:
        rows, tag_rows = await self.write_path.fetch_inputs(conn, run_ids)
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


def run_info(row) -> pb.RunInfo:
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
