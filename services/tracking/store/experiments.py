"""Experiments: create, read, search, rename, delete and restore (with their runs), tags."""
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.db import validation
from services.db.clock import now_ms
from services.db.filters import Visible
from services.db.paging import decode_page_token, encode_page_token
from services.db.schema import experiment_tags, experiments, runs
from services.tracking.store.base import ACTIVE, DELETED, StoreBase, experiment_row
from services.tracking.store.search import experiment_search_select

DEFAULT_EXPERIMENT_ID = 0


class ExperimentStore(StoreBase):
    async def _ensure_default_experiment(self) -> None:
        async with self.engine.begin() as conn:
            now = now_ms()
            await conn.execute(
                self.insert(experiments)
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

    def _default_location(self, experiment_id: int) -> str:
        return f"{self.config.default_artifact_root.rstrip('/')}/{experiment_id}"

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
        async with self.reader.connect() as conn:
            row = await experiment_row(conn, validation.experiment_id(experiment_id))
            return (await _experiments_from_rows(conn, [row]))[0]

    async def get_experiment_by_name(self, name: str) -> pb.Experiment:
        async with self.reader.connect() as conn:
            row = (await conn.execute(select(experiments).where(experiments.c.name == name))).first()
            if row is None:
                raise NotFound(f"no experiment named {name!r}")
            return (await _experiments_from_rows(conn, [row]))[0]

    async def search_experiments(
        self, filter_string: str, view_type: int, order_by: Sequence[str], max_results: int, page_token: str,
        visible: Visible | None = None,
    ) -> tuple[list[pb.Experiment], str]:
        limit = validation.max_results(max_results)
        offset = decode_page_token(page_token)
        query = experiment_search_select(filter_string, view_type, list(order_by), offset, limit + 1)
        if visible is not None:
            query = query.where(visible(experiments.c.experiment_id))
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query)).all()
            found = await _experiments_from_rows(conn, rows[:limit])
        return found, encode_page_token(offset + limit) if len(rows) > limit else ""

    async def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        validation.experiment_name(new_name)
        async with self.engine.begin() as conn:
            row = await experiment_row(conn, validation.experiment_id(experiment_id))
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
            row = await experiment_row(conn, exp_id)
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
            row = await experiment_row(conn, validation.experiment_id(experiment_id))
            if row.lifecycle_stage != ACTIVE:
                raise FailedPrecondition(f"experiment {experiment_id} is deleted: restore it before tagging it")
            stmt = self.insert(experiment_tags).values(experiment_id=row.experiment_id, key=key, value=value)
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["experiment_id", "key"], set_={"value": stmt.excluded.value})
            )

    async def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        async with self.engine.begin() as conn:
            row = await experiment_row(conn, validation.experiment_id(experiment_id))
            result = await conn.execute(
                delete(experiment_tags).where(experiment_tags.c.experiment_id == row.experiment_id, experiment_tags.c.key == key)
            )
            if result.rowcount == 0:
                raise NotFound(f"experiment {experiment_id} has no tag {key!r}")


async def _experiments_from_rows(conn: AsyncConnection, rows) -> list[pb.Experiment]:
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
