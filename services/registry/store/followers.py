"""Follower leases: a serving replica that follows a model holds a renewed lease on it, and while one is
live the model cannot be deleted (ModelStore.delete_registered_model). Leases are not events."""
from sqlalchemy import delete, select

from services.db.clock import now_ms
from services.db.schema import registered_model_followers, registered_models
from services.registry.store import validation
from services.registry.store.base import RegistryBase, no_model


class FollowerStore(RegistryBase):
    """Leases of the serving replicas that follow a model."""

    async def follow_model(self, name: str, follower: str, lease_seconds: int) -> int:
        """Start or renew `follower`'s lease on the model; when it ends (ms). Not an event: renewals are frequent."""
        validation.follower(follower)
        expires_at = now_ms() + validation.lease_seconds(lease_seconds) * 1000
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(registered_models.c.model_id).where(registered_models.c.name == name))).first()
            if row is None:
                raise no_model(name)
            await conn.execute(
                self._dialect.insert(registered_model_followers).values(model_id=row.model_id, follower=follower, expires_at=expires_at)
                .on_conflict_do_update(index_elements=["model_id", "follower"], set_={"expires_at": expires_at})
            )
        return expires_at

    async def unfollow_model(self, name: str, follower: str) -> None:
        async with self.engine.begin() as conn:
            model_id = select(registered_models.c.model_id).where(registered_models.c.name == name).scalar_subquery()
            await conn.execute(delete(registered_model_followers).where(
                registered_model_followers.c.model_id == model_id, registered_model_followers.c.follower == follower,
            ))
