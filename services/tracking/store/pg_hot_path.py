"""PostgreSQL hot paths on asyncpg directly, where SQLAlchemy's per-statement
overhead (~0.4 ms) and the round trips of BEGIN/COMMIT would dominate.

Measured before this module: unary LogMetric 256 calls/s through the ORM path
(5 round trips); one statement here.
"""
import asyncio
import math
import struct

import asyncpg
from sqlalchemy.engine import make_url

from services.db import run_data_fields
from services.tracking.store.batch import RUN_NAME_TAG, PreparedBatch, params_to_insert

# One statement, one round trip: append the point if the run is active, and
# advance the latest value; returns 0 when the run is missing or deleted.
_LOG_METRIC = """
WITH run AS (
    SELECT run_uuid FROM runs WHERE run_uuid = $1 AND lifecycle_stage = 'active'
), chunk AS (
    INSERT INTO metric_chunks (run_uuid, key, n, step_data, timestamp_data, value_data)
    SELECT run_uuid, $2, 1, $7, $8, $9 FROM run
    RETURNING 1
), latest AS (
    INSERT INTO latest_metrics AS lm (run_uuid, key, value, is_nan, timestamp, step, encoded)
    SELECT run_uuid, $2, $5, $6, $4, $3, $10 FROM run
    ON CONFLICT (run_uuid, key) DO UPDATE
        SET value = excluded.value, is_nan = excluded.is_nan, timestamp = excluded.timestamp, step = excluded.step,
            encoded = excluded.encoded
        WHERE excluded.step > lm.step OR (excluded.step = lm.step AND excluded.timestamp >= lm.timestamp)
    RETURNING 1
)
SELECT count(*) FROM chunk
"""


# Params, tags or latest metrics of many runs, a row per run instead of ~100:
# the encoded rows of each run concatenated, a serialized RunData.
_RUN_DATA = """
SELECT run_uuid, string_agg(encoded, ''::bytea) FROM {table} WHERE run_uuid = ANY($1::text[]) GROUP BY run_uuid
"""

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

_INPUTS = """
SELECT ri.run_uuid, d.dataset_uuid, d.name, d.digest, d.source_type, d.source, d.schema, d.profile
FROM run_inputs ri JOIN datasets d ON d.dataset_uuid = ri.dataset_uuid
WHERE ri.run_uuid = ANY($1::text[]) ORDER BY ri.run_uuid, d.name, d.digest
"""
_INPUT_TAGS = "SELECT run_uuid, dataset_uuid, key, value FROM run_input_tags WHERE run_uuid = ANY($1::text[])"

_INT64, _FLOAT64 = struct.Struct("<q"), struct.Struct("<d")  # the chunk encoding of metric_codec


async def _keep_session(_connection) -> None:
    """Our statements leave no session state behind, so skip asyncpg's reset round trip on release."""


class PgHotPath:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    @classmethod
    async def connect(cls, uri: str, pool_size: int, synchronous_commit: bool) -> "PgHotPath":
        dsn = make_url(uri).set(drivername="postgresql").render_as_string(hide_password=False)
        settings = {} if synchronous_commit else {"synchronous_commit": "off"}
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=pool_size, reset=_keep_session, server_settings=settings,
            max_inactive_connection_lifetime=0,
        )
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    async def log_metric(self, run_id: str, key: str, value: float, timestamp: int, step: int) -> bool:
        """Store one point; False when the run is not there or not active (nothing stored)."""
        is_nan = math.isnan(value)
        async with self.pool.acquire() as conn:
            stored = await conn.fetchval(
                _LOG_METRIC, run_id, key, step, timestamp, 0.0 if is_nan else value, is_nan,
                _INT64.pack(step), _INT64.pack(timestamp), _FLOAT64.pack(value),
                run_data_fields.metric(key, value, timestamp, step),
            )
        return stored == 1

    async def store_batch(self, run_id: str, request_id: str, prepared: PreparedBatch, now: int) -> bool | None:
        """Store a prepared batch in one transaction: True stored, False already stored under
        request_id, None when the run is missing or deleted (nothing stored)."""
        async with self.pool.acquire() as conn, conn.transaction():
            stage = await conn.fetchval("SELECT lifecycle_stage FROM runs WHERE run_uuid = $1 FOR SHARE", run_id)
            if stage != "active":
                return None
            if request_id and await conn.execute(_BATCH_ID, request_id, run_id, now) == "INSERT 0 0":
                return False
            if prepared.params:
                existing = dict(await conn.fetch(_EXISTING_PARAMS, run_id, list(prepared.params)))
                fresh = params_to_insert(run_id, existing, prepared.params)
                if fresh:
                    inserted = await conn.fetch(
                        _INSERT_PARAMS, run_id, list(fresh), list(fresh.values()),
                        [run_data_fields.param(k, v) for k, v in fresh.items()],
                    )
                    if len(inserted) < len(fresh):  # a concurrent call logged some of them: same values?
                        raced = dict(await conn.fetch(_EXISTING_PARAMS, run_id, list(fresh)))
                        params_to_insert(run_id, raced, fresh)
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
        return True

    async def fetch_inputs(self, run_ids: list[str]):
        """The dataset inputs of the runs and their tags, as SqlTrackingStore._fetch_inputs returns them."""
        return await asyncio.gather(self._fetch(_INPUTS, run_ids), self._fetch(_INPUT_TAGS, run_ids))

    async def _fetch(self, query: str, run_ids: list[str]):
        async with self.pool.acquire() as conn:
            return await conn.fetch(query, run_ids)

    async def fill_run_data(self, by_id: dict) -> None:
        """Set params, tags and latest metrics on the pb.Run values of `by_id` (keyed by run id).

        The three queries run concurrently on separate connections, so the
        database works on one while this process parses another."""
        run_ids = list(by_id)
        for rows in await asyncio.gather(
            *(self._fetch(_RUN_DATA.format(table=table), run_ids) for table in ("params", "tags", "latest_metrics"))
        ):
            for run_uuid, encoded in rows:
                by_id[run_uuid].data.MergeFromString(encoded)
