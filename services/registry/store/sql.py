"""The model registry store on SQLAlchemy 2 asyncio: SQLite (aiosqlite) and PostgreSQL (asyncpg).

Entities cross this module as the mlgrid.v1 registry messages. Every write
runs in one transaction that also appends its events to registry_events, so a
change and its event are stored together or not at all.
"""
import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mlgrid.v1 import registry_pb2 as pb
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.db import validation as db_validation
from services.db.clock import now_ms
from services.db.paging import decode_page_token, encode_page_token
from services.db.schema import (
    logged_models,
    model_version_tags,
    model_versions,
    registered_model_aliases,
    registered_model_followers,
    registered_model_tags,
    registered_models,
    registry_events,
    runs,
)
from services.registry.store import validation
from services.registry.store.search import model_search_select, version_search_select

Event = pb.RegistryEvent
EVENT_PAGE = 500  # events read per query by a watcher
# pg_advisory_xact_lock key held by a writer from taking its event ids to its commit (any constant).
EVENT_LOCK_KEY = 0x6D6C677269640001


@dataclass
class _Tx:
    conn: AsyncConnection
    now: int = field(default_factory=now_ms)
    events: list[dict] = field(default_factory=list)

    def event(self, kind: int, name: str, version: int | None = None, **details: str) -> None:
        self.events.append({
            "type": Event.Type.Name(kind), "timestamp": self.now, "name": name, "version": version,
            "details": json.dumps(details),
        })


def _no_model(name: str) -> NotFound:
    return NotFound(f"registered model {name!r} not found")


def _no_version(name: str, version: int) -> NotFound:
    return NotFound(f"registered model {name!r} has no version {version}")


_VERSION_COLUMNS = (*model_versions.c, registered_models.c.name)
_VERSIONS = model_versions.join(registered_models, model_versions.c.model_id == registered_models.c.model_id)


