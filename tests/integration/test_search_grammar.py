"""The search grammar: parse errors, and query results on SQLite and PostgreSQL.

The result tests run the same cases on an in-memory SQLite database and on a
temporary PostgreSQL database created for this module (TEST_DATABASE_URL, or
the local server) and dropped at its end.
"""
import math
import os
import uuid

import asyncpg
import pytest
from sqlalchemy import insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import InvalidArgument
from services.db import run_data_fields
from services.db.schema import experiment_tags, experiments, latest_metrics, metadata, params, runs, tags
from services.tracking.store.search import experiment_search_select, fetch_run_page, run_search_phases

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
LONG = "x" * 250  # longer than the indexed value prefix


# ---------------------------------------------------------------- parse errors

@pytest.mark.parametrize(
    "filter_string, message",
    [
        ("metrics.x >> 1", "unexpected token '>' at position 11; expected a number"),
        ("metrics.x => 1", "unexpected token '>' at position 11"),
        ("metrics.x > 1 OR metrics.y < 2", "OR is not supported at position 14"),
        ("status = 'x'", "'status' has no prefix at position 0; write attributes.status"),
        ("loss < 1", "'loss' has no prefix at position 0; expected a key such as metrics.loss"),
        ("foo.x = 1", "unknown prefix 'foo' at position 0"),
        ("attributes.lifecycle_stage = 'active'", "unknown run attribute 'lifecycle_stage' at position 0"),
        ("metrics.x > 'a'", "unexpected token \"'a'\" at position 12; expected a number (metrics.x is numeric)"),
        ("params.p = 1", "expected a quoted string (params.p is a string)"),
        ("attributes.start_time = '5'", "expected a number (attributes.start_time is numeric)"),
        ("metrics.x LIKE '1'", "LIKE does not apply to numeric key metrics.x at position 10"),
        ("params.p > '1'", "> does not apply to string key params.p at position 9"),
        ("attributes.end_time IN (1)", "IN does not apply to numeric key attributes.end_time"),
        ("params.p = 'abc", "unterminated quote \"'\" at position 11"),
        ("metrics.x > 1 $", "unexpected character '$' at position 14"),
        ("metrics.my metric > 1", "unexpected token 'metric' at position 11; expected a comparison operator"),
        ("metrics.my metric > 1", "quote keys that contain spaces"),
        ("metrics.x", "unexpected end of filter; expected a comparison operator"),
        ("metrics.x > 1 AND", "unexpected end of filter; expected a key"),
        ("metrics.x > 1 metrics.y < 2", "unexpected token 'metrics.y' at position 14; expected AND"),
        ("params.p IN 'a'", "expected a parenthesised list of quoted strings"),
        ("params.p IN ('a' 'b')", "unexpected token \"'b'\" at position 17; expected ',' or ')'"),
        ("params.p IN ()", "unexpected token ')' at position 13; expected a quoted string"),
        ("params.p NOT LIKE 'a'", "unexpected token 'NOT' at position 9; expected a comparison operator"),
        ("metrics. > 1", "expected a key after 'metrics.'"),
        ("tags.'a b' = 'x'", "quote keys with double quotes or backticks"),
        ('metrics."" > 1', "empty key at position 8"),
        ("attributes.start_time > 1.5", "attributes.start_time is in whole milliseconds, got 1.5"),
        ("params.p LIKE 'a\\'", "the pattern ends with the escape character"),
        ("(metrics.x > 1)", "unexpected token '(' at position 0; expected a key"),
    ],
)
def test_run_filter_errors(filter_string, message):
    with pytest.raises(InvalidArgument) as e:
        run_search_phases(None, filter_string, pb.ACTIVE_ONLY, [])
    assert e.value.message.startswith(f"Invalid filter {filter_string!r}: ")
    assert message in e.value.message


