"""Schema migrations on SQLite and on a real PostgreSQL: data written under an
older revision reads back the same after `mlgrid db upgrade`."""
import asyncio
import math
import sys
import uuid

import asyncpg
import pytest
from conftest import in_thread, store_config
from alembic import command
from sqlalchemy import func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from mlgrid.v1 import tracking_pb2 as pb
from services.db.engine import async_url, create_engine
from services.db.migrations import alembic_config, head_revision, upgrade
from services.db.schema import access_tokens, role_permissions, roles, user_role_assignments, users
from services.tracking.service import open_store

RUNS = 101  # 10,100 params: more than one backfill batch of 10,000
LONG = "é" * 300  # a length that takes a two-byte varint
OLD_TAGS = {"mlflow.runName": "old run", "note": LONG, "empty": "", "ключ": "значение"}
OLD_METRICS = {"loss": (0.25, 1_700_000_000_000, 7), "nan": (math.nan, 5, -(2**63)), "inf": (math.inf, -1, 2**63 - 1)}


@pytest.fixture(params=["sqlite", "postgres"])
async def empty_database(request, tmp_path, pg_url):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    name = f"mlgrid_migration_{uuid.uuid4().hex[:12]}"
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await conn.close()


async def write_revision_0001_rows(uri: str) -> list[str]:
    engine = create_async_engine(async_url(uri))
    run_ids = [uuid.uuid4().hex for _ in range(RUNS)]
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, "
            "last_update_time) VALUES (1, 'old', 'mlgrid-artifacts:/1', 'active', 0, 0)"
        ))
        await conn.execute(
            text("INSERT INTO runs (run_uuid, name, experiment_id, user_id, status, start_time, lifecycle_stage, "
                 "artifact_uri) VALUES (:r, 'old run', 1, 'u', 'FINISHED', 0, 'active', 'mlgrid-artifacts:/1/x')"),
            [{"r": r} for r in run_ids],
        )
        await conn.execute(
            text("INSERT INTO params (run_uuid, key, value) VALUES (:r, :k, :v)"),
            [{"r": r, "k": f"p{i}", "v": f"v{i}"} for r in run_ids for i in range(100)],
        )
        await conn.execute(
            text("INSERT INTO tags (run_uuid, key, value) VALUES (:r, :k, :v)"),
            [{"r": run_ids[0], "k": k, "v": v} for k, v in OLD_TAGS.items()],
        )
        await conn.execute(
            text("INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step) "
                 "VALUES (:r, :k, :v, :n, :t, :s)"),
            [{"r": run_ids[0], "k": k, "v": 0.0 if math.isnan(v) else v, "n": math.isnan(v), "t": t, "s": s}
             for k, (v, t, s) in OLD_METRICS.items()],
        )
    await engine.dispose()
    return run_ids


async def test_upgrade_from_0001_keeps_every_param_tag_and_metric(empty_database, artifact_root):
    in_thread(upgrade, empty_database, "0001")
    run_ids = await write_revision_0001_rows(empty_database)
    in_thread(upgrade, empty_database)

    store = await open_store(store_config(empty_database, artifact_root))  # refuses anything but head
    try:
        first = await store.get_run(run_ids[0])
        assert dict(first.data.tags) == OLD_TAGS
        assert dict(first.data.params) == {f"p{i}": f"v{i}" for i in range(100)}
        metrics = {m.key: (m.value, m.timestamp, m.step) for m in first.data.metrics}
        assert metrics.keys() == OLD_METRICS.keys() and math.isnan(metrics.pop("nan")[0])
        assert metrics == {k: v for k, v in OLD_METRICS.items() if k != "nan"}
        last = await store.get_run(run_ids[-1])
        assert dict(last.data.params) == {f"p{i}": f"v{i}" for i in range(100)}
        # Written after the upgrade, read with the old rows.
        await store.log_batch(run_ids[-1], [], [], [pb.RunTag(key="new", value="tag")], "")
        assert dict((await store.get_run(run_ids[-1])).data.tags) == {"new": "tag"}
    finally:
        await store.close()


async def test_head_is_0006_and_its_identity_tables_take_rows_and_go_back_down(empty_database):
    assert head_revision() == "0006"
    in_thread(upgrade, empty_database, "0005")
    in_thread(upgrade, empty_database)
    engine = create_engine(empty_database)  # SQLite: with foreign keys on
    try:
        async with engine.begin() as conn:
            user = (await conn.execute(users.insert().values(username="ada", created_ms=1))).inserted_primary_key[0]
            role = (await conn.execute(roles.insert().values(name="r"))).inserted_primary_key[0]
            await conn.execute(role_permissions.insert().values(
                role_id=role, resource_type="experiment", resource_pattern="*", permission="READ"))
            await conn.execute(user_role_assignments.insert().values(user_id=user, role_id=role))
            await conn.execute(access_tokens.insert().values(
                user_id=user, name="ci", kind="token", token_hash="0" * 64, created_ms=1))
            row = (await conn.execute(select(users.c.is_admin, users.c.password_hash))).one()
            assert (row.is_admin, row.password_hash) == (False, None)
            assert (await conn.execute(select(roles.c.workspace))).scalar() == "default"
            assert (await conn.execute(select(access_tokens.c.revoked))).scalar() is False
            # Deleting a user takes its assignments and tokens with it.
            await conn.execute(users.delete())
            assert (await conn.execute(select(func.count()).select_from(user_role_assignments))).scalar() == 0
            assert (await conn.execute(select(func.count()).select_from(access_tokens))).scalar() == 0
    finally:
        await engine.dispose()
    in_thread(downgrade, empty_database, "0005")
    engine = create_engine(empty_database)  # SQLite: with foreign keys on
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        assert not {"users", "roles", "role_permissions", "user_role_assignments", "access_tokens"} & set(names)
    finally:
        await engine.dispose()


def downgrade(uri: str, revision: str) -> None:
    command.downgrade(alembic_config(uri), revision)


async def test_several_starters_on_an_empty_database_migrate_it_once(pg_url):
    """The chart's migration Job and servers starting at once on an empty database (issue 16): one migrates,
    the others wait for it and find the schema current; all of them then serve."""
    name = f"mlgrid_race_{uuid.uuid4().hex[:12]}"
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    uri = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        starters = [await asyncio.create_subprocess_exec(sys.executable, "-m", "mlgrid.cli.main", "db", "upgrade", uri,
                                                         stderr=asyncio.subprocess.PIPE) for _ in range(4)]
        for starter in starters:
            _, stderr = await starter.communicate()
            assert starter.returncode == 0, stderr.decode()[-2000:]
        database = await asyncpg.connect(make_url(admin).set(database=name).render_as_string(hide_password=False))
        try:
            assert await database.fetchval("SELECT version_num FROM alembic_version") == head_revision()
            assert await database.fetchval("SELECT count(*) FROM alembic_version") == 1
        finally:
            await database.close()
    finally:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await conn.close()
