"""Metric history: every point of a run's metric, or one metric of several runs sampled for charts."""
import asyncio
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.errors import InvalidArgument
from services.db import validation
from services.db.schema import metric_chunks
from services.tracking.store import downsample, metric_codec
from services.tracking.store.base import StoreBase, run_row

HISTORY_READS_AT_ONCE = 4


class MetricHistory(StoreBase):
    async def metric_history(self, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All points of one metric, as (steps, timestamps, values) arrays ordered by step then timestamp."""
        async with self.reader.connect() as conn:
            await run_row(conn, validation.run_id(run_id))
            return metric_codec.unpack(await chunks(conn, run_id, key))

    async def sampled_metric_history(
        self, run_ids: Sequence[str], key: str, start_step: int | None, end_step: int | None, max_results: int
    ) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
        """One metric of several runs for charts: per run (run_id, steps, timestamps, values) within
        [start_step, end_step], at most max_results points, peaks and dips kept (see downsample)."""
        validation.bulk_run_ids(run_ids)
        validation.key("metric", key)
        if (start_step is None) != (end_step is None):
            raise InvalidArgument("start_step and end_step go together: give both, or neither for every step")
        if start_step is not None and start_step > end_step:
            raise InvalidArgument(f"start_step ({start_step}) must not be above end_step ({end_step})")
        max_results = validation.max_results(max_results, downsample.DEFAULT_MAX_RESULTS, downsample.MAX_RESULTS)
        sampled = []
        # A few histories read at a time: concurrent on PostgreSQL, and never a long wait for the pool.
        for start in range(0, len(run_ids), HISTORY_READS_AT_ONCE):
            some = run_ids[start : start + HISTORY_READS_AT_ONCE]
            histories = await asyncio.gather(*(self.metric_history(run_id, key) for run_id in some))
            sampled += [
                (run_id, *downsample.downsample(history, start_step, end_step, max_results))
                for run_id, history in zip(some, histories)
            ]
        return sampled


async def chunks(conn: AsyncConnection, run_id: str, key: str):
    """The stored chunks of one metric of a run, in the order they were written (metric_codec.unpack them)."""
    mc = metric_chunks.c
    return (
        await conn.execute(
            select(mc.step_data, mc.timestamp_data, mc.value_data)
            .where(mc.run_uuid == run_id, mc.key == key)
            .order_by(mc.chunk_id)
        )
    ).all()
