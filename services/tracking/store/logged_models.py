"""MLflow 3's logged models in the tracking database: a model is an entity of an experiment with its own
artifact folder (<experiment artifact location>/models/<model_id>/artifacts), params, tags and metrics,
produced by a run (run_outputs) or used by one (run_model_inputs).

The tracking store (sql.py) owns one LoggedModels. A metric logged with a model_id is stored for the run and
for the model together or not at all, by the write path (write_path.WritePath.store_batch); runs.py reads the
models of runs with fill_runs.
"""
from __future__ import annotations

import math
import uuid
from collections.abc import Sequence

from sqlalchemy import Select, and_, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.db import validation
from services.db.clock import now_ms
from services.db.filters import (
    ATTRIBUTE_PREFIXES,
    COMPARE,
    TAG_PREFIXES,
    Comparison,
    Grammar,
    Visible,
    ordered,
    parse_filter,
)
from services.db.paging import decode_page_token, encode_page_token
from services.db.schema import (
    logged_model_metrics,
    logged_model_params,
    logged_model_tags,
    logged_models,
    run_model_inputs,
    run_outputs,
)
from services.tracking.store.base import ACTIVE, DELETED, StoreBase, active_run, experiment_row, no_logged_model, run_row
from services.tracking.store.names import generate_run_name

DEFAULT_PAGE = 100
RUN_ID_CHUNK = 10_000  # bound parameters per query, under SQLite's limit
MAX_MODEL_TYPE_LENGTH = 500

# Stored as MLflow's LoggedModelStatus entity names.
_STATUS_NAMES = {pb.LOGGED_MODEL_PENDING: "PENDING", pb.LOGGED_MODEL_READY: "READY", pb.LOGGED_MODEL_UPLOAD_FAILED: "UPLOAD_FAILED"}
_STATUS_VALUES = {name: value for value, name in _STATUS_NAMES.items()}

_ATTRIBUTES = {
    "model_id": logged_models.c.model_id,
    "name": logged_models.c.name,
    "model_type": logged_models.c.model_type,
    "status": logged_models.c.status,
    "source_run_id": logged_models.c.source_run_id,
    "creation_timestamp": logged_models.c.creation_time,
    "creation_time": logged_models.c.creation_time,
    "last_updated_timestamp": logged_models.c.last_updated_time,
}
_GRAMMAR = Grammar(
    subject="logged model",
    prefixes={"metric": "metric", "metrics": "metric", "param": "param", "params": "param", **TAG_PREFIXES, **ATTRIBUTE_PREFIXES},
    filter_attributes=_ATTRIBUTES,
    order_attributes=_ATTRIBUTES,
    bare_filter_attributes=True,
    order_entities=frozenset({"attribute", "metric"}),
    string_ops=("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"),
    keys_hint="name, model_id, status, source_run_id, creation_timestamp, metrics.<key>, params.<key> or tags.<key>",
)
_KEYED = {"param": logged_model_params, "tag": logged_model_tags}


def _check_key_values(kind: str, items: Sequence, value_limit) -> None:
    for item in items:
        value_limit(validation.key(kind, item.key), item.value)


