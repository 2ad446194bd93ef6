"""Aliases (models:/<name>@<alias>) and the resolution of every form of models:/ URI."""
from sqlalchemy import delete, func, select

from mlgrid.v1 import registry_pb2 as pb
from services.common.errors import NotFound
from services.db.schema import model_versions, registered_model_aliases, registered_models
from services.registry.store import validation
from services.registry.store.entities import VERSIONS
from services.registry.store.events import Event
from services.registry.store.models import ModelStore
from services.registry.store.stages import StageStore


class AliasStore(StageStore, ModelStore):
    """On StageStore (models:/<name>/<stage> names the stage's latest version) and ModelStore (a missing
    model is told apart from one without versions)."""

    async def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version`, moving it if it pointed at another version."""
        validation.alias(alias)
        number = validation.version(version)
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            await self._require_version(tx.conn, model_id, name, number)
            await tx.conn.execute(
                self._dialect.insert(registered_model_aliases).values(model_id=model_id, alias=alias, version=number)
                .on_conflict_do_update(index_elements=["model_id", "alias"], set_={"version": number})
            )
            tx.event(Event.ALIAS_SET, name, number, alias=alias)

    async def delete_registered_model_alias(self, name: str, alias: str) -> None:
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            row = (await tx.conn.execute(delete(registered_model_aliases).where(
                registered_model_aliases.c.model_id == model_id, registered_model_aliases.c.alias == alias
            ).returning(registered_model_aliases.c.version))).first()
            if row is None:
                raise NotFound(f"registered model {name!r} has no alias {alias!r}")
            tx.event(Event.ALIAS_DELETED, name, row.version, alias=alias)

    async def get_model_version_by_alias(self, name: str, alias: str) -> pb.ModelVersion:
        async with self._reader.connect() as conn:
            row = (await conn.execute(select(registered_model_aliases.c.version).select_from(
                registered_model_aliases.join(registered_models, registered_model_aliases.c.model_id == registered_models.c.model_id)
            ).where(registered_models.c.name == name, registered_model_aliases.c.alias == alias))).first()
        if row is None:
            raise NotFound(f"registered model {name!r} has no alias {alias!r}")
        return await self.get_model_version(name, str(row.version))

    async def resolve_model_uri(self, uri: str) -> pb.ModelVersion:
        """The version a models:/ URI names: by number, alias, stage (its highest version) or latest (highest of all)."""
        name, kind, value = validation.parse_models_uri(uri)
        if kind == "version":
            return await self.get_model_version(name, value)
        if kind == "alias":
            return await self.get_model_version_by_alias(name, value)
        if kind == "stage":
            found = await self.get_latest_versions(name, [value])
            if not found:
                raise NotFound(f"registered model {name!r} has no version in stage {value} ({uri})")
            return found[0]
        async with self._reader.connect() as conn:
            latest = (await conn.execute(select(func.max(model_versions.c.version)).select_from(VERSIONS).where(
                registered_models.c.name == name
            ))).scalar()
        if latest is None:
            await self.get_registered_model(name)  # NotFound when the model itself is missing
            raise NotFound(f"registered model {name!r} has no versions ({uri})")
        return await self.get_model_version(name, str(latest))