@pytest.mark.parametrize(
    "order_by, message",
    [
        ("metrics.m DESCENDING", "unexpected token 'DESCENDING' at position 10; expected ASC, DESC"),
        ("metrics.m ASC junk", "unexpected token 'junk' at position 14"),
        ("foo.m", "unknown prefix 'foo'"),
        ("", "unexpected end of order_by; expected a key"),
        ("attributes.lifecycle_stage", "unknown run attribute 'lifecycle_stage'"),
        ("metrics.a, metrics.b", "unexpected token ','"),
    ],
)
def test_run_order_by_errors(order_by, message):
    with pytest.raises(InvalidArgument) as e:
        run_search_phases(None, "", pb.ACTIVE_ONLY, ["start_time", order_by])
    assert e.value.message.startswith(f"Invalid order_by {order_by!r}: ")
    assert message in e.value.message


@pytest.mark.parametrize(
    "filter_string, order_by, message",
    [
        ("metrics.x > 1", [], "unknown prefix 'metrics'"),
        ("name IN ('a')", [], "IN does not apply to string key name"),
        ("tags.t > 'a'", [], "> does not apply to string key tags.t"),
        ("experiment_id = 1", [], "'experiment_id' has no prefix"),
        ("creation_time > 'x'", [], "expected a number"),
        ("", ["tags.t"], "cannot order experiments by tags.t at position 0"),
        ("", ["name sideways"], "expected ASC, DESC"),
    ],
)
def test_experiment_search_errors(filter_string, order_by, message):
    with pytest.raises(InvalidArgument, match="Invalid (filter|order_by)") as e:
        experiment_search_select(filter_string, pb.ALL, order_by, 0, 10)
    assert message in e.value.message


def test_unknown_view_type():
    with pytest.raises(InvalidArgument, match="Invalid view type 7"):
        run_search_phases(None, "", 7, [])
    with pytest.raises(InvalidArgument, match="Invalid view type 7"):
        experiment_search_select("", 7, [], 0, 10)


# ---------------------------------------------------------------- databases

EXPERIMENTS = [
    # id, name, stage, creation_time, last_update_time
    (1, "exp-a", "active", 100, 150),
    (2, "exp-b", "active", 200, 250),
    (3, "old-c", "deleted", 300, 350),
    (4, "EXP-D", "active", 400, 450),
]
EXPERIMENT_TAGS = [(1, "team", "vision"), (2, "team", "Vision"), (2, "a b", "x")]
RUNS = [
    # run_uuid, name, experiment, user, status, start_time, end_time, stage
    ("r1", "alpha", 1, "alice", "FINISHED", 1000, 1100, "active"),
    ("r2", "beta", 1, "bob", "RUNNING", 2000, None, "active"),
    ("r3", "gamma", 1, "alice", "FAILED", 3000, 3500, "active"),
    ("r4", "delta", 2, "carol", "FINISHED", 4000, 4100, "active"),
    ("r5", "epsilon", 1, "bob", "FINISHED", 5000, 5200, "deleted"),
    ("r6", "zeta", 2, "dave", "KILLED", 3000, 3300, "active"),
]
METRICS = [  # run, key, value (None: NaN)
    ("r1", "loss", 0.5), ("r1", "acc", 0.9),
    ("r2", "loss", 0.25),
    ("r3", "loss", None),
    ("r4", "loss", 1.5), ("r4", "my metric", 3.0),
    ("r5", "loss", 0.1),
]
PARAMS = [
    ("r1", "lr", "0.01"), ("r1", "opt", "Adam"), ("r1", "long", LONG + "a"),
    ("r2", "lr", "0.1"), ("r2", "opt", "adam"), ("r2", "long", LONG + "b"),
    ("r3", "opt", "sgd"),
    ("r4", "lr", "0.01"),
    ("r6", "opt", "x%y_z"), ("r6", "glob", "a*[b]?"), ("r6", "quote", "it's"),
]
TAGS = [
    ("r1", "mlflow.source.name", "train.py"), ("r1", "a b", "1"),
    ("r2", "mlflow.source.name", "eval.py"), ("r2", "a b", "2"),
    ("r3", "team", "Vision"),
    ("r4", "team", "vision"),
]


