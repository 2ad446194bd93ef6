"""The model registry store on SQLAlchemy 2 asyncio: SQLite (aiosqlite) and PostgreSQL (asyncpg).

Entities cross the store as the mlgrid.v1 registry messages. It is assembled from one class per topic,
each in its module on the shared base (base.py): registered models, versions, stages, aliases and
models:/ URIs, tags, follower leases; the event stream is the base's (events.py)."""
from services.registry.store.aliases import AliasStore
from services.registry.store.followers import FollowerStore
from services.registry.store.models import ModelStore
from services.registry.store.stages import StageStore
from services.registry.store.tags import TagStore
from services.registry.store.versions import VersionStore


class SqlRegistryStore(AliasStore, StageStore, VersionStore, ModelStore, TagStore, FollowerStore):
    """Every topic in one store, built as RegistryBase(engine, poll_seconds, owns_engine)."""
