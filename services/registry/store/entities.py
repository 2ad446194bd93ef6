"""Registry entities read from rows: the mlgrid.v1 messages with their tags, aliases, live followers and
latest versions, each gathered for a whole page of rows in one query per table."""
from collections.abc import Sequence

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.v1 import registry_pb2 as pb
from services.db.clock import now_ms
from services.db.schema import (
    logged_models,
    model_version_tags,
    model_versions,
    registered_model_aliases,
    registered_model_followers,
    registered_model_tags,
    registered_models,
)
from services.registry.store import validation

# A version's row comes with its model's name.
VERSION_COLUMNS = (*model_versions.c, registered_models.c.name)
VERSIONS = model_versions.join(registered_models, model_versions.c.model_id == registered_models.c.model_id)


async def models_from_rows(conn: AsyncConnection, rows: Sequence) -> list[pb.RegisteredModel]:
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
    for v in await latest_versions(conn, ids):
        latest.setdefault(v.name, []).append(v)
    return [
        pb.RegisteredModel(
            name=r.name, creation_timestamp=r.creation_time, last_updated_timestamp=r.last_updated_time,
            description=r.description, latest_versions=latest.get(r.name, []), tags=tags.get(r.model_id, {}),
            aliases=aliases.get(r.model_id, []), followers=followers.get(r.model_id, []),
        )
        for r in rows
    ]


async def latest_versions(conn: AsyncConnection, model_ids: list[int]) -> list[pb.ModelVersion]:
    """The highest version of each stage of each model, in stage order."""
    highest = (
        select(model_versions.c.model_id, func.max(model_versions.c.version))
        .where(model_versions.c.model_id.in_(model_ids))
        .group_by(model_versions.c.model_id, model_versions.c.current_stage)
    )
    rows = (await conn.execute(select(*VERSION_COLUMNS).select_from(VERSIONS).where(
        tuple_(model_versions.c.model_id, model_versions.c.version).in_(highest)
    ))).all()
    found = await versions_from_rows(conn, rows)
    return sorted(found, key=lambda v: validation.STAGES.index(v.current_stage))


async def versions_from_rows(conn: AsyncConnection, rows: Sequence) -> list[pb.ModelVersion]:
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
