"""Registered models: create, read, rename, describe, delete (refused while a server follows the model), search."""
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from mlgrid.v1 import registry_pb2 as pb
from services.common.errors import AlreadyExists, FailedPrecondition
from services.db import validation as db_validation
from services.db.filters import Visible
from services.db.paging import decode_page_token, encode_page_token
from services.db.schema import registered_model_followers, registered_model_tags, registered_models
from services.registry.store import validation
from services.registry.store.base import RegistryBase, no_model
from services.registry.store.entities import models_from_rows
from services.registry.store.events import Event
from services.registry.store.search import model_search_select


class ModelStore(RegistryBase):
    """Registered models, each written with its event."""

    async def create_registered_model(self, name: str, tags: dict[str, str], description: str) -> pb.RegisteredModel:
        validation.model_name(name)
        for key, value in tags.items():
            validation.tag("registered model tag", key, value)
        try:
            async with self._write() as tx:
                model_id = (await tx.conn.execute(registered_models.insert().values(
                    name=name, description=description, creation_time=tx.now, last_updated_time=tx.now, last_version=0,
                ))).inserted_primary_key[0]
                if tags:
                    await tx.conn.execute(
                        registered_model_tags.insert(), [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()]
                    )
                tx.event(Event.REGISTERED_MODEL_CREATED, name)
        except IntegrityError:
            raise AlreadyExists(f"registered model {name!r} already exists; choose another name") from None
        return await self.get_registered_model(name)

    async def get_registered_model(self, name: str) -> pb.RegisteredModel:
        async with self._reader.connect() as conn:
            row = (await conn.execute(select(registered_models).where(registered_models.c.name == name))).first()
            if row is None:
                raise no_model(name)
            return (await models_from_rows(conn, [row]))[0]

    async def rename_registered_model(self, name: str, new_name: str) -> pb.RegisteredModel:
        validation.model_name(new_name)
        try:
            async with self._write() as tx:
                model_id = await self._touch_model(tx, name)
                if new_name != name:
                    await tx.conn.execute(
                        update(registered_models).where(registered_models.c.model_id == model_id).values(name=new_name)
                    )
                tx.event(Event.REGISTERED_MODEL_RENAMED, new_name, old_name=name)
        except IntegrityError:
            raise AlreadyExists(f"cannot rename {name!r}: registered model {new_name!r} already exists") from None
        return await self.get_registered_model(new_name)

    async def update_registered_model(self, name: str, description: str) -> pb.RegisteredModel:
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            await tx.conn.execute(
                update(registered_models).where(registered_models.c.model_id == model_id).values(description=description)
            )
            tx.event(Event.REGISTERED_MODEL_UPDATED, name)
        return await self.get_registered_model(name)

    async def delete_registered_model(self, name: str) -> None:
        """Delete the model with its versions, tags and aliases; refused while a server follows it."""
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            followers = (await tx.conn.execute(select(registered_model_followers.c.follower).where(
                registered_model_followers.c.model_id == model_id, registered_model_followers.c.expires_at > tx.now,
            ).order_by(registered_model_followers.c.follower))).scalars().all()
            if followers:
                raise FailedPrecondition(
                    f"registered model {name!r} is being served by {', '.join(followers)}; stop serving it "
                    "(or let those leases run out) before deleting it"
                )
            await tx.conn.execute(delete(registered_models).where(registered_models.c.model_id == model_id))
            tx.event(Event.REGISTERED_MODEL_DELETED, name)

    async def search_registered_models(
        self, filter_string: str, max_results: int, order_by: Sequence[str], page_token: str,
        visible: Visible | None = None,
    ) -> tuple[list[pb.RegisteredModel], str]:
        limit = db_validation.max_results(max_results, default=100)
        offset = decode_page_token(page_token)
        query = model_search_select(filter_string, list(order_by), offset, limit + 1)
        if visible is not None:
            query = query.where(visible(registered_models.c.name))
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
            found = await models_from_rows(conn, rows[:limit])
        return found, encode_page_token(offset + limit) if len(rows) > limit else ""
