"""Model versions: numbered per model without gaps under concurrent creates, made from a runs:/ source or a
logged model (models:/m-...) that must exist in the tracking tables; read, describe, delete, search."""
from collections.abc import Sequence

from sqlalchemy import delete, select, update

from mlgrid.v1 import registry_pb2 as pb
from services.common.errors import InvalidArgument, NotFound
from services.db import validation as db_validation
from services.db.filters import Visible
from services.db.paging import decode_page_token, encode_page_token
from services.db.schema import logged_models, model_version_tags, model_versions, registered_models, runs
from services.registry.store import validation
from services.registry.store.base import RegistryBase, no_model, no_version
from services.registry.store.entities import VERSION_COLUMNS, VERSIONS, versions_from_rows
from services.registry.store.events import Event
from services.registry.store.search import version_search_select


class VersionStore(RegistryBase):
    """Model versions, each written with its event."""

    async def create_model_version(
        self, name: str, source: str, run_id: str, tags: dict[str, str], run_link: str, description: str,
        logged_model_id: str = "",
    ) -> pb.ModelVersion:
        """A new version of `name`. A logged model (MLflow 3) is registered by its source models:/<model id>
        and/or `logged_model_id`; its run is then the model's source run, unless run_id says otherwise."""
        validation.source(source)
        logged_model_id = validation.logged_model_of(source, logged_model_id)
        from_source = validation.run_id_of(source)
        if run_id:
            db_validation.run_id(run_id)
            if from_source and run_id != from_source:
                raise InvalidArgument(f"run_id {run_id} differs from the run of source {source!r}; pass one or make them agree")
        run_id = run_id or from_source
        for key, value in tags.items():
            validation.tag("model version tag", key, value)
        async with self._write() as tx:
            # The counter row is locked until commit, so concurrent creates get 1, 2, 3... without gaps or repeats.
            row = (await tx.conn.execute(
                update(registered_models).where(registered_models.c.name == name)
                .values(last_version=registered_models.c.last_version + 1, last_updated_time=tx.now)
                .returning(registered_models.c.model_id, registered_models.c.last_version)
            )).first()
            if row is None:
                raise NotFound(f"registered model {name!r} not found; create it before registering versions")
            model_id, version = row
            if logged_model_id:
                logged = (await tx.conn.execute(
                    select(logged_models.c.source_run_id).where(logged_models.c.model_id == logged_model_id)
                )).first()
                if logged is None:
                    raise NotFound(f"logged model {logged_model_id} not found; a version's logged model must exist in the tracking store")
                run_id = run_id or logged.source_run_id or ""
            if run_id and (await tx.conn.execute(select(runs.c.run_uuid).where(runs.c.run_uuid == run_id))).first() is None:
                raise NotFound(f"run {run_id} not found; a model version's run must exist in the tracking store")
            await tx.conn.execute(model_versions.insert().values(
                model_id=model_id, version=version, creation_time=tx.now, last_updated_time=tx.now,
                current_stage="None", description=description, source=source, run_id=run_id, run_link=run_link,
                status=pb.ModelVersionStatus.Name(pb.READY), status_message="", logged_model_id=logged_model_id or None,
            ))
            if tags:
                await tx.conn.execute(model_version_tags.insert(), [
                    {"model_id": model_id, "version": version, "key": k, "value": v} for k, v in tags.items()
                ])
            tx.event(Event.MODEL_VERSION_CREATED, name, version, source=source, run_id=run_id)
        return await self.get_model_version(name, str(version))

    async def get_model_version(self, name: str, version: str) -> pb.ModelVersion:
        number = validation.version(version)
        async with self._reader.connect() as conn:
            row = (await conn.execute(select(*VERSION_COLUMNS).select_from(VERSIONS).where(
                registered_models.c.name == name, model_versions.c.version == number
            ))).first()
            if row is None:
                exists_model = (await conn.execute(select(registered_models.c.model_id).where(registered_models.c.name == name))).first()
                raise no_version(name, number) if exists_model else no_model(name)
            return (await versions_from_rows(conn, [row]))[0]

    async def update_model_version(self, name: str, version: str, description: str) -> pb.ModelVersion:
        number = validation.version(version)
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            updated = await tx.conn.execute(update(model_versions).where(
                model_versions.c.model_id == model_id, model_versions.c.version == number
            ).values(description=description, last_updated_time=tx.now))
            if updated.rowcount == 0:
                raise no_version(name, number)
            tx.event(Event.MODEL_VERSION_UPDATED, name, number)
        return await self.get_model_version(name, version)

    async def delete_model_version(self, name: str, version: str) -> None:
        """Delete the version with its tags and the aliases pointing at it; its number is never reused."""
        number = validation.version(version)
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            deleted = await tx.conn.execute(delete(model_versions).where(
                model_versions.c.model_id == model_id, model_versions.c.version == number
            ))
            if deleted.rowcount == 0:
                raise no_version(name, number)
            tx.event(Event.MODEL_VERSION_DELETED, name, number)

    async def search_model_versions(
        self, filter_string: str, max_results: int, order_by: Sequence[str], page_token: str,
        visible: Visible | None = None,
    ) -> tuple[list[pb.ModelVersion], str]:
        limit = db_validation.max_results(max_results, default=1000)
        offset = decode_page_token(page_token)
        query = version_search_select(filter_string, list(order_by), offset, limit + 1)
        if visible is not None:
            query = query.where(visible(registered_models.c.name))
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
            found = await versions_from_rows(conn, rows[:limit])
        return found, encode_page_token(offset + limit) if len(rows) > limit else ""
