"""The registry store on SQLite and PostgreSQL: models, versions, stages, aliases, tags, search,
models:/ URIs, version numbers under concurrent creates, and the event log."""
import asyncio
import uuid

import pytest
from conftest import unique
from sqlalchemy import func, select, update

from mlgrid.v1 import registry_pb2 as pb
from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.db.schema import experiments, registered_model_followers, registry_events, runs

RUN_ID = "0123456789abcdef0123456789abcdef"
OTHER_RUN_ID = "fedcba9876543210fedcba9876543210"
SOURCE = f"runs:/{RUN_ID}/model"
Event = pb.RegistryEvent


@pytest.fixture(autouse=True)
async def known_runs(registry_store):
    """The runs that versions in these tests come from, in the tracking tables the registry checks."""
    async with registry_store.engine.begin() as conn:
        experiment = (await conn.execute(select(experiments.c.experiment_id).where(experiments.c.name == "registry-tests"))).scalar()
        if experiment is None:
            experiment = (await conn.execute(experiments.insert().values(
                name="registry-tests", artifact_location="mlgrid-artifacts:/x", lifecycle_stage="active",
                creation_time=0, last_update_time=0,
            ))).inserted_primary_key[0]
        for run_id in (RUN_ID, OTHER_RUN_ID):
            if (await conn.execute(select(runs.c.run_uuid).where(runs.c.run_uuid == run_id))).first() is None:
                await conn.execute(runs.insert().values(
                    run_uuid=run_id, name="r", experiment_id=experiment, user_id="u", status="FINISHED", start_time=0,
                    lifecycle_stage="active", artifact_uri=f"mlgrid-artifacts:/0/{run_id}/artifacts",
                ))


async def model_with_versions(store, n: int, **tags) -> str:
    name = unique("model")
    await store.create_registered_model(name, tags, "")
    for _ in range(n):
        await store.create_model_version(name, SOURCE, "", {}, "", "")
    return name


async def test_create_and_get_model(registry_store):
    name = unique("model")
    created = await registry_store.create_registered_model(name, {"team": "risk"}, "fraud scorer")
    got = await registry_store.get_registered_model(name)
    assert got == created
    assert (got.name, got.description, dict(got.tags)) == (name, "fraud scorer", {"team": "risk"})
    assert got.creation_timestamp > 0 and got.last_updated_timestamp >= got.creation_timestamp
    assert not got.latest_versions and not got.aliases


async def test_duplicate_model_is_already_exists_and_changes_nothing(registry_store):
    name = unique("model")
    await registry_store.create_registered_model(name, {"a": "1"}, "first")
    with pytest.raises(AlreadyExists, match="already exists"):
        await registry_store.create_registered_model(name, {"b": "2"}, "second")
    got = await registry_store.get_registered_model(name)
    assert (got.description, dict(got.tags)) == ("first", {"a": "1"})


@pytest.mark.parametrize("bad", ["", "  ", "a/b", "a@b", "x" * 257])
async def test_invalid_model_names(registry_store, bad):
    with pytest.raises(InvalidArgument):
        await registry_store.create_registered_model(bad, {}, "")


async def test_versions_are_numbered_per_model_and_follow_a_rename(registry_store):
    name = await model_with_versions(registry_store, 2)
    other = await model_with_versions(registry_store, 1)
    v3 = await registry_store.create_model_version(name, "s3://bucket/m", "", {"k": "v"}, "http://x", "third")
    assert (v3.version, v3.source, v3.status, dict(v3.tags), v3.description) == ("3", "s3://bucket/m", pb.READY, {"k": "v"}, "third")
    assert (await registry_store.get_model_version(other, "1")).version == "1"
    first = await registry_store.get_model_version(name, "1")
    assert (first.run_id, first.current_stage) == (RUN_ID, "None")  # run_id taken from the runs:/ source
    await registry_store.set_registered_model_alias(name, "champion", "2")

    new_name = unique("renamed")
    renamed = await registry_store.rename_registered_model(name, new_name)
    assert renamed.name == new_name and [a.alias for a in renamed.aliases] == ["champion"]
    assert (await registry_store.get_model_version(new_name, "3")).description == "third"
    assert (await registry_store.get_model_version_by_alias(new_name, "champion")).version == "2"
    with pytest.raises(NotFound):
        await registry_store.get_registered_model(name)
    with pytest.raises(AlreadyExists):
        await registry_store.rename_registered_model(new_name, other)
    assert (await registry_store.get_registered_model(new_name)).name == new_name


