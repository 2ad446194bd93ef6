"""Tags of registered models and of model versions."""
from sqlalchemy import delete

from services.common.errors import NotFound
from services.db.schema import model_version_tags, registered_model_tags
from services.registry.store import validation
from services.registry.store.base import RegistryBase
from services.registry.store.events import Event


class TagStore(RegistryBase):
    """Tags of models and versions, each set or deleted with its event."""

    async def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        validation.tag("registered model tag", key, value)
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            await tx.conn.execute(
                self._dialect.insert(registered_model_tags).values(model_id=model_id, key=key, value=value)
                .on_conflict_do_update(index_elements=["model_id", "key"], set_={"value": value})
            )
            tx.event(Event.REGISTERED_MODEL_TAG_SET, name, key=key, value=value)

    async def delete_registered_model_tag(self, name: str, key: str) -> None:
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            deleted = await tx.conn.execute(delete(registered_model_tags).where(
                registered_model_tags.c.model_id == model_id, registered_model_tags.c.key == key
            ))
            if deleted.rowcount == 0:
                raise NotFound(f"registered model {name!r} has no tag {key!r}")
            tx.event(Event.REGISTERED_MODEL_TAG_DELETED, name, key=key)

    async def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        number = validation.version(version)
        validation.tag("model version tag", key, value)
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            await self._require_version(tx.conn, model_id, name, number)
            await tx.conn.execute(
                self._dialect.insert(model_version_tags).values(model_id=model_id, version=number, key=key, value=value)
                .on_conflict_do_update(index_elements=["model_id", "version", "key"], set_={"value": value})
            )
            tx.event(Event.MODEL_VERSION_TAG_SET, name, number, key=key, value=value)

    async def delete_model_version_tag(self, name: str, version: str, key: str) -> None:
        number = validation.version(version)
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            await self._require_version(tx.conn, model_id, name, number)
            deleted = await tx.conn.execute(delete(model_version_tags).where(
                model_version_tags.c.model_id == model_id, model_version_tags.c.version == number,
                model_version_tags.c.key == key,
            ))
            if deleted.rowcount == 0:
                raise NotFound(f"version {number} of registered model {name!r} has no tag {key!r}")
            tx.event(Event.MODEL_VERSION_TAG_DELETED, name, number, key=key)