class LoggedModels:
    def __init__(self, store: StoreBase):
        self._store = store  # for its engine, reader and dialect's insert

    # ------------------------------------------------------------ writes

    async def create(
        self, experiment_id: str, name: str, model_type: str, source_run_id: str,
        params: Sequence[pb.LoggedModelParameter], tags: Sequence[pb.LoggedModelTag],
    ) -> pb.LoggedModel:
        exp_id = validation.experiment_id(experiment_id or "0")
        name = validation.run_name(name or generate_run_name())
        if len(model_type) > MAX_MODEL_TYPE_LENGTH:
            raise InvalidArgument(f"model_type is {len(model_type)} characters; the limit is {MAX_MODEL_TYPE_LENGTH}")
        _check_key_values("logged model param", params, validation.param_value)
        _check_key_values("logged model tag", tags, validation.tag_value)
        model_id = f"m-{uuid.uuid4().hex}"
        async with self._store.engine.begin() as conn:
            exp = await experiment_row(conn, exp_id)
            if exp.lifecycle_stage != ACTIVE:
                raise FailedPrecondition(f"experiment {exp_id} is deleted: restore it, or log the model in another experiment")
            if source_run_id:
                await run_row(conn, validation.run_id(source_run_id))
            now = now_ms()
            await conn.execute(logged_models.insert().values(
                model_id=model_id, experiment_id=exp_id, name=name, source_run_id=source_run_id or None,
                status=_STATUS_NAMES[pb.LOGGED_MODEL_PENDING], status_message="", model_type=model_type,
                artifact_location=f"{exp.artifact_location.rstrip('/')}/models/{model_id}/artifacts",
                lifecycle_stage=ACTIVE, creation_time=now, last_updated_time=now,
            ))
            await self._upsert(conn, logged_model_params, model_id, params)
            await self._upsert(conn, logged_model_tags, model_id, tags)
        return await self.get(model_id)

    async def _upsert(self, conn: AsyncConnection, table, model_id: str, items: Sequence) -> None:
        if not items:
            return
        latest = {item.key: item.value for item in items}  # the last of repeated keys wins
        stmt = self._store.insert(table)
        await conn.execute(
            stmt.on_conflict_do_update(index_elements=["model_id", "key"], set_={"value": stmt.excluded.value}),
            [{"model_id": model_id, "key": k, "value": v} for k, v in latest.items()],
        )

    async def _touch(self, conn: AsyncConnection, model_id: str, **values) -> None:
        """Mark an active model updated (with `values`); NotFound when there is none."""
        result = await conn.execute(
            update(logged_models)
            .where(logged_models.c.model_id == validation.model_id(model_id), logged_models.c.lifecycle_stage == ACTIVE)
            .values(last_updated_time=now_ms(), **values)
        )
        if result.rowcount == 0:
            raise no_logged_model(model_id)

    async def finalize(self, model_id: str, status: int) -> pb.LoggedModel:
        if status not in (pb.LOGGED_MODEL_READY, pb.LOGGED_MODEL_UPLOAD_FAILED):
            raise InvalidArgument("a logged model is finalized as LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED")
        async with self._store.engine.begin() as conn:
            await self._touch(conn, model_id, status=_STATUS_NAMES[status])
        return await self.get(model_id)

    async def delete(self, model_id: str) -> None:
        """Soft delete, as MLflow: its files, and registered versions made from it, stay."""
        async with self._store.engine.begin() as conn:
            await self._touch(conn, model_id, lifecycle_stage=DELETED)

    async def set_tags(self, model_id: str, tags: Sequence[pb.LoggedModelTag]) -> None:
        _check_key_values("logged model tag", tags, validation.tag_value)
        async with self._store.engine.begin() as conn:
            await self._touch(conn, model_id)
            await self._upsert(conn, logged_model_tags, model_id, tags)

    async def delete_tag(self, model_id: str, key: str) -> None:
        async with self._store.engine.begin() as conn:
            await self._touch(conn, model_id)
            t = logged_model_tags.c
            if (await conn.execute(delete(logged_model_tags).where(t.model_id == model_id, t.key == key))).rowcount == 0:
                raise NotFound(f"logged model {model_id} has no tag {key!r}")

    async def log_params(self, model_id: str, params: Sequence[pb.LoggedModelParameter]) -> None:
        validation.batch_sizes(0, len(params), 0)
        _check_key_values("logged model param", params, validation.param_value)
        async with self._store.engine.begin() as conn:
            await self._touch(conn, model_id)
            await self._upsert(conn, logged_model_params, model_id, params)

    async def link_run(self, run_id: str, outputs: Sequence[pb.ModelOutput], inputs: Sequence[pb.ModelInput]) -> None:
        """Record models a run produced (outputs, at a step) or used (inputs)."""
        ids = {validation.model_id(m.model_id) for m in (*outputs, *inputs)}
        async with self._store.engine.begin() as conn:
            await active_run(conn, run_id)
            found = set((await conn.execute(select(logged_models.c.model_id).where(logged_models.c.model_id.in_(ids)))).scalars())
            if missing := ids - found:
                raise no_logged_model(sorted(missing)[0])
            if outputs:
                stmt = self._store.insert(run_outputs)
                await conn.execute(
                    stmt.on_conflict_do_update(index_elements=["run_uuid", "model_id"], set_={"step": stmt.excluded.step}),
                    [{"run_uuid": run_id, "model_id": m.model_id, "step": m.step} for m in outputs],
                )
            if inputs:
                await conn.execute(
                    self._store.insert(run_model_inputs).on_conflict_do_nothing(index_elements=["run_uuid", "model_id"]),
                    [{"run_uuid": run_id, "model_id": m.model_id} for m in inputs],
                )

    # ------------------------------------------------------------ reads

    async def get(self, model_id: str, allow_deleted: bool = False) -> pb.LoggedModel:
        conditions = [logged_models.c.model_id == validation.model_id(model_id)]
        if not allow_deleted:
            conditions.append(logged_models.c.lifecycle_stage == ACTIVE)
        async with self._store.reader.connect() as conn:
            rows = (await conn.execute(select(logged_models).where(*conditions))).all()
            if not rows:
                raise no_logged_model(model_id)
            return (await self._from_rows(conn, rows))[0]

    async def search(
        self, experiment_ids: Sequence[str], filter_string: str, datasets: Sequence, max_results: int,
        order_by: Sequence, page_token: str, visible: Visible | None = None,
    ) -> tuple[list[pb.LoggedModel], str]:
        limit = validation.max_results(max_results, default=DEFAULT_PAGE)
        offset = decode_page_token(page_token)
        query = self._search_select([validation.experiment_id(e) for e in experiment_ids], filter_string, datasets, order_by)
        if visible is not None:
            query = query.where(visible(logged_models.c.experiment_id))
        async with self._store.reader.connect() as conn:
            rows = (await conn.execute(query.offset(offset).limit(limit + 1))).all()
            found = await self._from_rows(conn, rows[:limit])
        return found, encode_page_token(offset + limit) if len(rows) > limit else ""

    @staticmethod
    def _search_select(experiment_ids: list[int], filter_string: str, datasets: Sequence, order_by: Sequence) -> Select:
        m = logged_model_metrics.c

        def in_datasets() -> list:
            """Metric points of the datasets asked for, if any."""
            if not datasets:
                return []
            return [or_(*[
                and_(m.dataset_name == d.dataset_name, *([m.dataset_digest == d.dataset_digest] if d.dataset_digest else []))
                for d in datasets
            ])]

        def condition(c: Comparison):
            if c.entity == "attribute":
                value = c.value
                if c.key == "status":
                    value = tuple(v.upper() for v in value) if isinstance(value, tuple) else value.upper()
                return COMPARE[c.op](_ATTRIBUTES[c.key], value)
            if c.entity == "metric":
                return exists().where(m.model_id == logged_models.c.model_id, m.key == c.key, m.is_nan.is_(False),
                                      COMPARE[c.op](m.value, c.value), *in_datasets())
            table = _KEYED[c.entity].c
            return exists().where(table.model_id == logged_models.c.model_id, table.key == c.key, COMPARE[c.op](table.value, c.value))

        conditions = [logged_models.c.lifecycle_stage == ACTIVE]
        if experiment_ids:
            conditions.append(logged_models.c.experiment_id.in_(experiment_ids))
        conditions += [condition(c) for c in parse_filter(filter_string, _GRAMMAR)]
        ordering = []
        for key in order_by:
            field = key.field_name
            if field.startswith("metrics."):
                # The model's latest point of that metric (highest step, then latest timestamp).
                latest = (select(m.value).where(m.model_id == logged_models.c.model_id, m.key == field[len("metrics."):],
                                                *in_datasets())
                          .order_by(m.step.desc(), m.timestamp.desc()).limit(1).scalar_subquery())
                ordering.append(ordered(latest, key.ascending, nulls_last=True))
            elif field in _ATTRIBUTES:
                ordering.append(ordered(_ATTRIBUTES[field], key.ascending, nulls_last=False))
            else:
                raise InvalidArgument(f"cannot order logged models by {field!r}: use {', '.join(_ATTRIBUTES)} or metrics.<key>")
        ordering += [logged_models.c.creation_time.desc(), logged_models.c.model_id.asc()]
        return select(logged_models).where(*conditions).order_by(*ordering)

    async def _from_rows(self, conn: AsyncConnection, rows) -> list[pb.LoggedModel]:
        found = []
        for r in rows:
            model = pb.LoggedModel()
            info = model.info
            info.model_id, info.experiment_id, info.name = r.model_id, str(r.experiment_id), r.name
            info.creation_timestamp_ms, info.last_updated_timestamp_ms = r.creation_time, r.last_updated_time
            info.artifact_uri, info.status = r.artifact_location, _STATUS_VALUES[r.status]
            info.model_type, info.source_run_id, info.status_message = r.model_type, r.source_run_id or "", r.status_message
            found.append(model)
        if not found:
            return found
        by_id = {model.info.model_id: model for model in found}
        ids = list(by_id)
        t, p, m = logged_model_tags.c, logged_model_params.c, logged_model_metrics.c
        for row in await conn.execute(select(t.model_id, t.key, t.value).where(t.model_id.in_(ids)).order_by(t.model_id, t.key)):
            by_id[row.model_id].info.tags.add(key=row.key, value=row.value)
        for row in await conn.execute(select(p.model_id, p.key, p.value).where(p.model_id.in_(ids)).order_by(p.model_id, p.key)):
            by_id[row.model_id].data.params.add(key=row.key, value=row.value)
        for row in await conn.execute(
            select(logged_model_metrics).where(m.model_id.in_(ids)).order_by(m.model_id, m.key, m.step, m.timestamp)
        ):
            by_id[row.model_id].data.metrics.add(
                key=row.key, value=math.nan if row.is_nan else row.value, timestamp=row.timestamp, step=row.step,
                dataset_name=row.dataset_name, dataset_digest=row.dataset_digest, model_id=row.model_id, run_id=row.run_id,
            )
        return found


async def fill_runs(conn: AsyncConnection, run_ids: list[str], by_id: dict[str, pb.Run]) -> None:
    """The model outputs and model inputs of the runs (a search page may hold 50,000: asked in chunks)."""
    o, i = run_outputs.c, run_model_inputs.c
    for start in range(0, len(run_ids), RUN_ID_CHUNK):
        chunk = run_ids[start : start + RUN_ID_CHUNK]
        for row in await conn.execute(select(o.run_uuid, o.model_id, o.step).where(o.run_uuid.in_(chunk)).order_by(o.run_uuid, o.model_id)):
            by_id[row.run_uuid].outputs.model_outputs.add(model_id=row.model_id, step=row.step)
        for row in await conn.execute(select(i.run_uuid, i.model_id).where(i.run_uuid.in_(chunk)).order_by(i.run_uuid, i.model_id)):
            by_id[row.run_uuid].inputs.model_inputs.add(model_id=row.model_id)