async def test_update_and_delete(registry_store):
    name = await model_with_versions(registry_store, 2)
    assert (await registry_store.update_registered_model(name, "new text")).description == "new text"
    assert (await registry_store.update_model_version(name, "2", "v2 text")).description == "v2 text"
    await registry_store.delete_model_version(name, "1")
    with pytest.raises(NotFound, match="no version 1"):
        await registry_store.get_model_version(name, "1")
    # A deleted number is never reused.
    assert (await registry_store.create_model_version(name, SOURCE, "", {}, "", "")).version == "3"
    await registry_store.delete_registered_model(name)
    for call in (registry_store.get_registered_model(name), registry_store.get_model_version(name, "2")):
        with pytest.raises(NotFound, match="not found"):
            await call
    found, _ = await registry_store.search_model_versions(f"name = '{name}'", 0, [], "")
    assert found == []
    with pytest.raises(NotFound):
        await registry_store.delete_registered_model(name)


async def test_stages_and_latest_versions(registry_store):
    name = await model_with_versions(registry_store, 4)
    await registry_store.transition_model_version_stage(name, "1", "production", False)  # any case
    await registry_store.transition_model_version_stage(name, "2", "Production", False)
    await registry_store.transition_model_version_stage(name, "3", "Staging", False)
    latest = await registry_store.get_latest_versions(name, [])
    assert [(v.current_stage, v.version) for v in latest] == [("None", "4"), ("Staging", "3"), ("Production", "2")]
    assert [v.version for v in await registry_store.get_latest_versions(name, ["Production"])] == ["2"]
    model = await registry_store.get_registered_model(name)
    assert [(v.current_stage, v.version) for v in model.latest_versions] == [("None", "4"), ("Staging", "3"), ("Production", "2")]

    moved = await registry_store.transition_model_version_stage(name, "4", "Production", True)
    assert moved.current_stage == "Production"
    stages = {v: (await registry_store.get_model_version(name, v)).current_stage for v in "1234"}
    assert stages == {"1": "Archived", "2": "Archived", "3": "Staging", "4": "Production"}

    with pytest.raises(InvalidArgument, match="None, Staging, Production, Archived"):
        await registry_store.transition_model_version_stage(name, "3", "Prod", False)
    with pytest.raises(InvalidArgument, match="archive_existing_versions"):
        await registry_store.transition_model_version_stage(name, "3", "Archived", True)
    with pytest.raises(InvalidArgument, match="None, Staging"):
        await registry_store.get_latest_versions(name, ["Staged"])
    with pytest.raises(NotFound):
        await registry_store.transition_model_version_stage(name, "9", "Staging", False)
    assert (await registry_store.get_model_version(name, "3")).current_stage == "Staging"


async def test_aliases(registry_store):
    name = await model_with_versions(registry_store, 2)
    await registry_store.set_registered_model_alias(name, "champion", "1")
    await registry_store.set_registered_model_alias(name, "champion", "2")  # moves
    await registry_store.set_registered_model_alias(name, "challenger", "1")
    assert (await registry_store.get_model_version_by_alias(name, "champion")).version == "2"
    assert list((await registry_store.get_model_version(name, "1")).aliases) == ["challenger"]
    model = await registry_store.get_registered_model(name)
    assert [(a.alias, a.version) for a in model.aliases] == [("challenger", "1"), ("champion", "2")]

    for reserved in ("latest", "LATEST", "v1", "V12"):
        with pytest.raises(InvalidArgument, match="reserved"):
            await registry_store.set_registered_model_alias(name, reserved, "1")
    with pytest.raises(NotFound, match="no version 7"):
        await registry_store.set_registered_model_alias(name, "ghost", "7")
    with pytest.raises(NotFound, match="no alias"):
        await registry_store.get_model_version_by_alias(name, "ghost")

    await registry_store.delete_registered_model_alias(name, "champion")
    with pytest.raises(NotFound):
        await registry_store.delete_registered_model_alias(name, "champion")
    # Deleting a version deletes the aliases pointing at it.
    await registry_store.delete_model_version(name, "1")
    assert not (await registry_store.get_registered_model(name)).aliases


async def test_resolve_model_uri(registry_store):
    name = await model_with_versions(registry_store, 3)
    await registry_store.transition_model_version_stage(name, "2", "Production", False)
    await registry_store.set_registered_model_alias(name, "champion", "1")
    resolve = registry_store.resolve_model_uri
    assert (await resolve(f"models:/{name}/3")).version == "3"
    assert (await resolve(f"models:/{name}@champion")).version == "1"
    assert (await resolve(f"models:/{name}/Production")).version == "2"
    assert (await resolve(f"models:/{name}/latest")).version == "3"
    with pytest.raises(NotFound, match="stage Staging"):
        await resolve(f"models:/{name}/Staging")
    with pytest.raises(NotFound):
        await resolve(f"models:/{name}/9")
    with pytest.raises(NotFound):
        await resolve(f"models:/{unique('missing')}/latest")
    for bad in (f"models:/{name}/Prod", f"runs:/{RUN_ID}/model", f"models:/{name}", "models://x/y/1"):
        with pytest.raises(InvalidArgument):
            await resolve(bad)