async def seed(engine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(insert(experiments), [
            dict(experiment_id=i, name=name, artifact_location=f"file:///a/{i}", lifecycle_stage=stage,
                 creation_time=created, last_update_time=updated)
            for i, name, stage, created, updated in EXPERIMENTS
        ])
        await conn.execute(insert(experiment_tags), [dict(experiment_id=i, key=k, value=v) for i, k, v in EXPERIMENT_TAGS])
        await conn.execute(insert(runs), [
            dict(run_uuid=r, name=name, experiment_id=e, user_id=user, status=status, start_time=start,
                 end_time=end, deleted_time=None, lifecycle_stage=stage, artifact_uri=f"file:///a/{e}/{r}/artifacts")
            for r, name, e, user, status, start, end, stage in RUNS
        ])
        await conn.execute(insert(latest_metrics), [
            dict(run_uuid=r, key=k, value=0.0 if v is None else v, is_nan=v is None, timestamp=0, step=0,
                 encoded=run_data_fields.metric(k, math.nan if v is None else v, 0, 0))
            for r, k, v in METRICS
        ])
        await conn.execute(insert(params), [dict(run_uuid=r, key=k, value=v, encoded=run_data_fields.param(k, v)) for r, k, v in PARAMS])
        await conn.execute(insert(tags), [dict(run_uuid=r, key=k, value=v, encoded=run_data_fields.tag(k, v)) for r, k, v in TAGS])


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(make_url(ADMIN_URL).set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
async def db(request):
    """A seeded async engine on each backend."""
    if request.param == "sqlite":
        engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
        await seed(engine)
        yield engine
        await engine.dispose()
        return
    name = f"mlgrid_search_{uuid.uuid4().hex[:12]}"
    try:
        await admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncpg.PostgresError) as e:
        pytest.fail(f"PostgreSQL at {ADMIN_URL} is not usable ({e}): start it, or set TEST_DATABASE_URL")
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    engine = create_async_engine(url)
    try:
        await seed(engine)
        yield engine
    finally:
        await engine.dispose()
        await admin(f'DROP DATABASE "{name}" WITH (FORCE)')


async def run_ids(engine, filter_string="", order_by=(), view_type=pb.ACTIVE_ONLY, experiment_ids=None, offset=0, limit=100):
    async with engine.connect() as conn:
        rows = await fetch_run_page(conn, experiment_ids, filter_string, view_type, list(order_by), offset, limit)
    return [row.run_uuid for row in rows]


async def experiment_ids(engine, filter_string="", order_by=(), view_type=pb.ACTIVE_ONLY, offset=0, limit=100):
    query = experiment_search_select(filter_string, view_type, list(order_by), offset, limit)
    async with engine.connect() as conn:
        return [row.experiment_id for row in await conn.execute(query)]


# ---------------------------------------------------------------- run filters

@pytest.mark.parametrize(
    "filter_string, expected",
    [
        ("", {"r1", "r2", "r3", "r4", "r6"}),
        ("  ", {"r1", "r2", "r3", "r4", "r6"}),
        # metrics: NaN (r3) and missing (r6) never match; deleted r5 is not active
        ("metrics.loss < 0.5", {"r2"}),
        ("metrics.loss <= 0.5", {"r1", "r2"}),
        ("metrics.loss > 0.3", {"r1", "r4"}),
        ("metrics.loss >= 1.5", {"r4"}),
        ("metrics.loss = 0.25", {"r2"}),
        ("metrics.loss != 0.5", {"r2", "r4"}),
        ("metric.loss > -1e3", {"r1", "r2", "r4"}),
        ("metrics.loss = 0", set()),  # NaN is stored as 0
        ('metrics."my metric" = 3', {"r4"}),
        ("metrics.`my metric` >= 3", {"r4"}),
        ("metrics.missing > 0", set()),
        # params: missing keys excluded also for != and NOT IN
        ("params.lr = '0.01'", {"r1", "r4"}),
        ('params.lr = "0.01"', {"r1", "r4"}),
        ("params.lr != '0.01'", {"r2"}),
        ("param.opt IN ('sgd', 'adam')", {"r2", "r3"}),
        ("parameters.opt NOT IN ('sgd')", {"r1", "r2", "r6"}),
        (f"params.long = '{LONG}a'", {"r1"}),
        (f"params.long IN ('{LONG}b', 'zzz')", {"r2"}),
        ("params.quote = 'it''s'", {"r6"}),
        ("params.quote = \"it's\"", {"r6"}),
        # LIKE is case-sensitive on both backends, ILIKE is not
        ("params.opt LIKE 'a%'", {"r2"}),
        ("params.opt LIKE 'A_am'", {"r1"}),
        ("params.opt LIKE '_DAM'", set()),
        ("params.opt ILIKE 'a%'", {"r1", "r2"}),
        ("params.opt ILIKE 'ADAM'", {"r1", "r2"}),
        ("params.opt LIKE 'x\\%y%'", {"r6"}),
        ("params.opt LIKE 'x%\\_z'", {"r6"}),
        ("params.opt LIKE 'x\\_%'", set()),
        ("params.glob LIKE 'a*[b]?'", {"r6"}),
        ("params.glob LIKE 'a_[b]_'", {"r6"}),
        ("params.glob LIKE 'a?%'", set()),
        # tags
        ("tags.`mlflow.source.name` = 'train.py'", {"r1"}),
        ("tags.mlflow.source.name = 'train.py'", {"r1"}),
        ('tags."a b" = "2"', {"r2"}),
        ("tags.team = 'vision'", {"r4"}),
        ("tags.team != 'vision'", {"r3"}),
        ("tags.team LIKE 'V%'", {"r3"}),
        ("tags.team ILIKE 'VISION'", {"r3", "r4"}),
        ("tag.team NOT IN ('Vision', 'other')", {"r4"}),
        # attributes
        ("attributes.status = 'FINISHED'", {"r1", "r4"}),
        ("attribute.status != 'FINISHED'", {"r2", "r3", "r6"}),
        ("attr.run_name LIKE 'G%'", set()),
        ("run.run_name ILIKE 'G%'", {"r3"}),
        ("attributes.run_id = 'r2'", {"r2"}),
        ("attributes.run_id IN ('r1', 'r4', 'r5')", {"r1", "r4"}),
        ("attributes.run_id NOT IN ('r1')", {"r2", "r3", "r4", "r6"}),
        ("attributes.user_id = 'alice'", {"r1", "r3"}),
        ("attributes.start_time >= 3000", {"r3", "r4", "r6"}),
        ("attributes.end_time < 3600", {"r1", "r3", "r6"}),
        ("attributes.end_time != 1100", {"r3", "r4", "r6"}),  # r2's end_time is NULL
        ("attributes.artifact_uri LIKE '%/r1/%'", {"r1"}),
        # conjunctions
        ("metrics.loss > 0.3 AND params.lr = '0.01'", {"r1", "r4"}),
        ("metrics.loss > 0.3 and params.lr = '0.01' And tags.team = 'vision'", {"r4"}),
        ("metrics.loss>0.3 AND params.lr='0.01'", {"r1", "r4"}),
    ],
)
async def test_run_filters(db, filter_string, expected):
    assert set(await run_ids(db, filter_string)) == expected


async def test_view_types(db):
    active = ["r4", "r3", "r6", "r2", "r1"]
    assert await run_ids(db, view_type=pb.VIEW_TYPE_UNSPECIFIED) == active
    assert await run_ids(db, view_type=pb.ACTIVE_ONLY) == active
    assert await run_ids(db, view_type=pb.DELETED_ONLY) == ["r5"]
    assert await run_ids(db, view_type=pb.ALL) == ["r5", *active]
    assert await run_ids(db, "metrics.loss < 0.2", view_type=pb.ALL) == ["r5"]


async def test_experiment_ids(db):
    assert await run_ids(db, experiment_ids=[2]) == ["r4", "r6"]
    assert await run_ids(db, experiment_ids=[1, 2]) == ["r4", "r3", "r6", "r2", "r1"]
    assert await run_ids(db, experiment_ids=[]) == await run_ids(db, experiment_ids=None)
    assert await run_ids(db, experiment_ids=[3]) == []
    assert await run_ids(db, "params.lr = '0.01'", experiment_ids=[1]) == ["r1"]


# ---------------------------------------------------------------- run order

@pytest.mark.parametrize(
    "order_by, expected",
    [
        ([], ["r4", "r3", "r6", "r2", "r1"]),  # start_time DESC, then run_uuid
        # numbers, then NaN (r3), then missing (r6), in both directions
        (["metrics.loss ASC"], ["r2", "r1", "r4", "r3", "r6"]),
        (["metrics.loss DESC"], ["r4", "r1", "r2", "r3", "r6"]),
        (["metrics.`my metric` desc"], ["r4", "r3", "r6", "r2", "r1"]),
        # missing params/tags last in both directions; ties fall back to start_time DESC
        (["params.lr"], ["r4", "r1", "r2", "r3", "r6"]),
        (["params.lr DESC"], ["r2", "r4", "r1", "r3", "r6"]),
        (["tags.`a b` desc"], ["r2", "r1", "r4", "r3", "r6"]),
        (['tags."a b" ASC'], ["r1", "r2", "r4", "r3", "r6"]),
        # attributes, with or without prefix; NULL end_time last
        (["attributes.end_time ASC"], ["r1", "r6", "r3", "r4", "r2"]),
        (["end_time DESC"], ["r4", "r3", "r6", "r1", "r2"]),
        (["start_time"], ["r1", "r2", "r3", "r6", "r4"]),
        (["run_name"], ["r1", "r2", "r4", "r3", "r6"]),
        (["attributes.run_id DESC"], ["r6", "r4", "r3", "r2", "r1"]),
        (["user_id", "status DESC"], ["r1", "r3", "r2", "r4", "r6"]),
        # several keys, and the same key twice
        (["params.lr ASC", "attributes.run_id DESC"], ["r4", "r1", "r2", "r6", "r3"]),
        (["params.lr", "params.lr DESC"], ["r4", "r1", "r2", "r3", "r6"]),
    ],
)
async def test_run_order(db, order_by, expected):
    assert await run_ids(db, order_by=order_by) == expected


async def test_filter_and_order_on_the_same_metric(db):
    assert await run_ids(db, "metrics.loss < 1", order_by=["metrics.loss DESC"]) == ["r1", "r2"]


async def test_offset_and_limit_page_through_in_order(db):
    everything = await run_ids(db, order_by=["metrics.loss"])
    pages = [await run_ids(db, order_by=["metrics.loss"], offset=o, limit=2) for o in (0, 2, 4)]
    assert pages == [everything[0:2], everything[2:4], everything[4:]]
    assert await run_ids(db, offset=1, limit=2) == ["r3", "r6"]


async def test_value_equality_can_use_the_prefix_index(db):
    """Equality on params/tags is written so that ix_params_key_value matches it."""
    (query,) = run_search_phases(None, "params.lr = '0.01'", pb.ACTIVE_ONLY, [])
    compiled = query.compile(dialect=db.dialect, compile_kwargs={"render_postcompile": True})
    values = tuple(compiled.params[name] for name in compiled.positiontup)
    async with db.connect() as conn:
        if db.dialect.name == "postgresql":
            await conn.exec_driver_sql("SET enable_seqscan = off")  # the tables are tiny
            plan = "\n".join(row[0] for row in await conn.exec_driver_sql(f"EXPLAIN {compiled}", values))
            assert "Index Scan using ix_params_key_value" in plan
            assert "substr(value, 1, 200) = '0.01'::text" in plan.split("ix_params_key_value", 1)[1].splitlines()[1]
        else:
            plan = "\n".join(row[3] for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", values))
            assert "USING INDEX ix_params_key_value (key=? AND <expr>=?)" in plan


# ---------------------------------------------------------------- experiments

@pytest.mark.parametrize(
    "filter_string, view_type, expected",
    [
        ("", pb.ACTIVE_ONLY, {1, 2, 4}),
        ("", pb.VIEW_TYPE_UNSPECIFIED, {1, 2, 4}),
        ("", pb.DELETED_ONLY, {3}),
        ("", pb.ALL, {1, 2, 3, 4}),
        ("name = 'exp-a'", pb.ACTIVE_ONLY, {1}),
        ("attribute.name != 'exp-a'", pb.ACTIVE_ONLY, {2, 4}),
        ("attributes.name LIKE 'exp%'", pb.ACTIVE_ONLY, {1, 2}),
        ("name ILIKE 'exp%'", pb.ACTIVE_ONLY, {1, 2, 4}),
        ("name LIKE '%c'", pb.ALL, {3}),
        ("creation_time > 100", pb.ACTIVE_ONLY, {2, 4}),
        ("attributes.last_update_time <= 250", pb.ACTIVE_ONLY, {1, 2}),
        ("tags.team = 'vision'", pb.ACTIVE_ONLY, {1}),
        ("tags.team != 'vision'", pb.ACTIVE_ONLY, {2}),
        ("tags.team LIKE 'V%'", pb.ACTIVE_ONLY, {2}),
        ("tags.team ILIKE 'vision'", pb.ACTIVE_ONLY, {1, 2}),
        ('tag."a b" LIKE "%"', pb.ACTIVE_ONLY, {2}),
        ("name LIKE 'exp%' AND creation_time >= 200", pb.ACTIVE_ONLY, {2}),
    ],
)
async def test_experiment_filters(db, filter_string, view_type, expected):
    assert set(await experiment_ids(db, filter_string, view_type=view_type)) == expected


@pytest.mark.parametrize(
    "filter_string, order_by, expected",
    [
        ("", [], [4, 2, 1]),  # creation_time DESC
        ("name LIKE 'exp%'", ["name"], [1, 2]),
        ("name LIKE 'exp%'", ["attributes.name DESC"], [2, 1]),
        ("", ["experiment_id DESC"], [4, 2, 1]),
        ("", ["attribute.last_update_time ASC"], [1, 2, 4]),
        ("", ["creation_time"], [1, 2, 4]),
    ],
)
async def test_experiment_order(db, filter_string, order_by, expected):
    assert await experiment_ids(db, filter_string, order_by) == expected


async def test_experiment_offset_and_limit(db):
    assert await experiment_ids(db, offset=1, limit=1) == [2]
    assert await experiment_ids(db, view_type=pb.ALL, offset=2, limit=5) == [2, 1]


@pytest.mark.parametrize("order", ["metrics.loss ASC", "metrics.loss DESC"])
async def test_pages_of_every_size_cross_the_metric_phases(db, order):
    """Ordering by a metric runs in phases (numbers, NaN, missing); any page must cut the same order."""
    everything = await run_ids(db, order_by=[order])
    numbers = [r for r in everything if r in {"r1", "r2", "r4", "r5"}]
    assert everything[len(numbers):len(numbers) + 1] == ["r3"]  # NaN after the numbers, missing ones last
    assert "r6" in everything[len(numbers) + 1:]
    for limit in range(1, len(everything) + 1):
        pages = [await run_ids(db, order_by=[order], offset=o, limit=limit) for o in range(0, len(everything), limit)]
        assert [r for page in pages for r in page] == everything
    assert await run_ids(db, order_by=[order], offset=len(everything), limit=3) == []
