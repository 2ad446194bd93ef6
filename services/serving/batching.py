"""Adaptive batching: requests that reach a model while its workers are busy wait in a queue, and
the next free worker gets as many of them as fit in one batch (max_batch_size rows), concatenated
into one predict call; the answer is cut back into each request's rows. An idle server sends a
request at once (no added latency), a busy one sends ever larger batches. max_batch_wait_ms > 0
also holds a batch up to that long for more requests to join it."""
from __future__ import annotations

import asyncio
import json
import time
from collections import deque

import numpy as np
from prometheus_client import Gauge, Histogram

from services.common.errors import InvalidArgument, MlgridError
from services.serving.payload import Payload, Prediction
from services.serving.workers import WorkerPool

BATCH_REQUESTS = Histogram(
    "mlgrid_serving_batch_requests", "requests combined in one predict call", ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
QUEUE_DEPTH = Gauge("mlgrid_serving_queue_depth", "requests waiting for a worker", ["model"])


def _batch_key(payload: Payload) -> tuple:
    """Requests with equal keys can be concatenated: same kind, names, dtypes, trailing shapes and params."""
    arrays = tuple((name, a.dtype.str, a.shape[1:]) for name, a in payload.arrays.items())
    return payload.kind, arrays, json.dumps(payload.params, sort_keys=True, default=str) if payload.params else ""


class Batcher:
    def __init__(self, pool: WorkerPool, model_name: str, max_batch_size: int, max_batch_wait_ms: float):
        self.pool = pool
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max(0.0, max_batch_wait_ms) / 1000
        self._queue: deque[tuple[Payload, int, asyncio.Future, float]] = deque()
        self._queued = asyncio.Event()
        self._slots = asyncio.Semaphore(max(1, pool.size))
        self._in_flight: set[asyncio.Task] = set()
        self._batch_size = BATCH_REQUESTS.labels(model_name)
        self._depth = QUEUE_DEPTH.labels(model_name)
        self._loop_task = asyncio.create_task(self._dispatch())

    async def predict(self, payload: Payload) -> Prediction:
        rows = payload.rows
        if rows is None or rows > self.max_batch_size or not self._queue and not self._slots.locked() and not self.max_wait:
            return await self._alone(payload)  # nothing to batch with, or a worker is free: no queueing
        future = asyncio.get_running_loop().create_future()
        self._queue.append((payload, rows, future, time.monotonic()))
        self._depth.inc()
        self._queued.set()
        return await future

    async def _alone(self, payload: Payload) -> Prediction:
        async with self._slots:
            self._batch_size.observe(1)
            return await self.pool.predict(payload)

    def _take_batch(self) -> list[tuple[Payload, int, asyncio.Future, float]]:
        """The first queued request and those after it that can join it, up to max_batch_size rows."""
        first = self._queue.popleft()
        batch, rows, key, kept = [first], first[1], _batch_key(first[0]), deque()
        while self._queue and rows < self.max_batch_size:
            item = self._queue.popleft()
            if rows + item[1] <= self.max_batch_size and _batch_key(item[0]) == key:
                batch.append(item)
                rows += item[1]
            else:
                kept.append(item)
        self._queue.extendleft(reversed(kept))
        return batch

    def _queued_rows(self) -> int:
        return sum(item[1] for item in self._queue)

    async def _dispatch(self) -> None:
        while True:
            while not self._queue:
                self._queued.clear()
                await self._queued.wait()
            await self._slots.acquire()  # requests keep queueing meanwhile: the batch grows with the load
            if self.max_wait:
                deadline = self._queue[0][3] + self.max_wait
                while self._queued_rows() < self.max_batch_size and time.monotonic() < deadline:
                    self._queued.clear()
                    try:
                        await asyncio.wait_for(self._queued.wait(), deadline - time.monotonic())
                    except TimeoutError:
                        break
            batch = self._take_batch()
            self._depth.dec(len(batch))
            task = asyncio.create_task(self._run(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _run(self, batch) -> None:
        try:
            self._batch_size.observe(len(batch))
            if len(batch) == 1:
                results = [await self._settle(self.pool.predict(batch[0][0]))]
            else:
                results = await self._run_together(batch)
            for (_, _, future, _), result in zip(batch, results):
                if not future.done():
                    (future.set_exception if isinstance(result, BaseException) else future.set_result)(result)
        finally:
            self._slots.release()

    @staticmethod
    async def _settle(call):
        try:
            return await call
        except MlgridError as error:
            return error

    async def _run_together(self, batch) -> list:
        payloads = [item[0] for item in batch]
        merged = Payload(
            {name: np.concatenate([p.arrays[name] for p in payloads]) for name in payloads[0].arrays},
            params=payloads[0].params, kind=payloads[0].kind,
        )
        result = await self._settle(self.pool.predict(merged))
        total = sum(item[1] for item in batch)
        if isinstance(result, Prediction) and result.rows == total:
            bounds = np.cumsum([0] + [item[1] for item in batch])
            return [result.slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        if isinstance(result, MlgridError) and not isinstance(result, InvalidArgument):
            return [result] * len(batch)
        # A bad request in the batch, or a model whose output is not one row per input row:
        # each request on its own, so only the bad ones fail.
        return [await self._settle(self.pool.predict(p)) for p in payloads]

    async def drain(self) -> None:
        """Wait for every queued and running request to be answered."""
        while self._queue or self._in_flight:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        self._loop_task.cancel()
        for _, _, future, _ in self._queue:
            future.set_exception(MlgridError("the model was unloaded"))
        self._queue.clear()