async def test_tags(registry_store):
    name = await model_with_versions(registry_store, 1)
    await registry_store.set_registered_model_tag(name, "team", "risk")
    await registry_store.set_registered_model_tag(name, "team", "fraud")  # overwrites
    await registry_store.set_model_version_tag(name, "1", "validated", "yes")
    assert dict((await registry_store.get_registered_model(name)).tags) == {"team": "fraud"}
    assert dict((await registry_store.get_model_version(name, "1")).tags) == {"validated": "yes"}
    await registry_store.delete_registered_model_tag(name, "team")
    await registry_store.delete_model_version_tag(name, "1", "validated")
    assert not (await registry_store.get_registered_model(name)).tags
    assert not (await registry_store.get_model_version(name, "1")).tags
    with pytest.raises(NotFound, match="no tag"):
        await registry_store.delete_model_version_tag(name, "1", "validated")
    with pytest.raises(NotFound, match="no version 2"):
        await registry_store.set_model_version_tag(name, "2", "k", "v")
    with pytest.raises(InvalidArgument):
        await registry_store.set_registered_model_tag(name, "", "v")


async def test_search_registered_models(registry_store):
    prefix = unique("srch")
    names = [f"{prefix}-alpha", f"{prefix}-bEta", f"{prefix}-gamma"]
    for i, name in enumerate(names):
        await registry_store.create_registered_model(name, {"team": "risk" if i < 2 else "ads"}, "")

    async def search(filter_string, order_by=(), max_results=0, token=""):
        found, next_token = await registry_store.search_registered_models(filter_string, max_results, order_by, token)
        return [m.name for m in found], next_token

    assert (await search(f"name = '{names[0]}'"))[0] == [names[0]]
    assert (await search(f"name LIKE '{prefix}-%a'"))[0] == [names[0], names[1], names[2]]
    assert (await search(f"name LIKE '{prefix}-be%'"))[0] == []  # LIKE is case-sensitive
    assert (await search(f"name ILIKE '{prefix}-BE%'"))[0] == [names[1]]
    assert (await search(f"name LIKE '{prefix}%' AND tags.team = 'risk'"))[0] == names[:2]
    assert (await search(f"name LIKE '{prefix}%'", ["name DESC"]))[0] == names[::-1]
    assert (await search(f"name LIKE '{prefix}%'", ["creation_timestamp DESC", "name DESC"]))[0] == names[::-1]
    page, token = await search(f"name LIKE '{prefix}%'", max_results=2)
    rest, last = await search(f"name LIKE '{prefix}%'", max_results=2, token=token)
    assert page + rest == names and token and last == ""
    with pytest.raises(InvalidArgument, match="run_id"):
        await search("run_id = 'x'")
    with pytest.raises(InvalidArgument):
        await search("name = 'a' OR name = 'b'")


async def test_the_prompt_filter_of_mlflows_client(registry_store):
    """MLflow's client adds `tags.`mlflow.prompt.is_prompt` != 'true'` to every search: models without
    the tag match it, as on MLflow's server; asking for prompts finds the tagged ones."""
    prefix = unique("prompt")
    await registry_store.create_registered_model(f"{prefix}-model", {}, "")
    await registry_store.create_registered_model(f"{prefix}-prompt", {"mlflow.prompt.is_prompt": "true"}, "")
    await registry_store.create_registered_model(f"{prefix}-other", {"mlflow.prompt.is_prompt": "false"}, "")

    async def search(tag_filter):
        found, _ = await registry_store.search_registered_models(f"name LIKE '{prefix}%' AND {tag_filter}", 0, (), "")
        return sorted(m.name.removeprefix(prefix + "-") for m in found)

    assert await search("tags.`mlflow.prompt.is_prompt` != 'true'") == ["model", "other"]
    assert await search("tags.`mlflow.prompt.is_prompt` = 'false'") == ["model", "other"]
    assert await search("tags.`mlflow.prompt.is_prompt` = 'true'") == ["prompt"]
    assert await search("tags.`mlflow.prompt.is_prompt` != 'false'") == ["prompt"]
    name = await model_with_versions(registry_store, 1)
    found, _ = await registry_store.search_model_versions(f"name = '{name}' AND tags.`mlflow.prompt.is_prompt` != 'true'", 0, (), "")
    assert [v.version for v in found] == ["1"]


