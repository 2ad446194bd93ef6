"""The write path on asyncpg directly, for PostgreSQL (see write_path), where SQLAlchemy's per-statement
overhead (~0.4 ms) and the round trips of BEGIN/COMMIT would dominate.

Measured before this module: unary LogMetric 256 calls/s through the ORM path
(5 round trips); one statement here.
"""
import asyncio
import math
import random
import struct
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.v1 import tracking_pb2 as pb
from services.db import run_data_fields, validation
from services.db.clock import now_ms
from services.tracking.store.base import no_logged_model, require_active
from services.tracking.store.batch import RUN_NAME_TAG, PreparedBatch, params_to_insert
from services.tracking.store.write_path import WritePath

# One statement, one round trip: append the point if the run is active, and advance
# the latest value; returns the run's lifecycle stage (NULL, no row, when there is no run).
_LOG_METRIC = """
WITH run AS (
    SELECT run_uuid, lifecycle_stage FROM runs WHERE run_uuid = $1
), active AS (
    SELECT run_uuid FROM run WHERE lifecycle_stage = 'active'
), chunk AS (
    INSERT INTO metric_chunks (run_uuid, key, n, step_data, timestamp_data, value_data)
    SELECT run_uuid, $2, 1, $7, $8, $9 FROM active
), latest AS (
    INSERT INTO latest_metrics AS lm (run_uuid, key, value, is_nan, timestamp, step, encoded)
    SELECT run_uuid, $2, $5, $6, $4, $3, $10 FROM active
    ON CONFLICT (run_uuid, key) DO UPDATE
        SET value = excluded.value, is_nan = excluded.is_nan, timestamp = excluded.timestamp, step = excluded.step,
            encoded = excluded.encoded
        WHERE excluded.step > lm.step OR (excluded.step = lm.step AND excluded.timestamp >= lm.timestamp)
)
SELECT lifecycle_stage FROM run
"""

# Params, tags or latest metrics of many runs, a row per run instead of ~100:
# the encoded rows of each run concatenated, a serialized RunData.
_RUN_DATA = """
SELECT run_uuid, string_agg(encoded, ''::bytea) FROM {table} WHERE run_uuid = ANY($1::text[]) GROUP BY run_uuid
"""

DEADLOCK_ATTEMPTS = 4
_RUN_STAGE = "SELECT lifecycle_stage FROM runs WHERE run_uuid = $1 FOR SHARE"
# A batch that renames the run takes the lock the rename needs at once: two batches holding the row FOR SHARE
# and then both updating it would deadlock.
_RUN_STAGE_TO_RENAME = "SELECT lifecycle_stage FROM runs WHERE run_uuid = $1 FOR NO KEY UPDATE"
_BATCH_ID = "INSERT INTO ingest_batches (batch_id, run_uuid, created_time) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
_EXISTING_PARAMS = "SELECT key, value FROM params WHERE run_uuid = $1 AND key = ANY($2::text[])"
_INSERT_PARAMS = """
INSERT INTO params (run_uuid, key, value, encoded) SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bytea[])
ON CONFLICT DO NOTHING
RETURNING key
"""
_UPSERT_TAGS = """
INSERT INTO tags (run_uuid, key, value, encoded) SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bytea[])
ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, encoded = excluded.encoded
"""
_RUN_NAME = "UPDATE runs SET name = $2 WHERE run_uuid = $1"
_INSERT_CHUNKS = """
INSERT INTO metric_chunks (run_uuid, key, n, step_data, timestamp_data, value_data)
SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bytea[], $5::bytea[], $6::bytea[])
"""
_UPSERT_LATEST = """
INSERT INTO latest_metrics AS lm (run_uuid, key, value, is_nan, timestamp, step, encoded)
SELECT $1, * FROM unnest($2::text[], $3::float8[], $4::bool[], $5::int8[], $6::int8[], $7::bytea[])
ON CONFLICT (run_uuid, key) DO UPDATE
    SET value = excluded.value, is_nan = excluded.is_nan, timestamp = excluded.timestamp, step = excluded.step,
        encoded = excluded.encoded
    WHERE excluded.step > lm.step OR (excluded.step = lm.step AND excluded.timestamp >= lm.timestamp)
"""
_ACTIVE_MODELS = "SELECT model_id FROM logged_models WHERE model_id = ANY($1::text[]) AND lifecycle_stage = 'active'"
_UPSERT_MODEL_METRICS = """
INSERT INTO logged_model_metrics (model_id, key, step, timestamp, run_id, dataset_name, dataset_digest, value, is_nan)
SELECT model_id, key, step, timestamp, $1, dataset_name, dataset_digest, value, is_nan
FROM unnest($2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[], $7::text[], $8::float8[], $9::bool[])
    AS m(model_id, key, step, timestamp, dataset_name, dataset_digest, value, is_nan)
ON CONFLICT (model_id, key, step, timestamp, run_id, dataset_name, dataset_digest) DO UPDATE
    SET value = excluded.value, is_nan = excluded.is_nan
"""

_INPUTS = """
SELECT ri.run_uuid, d.dataset_uuid, d.name, d.digest, d.source_type, d.source, d.schema, d.profile
FROM run_inputs ri JOIN datasets d ON d.dataset_uuid = ri.dataset_uuid
WHERE ri.run_uuid = ANY($1::text[]) ORDER BY ri.run_uuid, d.name, d.digest
"""
_INPUT_TAGS = "SELECT run_uuid, dataset_uuid, key, value FROM run_input_tags WHERE run_uuid = ANY($1::text[])"

_INT64, _FLOAT64 = struct.Struct("<q"), struct.Struct("<d")  # the chunk encoding of metric_codec