class SqlRegistryStore:
    def __init__(self, engine: AsyncEngine, poll_seconds: float = 0.2, owns_engine: bool = True):
        self.engine = engine
        self._owns_engine = owns_engine
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.dialect = engine.dialect.name
        self._insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        self._poll_seconds = poll_seconds
        # Set (and replaced) after each commit of this process, to wake its watchers at once;
        # changes made by other processes are seen by polling.
        self._committed = asyncio.Event()
        self._stopping = False

    def stop_watchers(self) -> None:
        """End every watch with UNAVAILABLE (the server is stopping): watchers reconnect and resume."""
        self._stopping = True
        self._committed.set()

    async def close(self) -> None:
        if self._owns_engine:
            await self.engine.dispose()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[_Tx]:
        async with self.engine.begin() as conn:
            tx = _Tx(conn)
            yield tx
            if tx.events:
                if self.dialect == "postgresql":
                    # Event ids must become visible in increasing order, or a watcher that has read
                    # id n could miss an n-1 committed after it: writers take their ids one at a time,
                    # holding this lock until they commit. Taken last, after every row lock, it
                    # cannot deadlock with them. (SQLite serializes writers anyway.)
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": EVENT_LOCK_KEY})
                await conn.execute(registry_events.insert(), tx.events)
        self._committed.set()
        self._committed = asyncio.Event()

    async def _touch_model(self, tx: _Tx, name: str) -> int:
        """Lock the model's row for this transaction, mark it updated; its id. NotFound if there is none."""
        row = (await tx.conn.execute(
            update(registered_models).where(registered_models.c.name == name)
            .values(last_updated_time=tx.now).returning(registered_models.c.model_id)
        )).first()
        if row is None:
            raise _no_model(name)
        return row.model_id

    async def _require_version(self, conn: AsyncConnection, model_id: int, name: str, version: int) -> None:
        found = (await conn.execute(select(model_versions.c.version).where(
            model_versions.c.model_id == model_id, model_versions.c.version == version
        ))).first()
        if found is None:
            raise _no_version(name, version)

    # ------------------------------------------------------------ registered models

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
                raise _no_model(name)
            return (await self._models_from_rows(conn, [row]))[0]

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

    async def follow_model(self, name: str, follower: str, lease_seconds: int) -> int:
        """Start or renew `follower`'s lease on the model; when it ends (ms). Not an event: renewals are frequent."""
        validation.follower(follower)
        expires_at = now_ms() + validation.lease_seconds(lease_seconds) * 1000
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(registered_models.c.model_id).where(registered_models.c.name == name))).first()
            if row is None:
                raise _no_model(name)
            await conn.execute(
                self._insert(registered_model_followers).values(model_id=row.model_id, follower=follower, expires_at=expires_at)
                .on_conflict_do_update(index_elements=["model_id", "follower"], set_={"expires_at": expires_at})
            )
        return expires_at

    async def unfollow_model(self, name: str, follower: str) -> None:
        async with self.engine.begin() as conn:
            model_id = select(registered_models.c.model_id).where(registered_models.c.name == name).scalar_subquery()
            await conn.execute(delete(registered_model_followers).where(
                registered_model_followers.c.model_id == model_id, registered_model_followers.c.follower == follower,
            ))

    async def search_registered_models(
        self, filter_string: str, max_results: int, order_by: Sequence[str], page_token: str
    ) -> tuple[list[pb.RegisteredModel], str]:
        limit = db_validation.max_results(max_results, default=100)
        offset = decode_page_token(page_token)
        query = model_search_select(filter_string, list(order_by), offset, limit + 1)
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
            found = await self._models_from_rows(conn, rows[:limit])
        return found, encode_page_token(offset + limit) if len(rows) > limit else ""

    async def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        validation.tag("registered model tag", key, value)
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            await tx.conn.execute(
                self._insert(registered_model_tags).values(model_id=model_id, key=key, value=value)
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

    # ------------------------------------------------------------ model versions

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
            row = (await conn.execute(select(*_VERSION_COLUMNS).select_from(_VERSIONS).where(
                registered_models.c.name == name, model_versions.c.version == number
            ))).first()
            if row is None:
                exists_model = (await conn.execute(select(registered_models.c.model_id).where(registered_models.c.name == name))).first()
                raise _no_version(name, number) if exists_model else _no_model(name)
            return (await self._versions_from_rows(conn, [row]))[0]

    async def update_model_version(self, name: str, version: str, description: str) -> pb.ModelVersion:
        number = validation.version(version)
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            updated = await tx.conn.execute(update(model_versions).where(
                model_versions.c.model_id == model_id, model_versions.c.version == number
            ).values(description=description, last_updated_time=tx.now))
            if updated.rowcount == 0:
                raise _no_version(name, number)
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
                raise _no_version(name, number)
            tx.event(Event.MODEL_VERSION_DELETED, name, number)

    async def search_model_versions(
        self, filter_string: str, max_results: int, order_by: Sequence[str], page_token: str
    ) -> tuple[list[pb.ModelVersion], str]:
        limit = db_validation.max_results(max_results, default=1000)
        offset = decode_page_token(page_token)
        query = version_search_select(filter_string, list(order_by), offset, limit + 1)
        async with self._reader.connect() as conn:
            rows = (await conn.execute(query)).all()
            found = await self._versions_from_rows(conn, rows[:limit])
        return found, encode_page_token(offset + limit) if len(rows) > limit else ""

    async def get_latest_versions(self, name: str, stages: Sequence[str]) -> list[pb.ModelVersion]:
        """The highest version in each of `stages` (all stages when empty) that has one, in that order."""
        wanted = [validation.stage(s) for s in stages] or list(validation.STAGES)
        async with self._reader.connect() as conn:
            row = (await conn.execute(select(registered_models.c.model_id).where(registered_models.c.name == name))).first()
            if row is None:
                raise _no_model(name)
            latest = await self._latest_versions(conn, [row.model_id])
        by_stage = {v.current_stage: v for v in latest}
        return [by_stage[s] for s in wanted if s in by_stage]

    async def transition_model_version_stage(
        self, name: str, version: str, stage: str, archive_existing_versions: bool
    ) -> pb.ModelVersion:
        number = validation.version(version)
        stage = validation.stage(stage)
        if archive_existing_versions and stage not in validation.ARCHIVING_STAGES:
            raise InvalidArgument(
                f"archive_existing_versions applies to transitions to {' or '.join(validation.ARCHIVING_STAGES)}, not {stage}"
            )
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            previous = (await tx.conn.execute(select(model_versions.c.current_stage).where(
                model_versions.c.model_id == model_id, model_versions.c.version == number
            ))).first()
            if previous is None:
                raise _no_version(name, number)
            await self._set_stage(tx, model_id, name, number, previous.current_stage, stage)
            if archive_existing_versions:
                others = (await tx.conn.execute(select(model_versions.c.version).where(
                    model_versions.c.model_id == model_id, model_versions.c.current_stage == stage,
                    model_versions.c.version != number,
                ).order_by(model_versions.c.version))).scalars().all()
                for other in others:
                    await self._set_stage(tx, model_id, name, other, stage, "Archived")
        return await self.get_model_version(name, version)

    async def _set_stage(self, tx: _Tx, model_id: int, name: str, version: int, old: str, new: str) -> None:
        await tx.conn.execute(update(model_versions).where(
            model_versions.c.model_id == model_id, model_versions.c.version == version
        ).values(current_stage=new, last_updated_time=tx.now))
        tx.event(Event.MODEL_VERSION_STAGE_TRANSITIONED, name, version, from_stage=old, to_stage=new)

    async def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        number = validation.version(version)
        validation.tag("model version tag", key, value)
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            await self._require_version(tx.conn, model_id, name, number)
            await tx.conn.execute(
                self._insert(model_version_tags).values(model_id=model_id, version=number, key=key, value=value)
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

    # ------------------------------------------------------------ aliases and models:/ URIs

    async def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` at `version`, moving it if it pointed at another version."""
        validation.alias(alias)
        number = validation.version(version)
        async with self._write() as tx:
            model_id = await self._touch_model(tx, name)
            await self._require_version(tx.conn, model_id, name, number)
            await tx.conn.execute(
                self._insert(registered_model_aliases).values(model_id=model_id, alias=alias, version=number)
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
            latest = (await conn.execute(select(func.max(model_versions.c.version)).select_from(_VERSIONS).where(
                registered_models.c.name == name
            ))).scalar()
        if latest is None:
            await self.get_registered_model(name)  # NotFound when the model itself is missing
            raise NotFound(f"registered model {name!r} has no versions ({uri})")
        return await self.get_model_version(name, str(latest))

    # ------------------------------------------------------------ events

    async def watch_events(self, after_event_id: int) -> AsyncIterator[pb.RegistryEvent]:
        """Every stored event after `after_event_id` (-1: after the latest stored one), then each new one as
        it is committed, until the server stops."""
        if after_event_id < -1:
            raise InvalidArgument(f"after_event_id must be -1 (new events only), 0 (all) or a previous event's id, got {after_event_id}")
        last = after_event_id
        if last == -1:
            async with self._reader.connect() as conn:
                last = (await conn.execute(select(func.max(registry_events.c.event_id)))).scalar() or 0
        while not self._stopping:
            woken = self._committed  # taken before reading, so a commit during the read is not missed
            async with self._reader.connect() as conn:
                rows = (await conn.execute(select(registry_events).where(registry_events.c.event_id > last)
                                           .order_by(registry_events.c.event_id).limit(EVENT_PAGE))).all()
            for row in rows:
                yield pb.RegistryEvent(
                    event_id=row.event_id, type=Event.Type.Value(row.type), timestamp=row.timestamp, name=row.name,
                    version="" if row.version is None else str(row.version), details=json.loads(row.details),
                )
                last = row.event_id
            if len(rows) < EVENT_PAGE:
                try:
                    await asyncio.wait_for(woken.wait(), self._poll_seconds)
                except asyncio.TimeoutError:
                    pass
        raise Unavailable(f"the registry is stopping; watch again with after_event_id={last} to resume")

    # ------------------------------------------------------------ entities from rows

    async def _models_from_rows(self, conn: AsyncConnection, rows: Sequence) -> list[pb.RegisteredModel]:
        if not rows:
            return []
        ids = [r.model_id for r in rows]
        tags, aliases = {}, {}
        for t in await conn.execute(select(registered_model_tags).where(registered_model_tags.c.model_id.in_(ids))):
            tags.setdefault(t.model_id, {})[t.key] = t.value
        for a in await conn.execute(select(registered_model_aliases).where(registered_model_aliases.c.model_id.in_(ids))
                                    .order_by(registered_model_aliases.c.alias)):
            aliases.setdefault(a.model_id, []).append(pb.RegisteredModelAlias(alias=a.alias, version=str(a.version)))
        followers = {}
        for f in await conn.execute(select(registered_model_followers).where(
            registered_model_followers.c.model_id.in_(ids), registered_model_followers.c.expires_at > now_ms(),
        ).order_by(registered_model_followers.c.follower)):
            followers.setdefault(f.model_id, []).append(pb.ModelFollower(follower=f.follower, expires_at=f.expires_at))
        latest = {}
        for v in await self._latest_versions(conn, ids):
            latest.setdefault(v.name, []).append(v)
        return [
            pb.RegisteredModel(
                name=r.name, creation_timestamp=r.creation_time, last_updated_timestamp=r.last_updated_time,
                description=r.description, latest_versions=latest.get(r.name, []), tags=tags.get(r.model_id, {}),
                aliases=aliases.get(r.model_id, []), followers=followers.get(r.model_id, []),
            )
            for r in rows
        ]

    async def _latest_versions(self, conn: AsyncConnection, model_ids: list[int]) -> list[pb.ModelVersion]:
        """The highest version of each stage of each model, in stage order."""
        highest = (
            select(model_versions.c.model_id, func.max(model_versions.c.version))
            .where(model_versions.c.model_id.in_(model_ids))
            .group_by(model_versions.c.model_id, model_versions.c.current_stage)
        )
        rows = (await conn.execute(select(*_VERSION_COLUMNS).select_from(_VERSIONS).where(
            tuple_(model_versions.c.model_id, model_versions.c.version).in_(highest)
        ))).all()
        found = await self._versions_from_rows(conn, rows)
        return sorted(found, key=lambda v: validation.STAGES.index(v.current_stage))

    async def _versions_from_rows(self, conn: AsyncConnection, rows: Sequence) -> list[pb.ModelVersion]:
        if not rows:
            return []
        ids = list({r.model_id for r in rows})
        wanted = {(r.model_id, r.version) for r in rows}
        tags, aliases = {}, {}
        for t in await conn.execute(select(model_version_tags).where(model_version_tags.c.model_id.in_(ids))):
            if (t.model_id, t.version) in wanted:
                tags.setdefault((t.model_id, t.version), {})[t.key] = t.value
        for a in await conn.execute(select(registered_model_aliases).where(registered_model_aliases.c.model_id.in_(ids))
                                    .order_by(registered_model_aliases.c.alias)):
            aliases.setdefault((a.model_id, a.version), []).append(a.alias)
        logged_ids = {r.logged_model_id for r in rows if r.logged_model_id}
        locations = dict((await conn.execute(
            select(logged_models.c.model_id, logged_models.c.artifact_location).where(logged_models.c.model_id.in_(logged_ids))
        )).all()) if logged_ids else {}
        return [
            pb.ModelVersion(
                name=r.name, version=str(r.version), creation_timestamp=r.creation_time,
                last_updated_timestamp=r.last_updated_time, current_stage=r.current_stage, description=r.description,
                source=r.source, run_id=r.run_id, status=pb.ModelVersionStatus.Value(r.status),
                status_message=r.status_message, tags=tags.get((r.model_id, r.version), {}), run_link=r.run_link,
                aliases=aliases.get((r.model_id, r.version), []), model_id=r.logged_model_id or "",
                storage_location=locations.get(r.logged_model_id) or r.source,
            )
            for r in rows
        ]