async def test_search_model_versions(registry_store):
    name = await model_with_versions(registry_store, 2)
    other_run = OTHER_RUN_ID
    v3 = await registry_store.create_model_version(name, f"runs:/{other_run}/model", "", {"validated": "yes"}, "", "")

    async def versions(filter_string, order_by=()):
        found, _ = await registry_store.search_model_versions(filter_string, 0, order_by, "")
        return [(m.name, m.version) for m in found]

    assert await versions(f"name = '{name}'") == [(name, "3"), (name, "2"), (name, "1")]
    assert await versions(f"name = '{name}'", ["version_number ASC"]) == [(name, "1"), (name, "2"), (name, "3")]
    assert await versions(f"run_id = '{other_run}'") == [(name, "3")]
    assert await versions(f"source_path = '{v3.source}'") == [(name, "3")]
    assert await versions(f"name = '{name}' AND tags.validated = 'yes'") == [(name, "3")]
    assert await versions(f"name = '{name}' AND version_number <= 2") == [(name, "2"), (name, "1")]
    with pytest.raises(InvalidArgument):
        await versions("stage = 'Production'")


@pytest.mark.parametrize("source", [
    "/etc/passwd", "relative/path", "//proc/self/root", "file:///tmp/model", "file://host/x",
    "s3://bucket/../x", "runs:/abc/model", f"runs:/{RUN_ID}", "models:/other/1", "s3://bucket/m#frag",
    "s3://bucket/m?x=1", "mlgrid-artifacts://host/x", "ftp://host/x", "",
])
async def test_invalid_sources_are_refused_and_register_nothing(registry_store, source):
    name = await model_with_versions(registry_store, 0)
    with pytest.raises(InvalidArgument, match="source"):
        await registry_store.create_model_version(name, source, "", {}, "", "")
    assert not (await registry_store.get_registered_model(name)).latest_versions
    assert (await registry_store.create_model_version(name, "mlgrid-artifacts:/1/abc/model", "", {}, "", "")).version == "1"


async def test_bad_version_input(registry_store):
    name = await model_with_versions(registry_store, 1)
    with pytest.raises(InvalidArgument, match="positive integers"):
        await registry_store.get_model_version(name, "one")
    with pytest.raises(InvalidArgument, match="differs"):
        await registry_store.create_model_version(name, SOURCE, uuid.uuid4().hex, {}, "", "")
    with pytest.raises(NotFound, match="create it before"):
        await registry_store.create_model_version(unique("missing"), SOURCE, "", {}, "", "")
    missing_run = uuid.uuid4().hex
    with pytest.raises(NotFound, match=f"run {missing_run} not found"):
        await registry_store.create_model_version(name, f"runs:/{missing_run}/model", "", {}, "", "")
    with pytest.raises(NotFound, match="not found"):
        await registry_store.create_model_version(name, "s3://bucket/m", missing_run, {}, "", "")
    assert [v.version for v in (await registry_store.get_registered_model(name)).latest_versions] == ["1"]
    assert (await registry_store.create_model_version(name, SOURCE, "", {}, "", "")).version == "2"  # no number lost


async def test_a_followed_model_cannot_be_deleted_until_its_lease_ends(registry_store):
    name = await model_with_versions(registry_store, 1)
    start = await last_event_id(registry_store)
    expires = await registry_store.follow_model(name, "serving-0", 60)
    await registry_store.follow_model(name, "serving-1", 0)
    followers = (await registry_store.get_registered_model(name)).followers
    assert [(f.follower, f.expires_at) for f in followers][0] == ("serving-0", expires)
    assert [f.follower for f in followers] == ["serving-0", "serving-1"]
    with pytest.raises(FailedPrecondition, match="served by serving-0, serving-1"):
        await registry_store.delete_registered_model(name)
    assert (await registry_store.get_model_version(name, "1")).version == "1"  # nothing changed
    await registry_store.unfollow_model(name, "serving-0")
    await registry_store.unfollow_model(name, "serving-0")  # idempotent
    async with registry_store.engine.begin() as conn:  # serving-1 crashed: its lease ran out
        await conn.execute(update(registered_model_followers).values(expires_at=1))
    assert not (await registry_store.get_registered_model(name)).followers
    await registry_store.delete_registered_model(name)
    with pytest.raises(NotFound):
        await registry_store.follow_model(name, "serving-0", 60)
    for bad in (("", 60), ("s", -1), ("s", 3601)):
        with pytest.raises(InvalidArgument):
            await registry_store.follow_model(await model_with_versions(registry_store, 0), *bad)
    async with registry_store.engine.connect() as conn:  # leases are not events
        types = (await conn.execute(select(registry_events.c.type).where(registry_events.c.event_id > start, registry_events.c.name == name))).scalars().all()
    assert types == ["REGISTERED_MODEL_DELETED"]