async def _keep_session(_connection) -> None:
    """Our statements leave no session state behind, so skip asyncpg's reset round trip on release."""


class PgWritePath(WritePath):
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    @classmethod
    async def connect(cls, uri: str, pool_size: int, synchronous_commit: bool) -> "PgWritePath":
        dsn = make_url(uri).set(drivername="postgresql").render_as_string(hide_password=False)
        settings = {} if synchronous_commit else {"synchronous_commit": "off"}
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=pool_size, reset=_keep_session, server_settings=settings,
            max_inactive_connection_lifetime=0,
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def log_metric(self, run_id: str, key: str, value: float, timestamp: int, step: int) -> None:
        is_nan = math.isnan(value)
        async with self.pool.acquire() as conn:
            stage = await conn.fetchval(
                _LOG_METRIC, run_id, key, step, timestamp, 0.0 if is_nan else value, is_nan,
                _INT64.pack(step), _INT64.pack(timestamp), _FLOAT64.pack(value),
                run_data_fields.metric(key, value, timestamp, step),
            )
        require_active(run_id, stage)  # nothing was stored unless the run is active

    async def store_batch(
        self, run_id: str, request_id: str, prepared: PreparedBatch, model_metrics: Sequence[pb.Metric] = ()
    ) -> bool:
        # Batches lock in one order (keys sorted, the run first) and should not deadlock; should PostgreSQL still
        # pick this one as a deadlock's victim, it was rolled back whole and is tried again.
        attempt = 1
        while True:
            try:
                return await self._store_batch(run_id, request_id, prepared, model_metrics)
            except (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError):
                if attempt == DEADLOCK_ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
                attempt += 1

    async def _store_batch(
        self, run_id: str, request_id: str, prepared: PreparedBatch, model_metrics: Sequence[pb.Metric]
    ) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            lock = _RUN_STAGE_TO_RENAME if RUN_NAME_TAG in prepared.tags else _RUN_STAGE
            require_active(run_id, await conn.fetchval(lock, run_id))
            if request_id and await conn.execute(_BATCH_ID, request_id, run_id, now_ms()) == "INSERT 0 0":
                return False
            if prepared.params:
                await self._insert_params(conn, run_id, prepared.params)
            if prepared.tags:
                await conn.execute(
                    _UPSERT_TAGS, run_id, list(prepared.tags), list(prepared.tags.values()),
                    [run_data_fields.tag(k, v) for k, v in prepared.tags.items()],
                )
                if RUN_NAME_TAG in prepared.tags:
                    await conn.execute(_RUN_NAME, run_id, prepared.tags[RUN_NAME_TAG])
            if prepared.chunks:
                await conn.execute(_INSERT_CHUNKS, run_id, *zip(*prepared.chunks))
                await conn.execute(_UPSERT_LATEST, run_id, *zip(*prepared.latest))
            if model_metrics:
                await self._insert_model_metrics(conn, run_id, model_metrics)
        return True

    @staticmethod
    async def _insert_params(conn: asyncpg.Connection, run_id: str, new_params: dict[str, str]) -> None:
        existing = dict(await conn.fetch(_EXISTING_PARAMS, run_id, list(new_params)))
        fresh = params_to_insert(run_id, existing, new_params)
        if fresh:
            inserted = await conn.fetch(
                _INSERT_PARAMS, run_id, list(fresh), list(fresh.values()),
                [run_data_fields.param(k, v) for k, v in fresh.items()],
            )
            if len(inserted) < len(fresh):  # a concurrent call logged some of them: same values?
                raced = dict(await conn.fetch(_EXISTING_PARAMS, run_id, list(fresh)))
                params_to_insert(run_id, raced, fresh)

    @staticmethod
    async def _insert_model_metrics(conn: asyncpg.Connection, run_id: str, metrics: Sequence[pb.Metric]) -> None:
        """The points that name a model_id, as that logged model's metrics too."""
        ids = {validation.model_id(m.model_id) for m in metrics}
        if missing := ids - {row[0] for row in await conn.fetch(_ACTIVE_MODELS, list(ids))}:
            raise no_logged_model(sorted(missing)[0])
        rows = {}  # by primary key, the last of repeated points winning (one statement may not update a row twice)
        for m in metrics:
            nan = math.isnan(m.value)
            rows[m.model_id, m.key, m.step, m.timestamp, m.dataset_name, m.dataset_digest] = (0.0 if nan else m.value, nan)
        await conn.execute(_UPSERT_MODEL_METRICS, run_id, *zip(*(key + value for key, value in rows.items())))

    async def _fetch(self, query: str, run_ids: list[str]):
        async with self.pool.acquire() as conn:
            return await conn.fetch(query, run_ids)

    async def fill_run_data(self, conn: AsyncConnection, run_ids: list[str], by_id: dict[str, pb.Run]) -> None:
        """The three queries run concurrently on pool connections of their own (not `conn`), so the
        database works on one while this process parses another."""
        for rows in await asyncio.gather(
            *(self._fetch(_RUN_DATA.format(table=table), run_ids) for table in ("params", "tags", "latest_metrics"))
        ):
            for run_uuid, encoded in rows:
                by_id[run_uuid].data.MergeFromString(encoded)

    async def fetch_inputs(self, conn: AsyncConnection, run_ids: list[str]):
        return await asyncio.gather(self._fetch(_INPUTS, run_ids), self._fetch(_INPUT_TAGS, run_ids))

    async def read_together(self, *reads: Callable[[], Awaitable[None]]) -> None:
        await asyncio.gather(*(read() for read in reads))