async def test_concurrent_creates_get_versions_1_to_50_and_events_in_commit_order(registry_store):
    name = await model_with_versions(registry_store, 0)
    start = await last_event_id(registry_store)
    created = await asyncio.gather(*(
        registry_store.create_model_version(name, SOURCE, "", {}, "", "") for _ in range(50)
    ))
    assert sorted(int(v.version) for v in created) == list(range(1, 51))
    found, _ = await registry_store.search_model_versions(f"name = '{name}'", 0, [], "")
    assert sorted(int(v.version) for v in found) == list(range(1, 51))
    # Versions are committed in number order, and event ids follow commit order.
    watcher = registry_store.watch_events(start)
    events = [e for e in await take(watcher, 50) if e.name == name]
    await watcher.aclose()
    assert [e.version for e in events] == [str(v) for v in range(1, 51)]


# ---------------------------------------------------------------- events

async def last_event_id(store) -> int:
    async with store.engine.connect() as conn:
        return (await conn.execute(select(func.max(registry_events.c.event_id)))).scalar() or 0


async def take(events, n: int) -> list:
    return [await asyncio.wait_for(anext(events), 5) for _ in range(n)]


async def test_events_after_an_id_and_resume_after_a_disconnect(registry_store):
    start = await last_event_id(registry_store)
    name = await model_with_versions(registry_store, 2)
    await registry_store.transition_model_version_stage(name, "2", "Production", False)
    await registry_store.set_registered_model_alias(name, "champion", "2")

    watcher = registry_store.watch_events(start)
    first = await take(watcher, 2)
    await watcher.aclose()  # the watcher goes away...
    await registry_store.set_model_version_tag(name, "1", "k", "v")
    new_name = unique("renamed")
    await registry_store.rename_registered_model(name, new_name)

    watcher = registry_store.watch_events(first[-1].event_id)  # ...and comes back where it stopped
    rest = await take(watcher, 5)
    await watcher.aclose()
    events = first + rest
    assert [e.type for e in events] == [
        Event.REGISTERED_MODEL_CREATED, Event.MODEL_VERSION_CREATED, Event.MODEL_VERSION_CREATED,
        Event.MODEL_VERSION_STAGE_TRANSITIONED, Event.ALIAS_SET, Event.MODEL_VERSION_TAG_SET,
        Event.REGISTERED_MODEL_RENAMED,
    ]
    ids = [e.event_id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] > start
    assert [e.version for e in events[1:3]] == ["1", "2"] and events[1].details["source"] == SOURCE
    assert dict(events[3].details) == {"from_stage": "None", "to_stage": "Production"}
    assert events[4].details["alias"] == "champion"
    assert (events[-1].name, events[-1].details["old_name"]) == (new_name, name)


async def test_new_events_are_delivered_live_and_failed_changes_store_none(registry_store):
    start = await last_event_id(registry_store)
    watcher = registry_store.watch_events(start)
    pending = asyncio.ensure_future(anext(watcher))
    await asyncio.sleep(0.3)
    assert not pending.done()
    name = unique("live")
    await registry_store.create_registered_model(name, {}, "")
    event = await asyncio.wait_for(pending, 5)
    assert (event.type, event.name) == (Event.REGISTERED_MODEL_CREATED, name)
    with pytest.raises(AlreadyExists):
        await registry_store.create_registered_model(name, {}, "")
    await registry_store.delete_registered_model(name)
    (deleted,) = await take(watcher, 1)
    assert (deleted.type, deleted.name, deleted.event_id) == (Event.REGISTERED_MODEL_DELETED, name, event.event_id + 1)
    await watcher.aclose()


async def test_watch_from_now_skips_stored_events_and_refuses_other_negative_ids(registry_store):
    await model_with_versions(registry_store, 1)
    watcher = registry_store.watch_events(-1)
    pending = asyncio.ensure_future(anext(watcher))
    await asyncio.sleep(0.3)  # the watcher has read the latest id and waits
    name = await model_with_versions(registry_store, 0)
    event = await asyncio.wait_for(pending, 5)
    assert (event.type, event.name) == (Event.REGISTERED_MODEL_CREATED, name)
    await watcher.aclose()
    with pytest.raises(InvalidArgument):
        await anext(registry_store.watch_events(-2))
