"""Inference workers: processes that each load the model and predict one batch at a time, so
CPU-bound models use every core. A worker that dies (a crashing model) fails only the batch it
held, is reported, and is replaced. With size 0 the model runs in this process, in a thread."""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
from multiprocessing.connection import Connection

from prometheus_client import Counter

from services.common.errors import MlgridError, Unavailable
from services.serving.payload import Payload, Prediction
from services.serving.predictor import Predictor

log = logging.getLogger("mlgrid.serving")
WORKER_RESTARTS = Counter("mlgrid_serving_worker_restarts_total", "inference workers replaced after dying", ["model"])
_spawn = multiprocessing.get_context("spawn")
RESTART_ATTEMPTS = 3
WORKER_WAIT_CHECK_S = 1.0  # how often a request waiting for a worker checks that one can still come  # not fork: the parent runs gRPC threads


def _serve(conn: Connection, model_dir: str) -> None:
    """A worker process: load the model, then answer ("ok", Prediction) or ("error", kind, message) per payload."""
    try:
        predictor = Predictor.load(model_dir)
    except BaseException as error:  # report why the model does not load, then exit
        conn.send(("error", "FailedPrecondition", f"the model does not load: {type(error).__name__}: {error}"))
        return
    conn.send(("ready",))
    while True:
        try:
            payload = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", predictor.predict(payload)))
        except MlgridError as error:
            conn.send(("error", type(error).__name__, error.message))
        except Exception as error:
            conn.send(("error", "MlgridError", f"the model failed: {type(error).__name__}: {error}"))


def _raise(kind: str, message: str):
    from services.common import errors

    raise getattr(errors, kind, MlgridError)(message)


class _Worker:
    def __init__(self, model_dir: str):
        self.conn, child = _spawn.Pipe()
        self.process = _spawn.Process(target=_serve, args=(child, model_dir), daemon=True, name="mlgrid-inference")
        self.process.start()
        child.close()

    async def call(self, message) -> tuple:
        """Send one message and wait for the answer without blocking the event loop."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        fd = self.conn.fileno()

        def readable() -> None:
            loop.remove_reader(fd)
            try:
                answer.set_result(self.conn.recv())
            except (EOFError, OSError) as error:
                answer.set_exception(error)

        loop.add_reader(fd, readable)
        try:
            if message is not None:
                self.conn.send(message)
            return await answer
        except (EOFError, OSError, BrokenPipeError):
            raise Unavailable("the inference worker died (the model crashed it); it is being restarted") from None
        finally:
            loop.remove_reader(fd)

    def stop(self) -> None:
        self.conn.close()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()


class WorkerPool:
    """`size` worker processes on one model folder; predict() runs a payload on an idle one."""

    def __init__(self, model_dir: str, size: int, model_name: str):
        self.model_dir = model_dir
        self.size = size
        self.model_name = model_name
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._workers: list[_Worker] = []
        self._inline: Predictor | None = None
        self._inline_lock = asyncio.Lock()
        self._replacements: set[asyncio.Task] = set()

    async def start(self) -> None:
        if self.size == 0:
            self._inline = await asyncio.to_thread(Predictor.load, self.model_dir)
            return
        workers = await asyncio.gather(*(self._start_worker() for _ in range(self.size)))
        for worker in workers:
            self._idle.put_nowait(worker)

    async def _start_worker(self) -> _Worker:
        worker = await asyncio.to_thread(_Worker, self.model_dir)
        try:
            answer = await worker.call(None)
        except Unavailable:
            answer = ("error", "FailedPrecondition", "the inference worker exited while loading the model")
        if answer[0] != "ready":
            worker.stop()
            _raise(answer[1], answer[2])
        self._workers.append(worker)
        return worker

    @property
    def idle(self) -> int:
        return 1 if self._inline is not None and not self._inline_lock.locked() else self._idle.qsize()

    async def predict(self, payload: Payload) -> Prediction:
        """The prediction for a payload. A caller that is cancelled (a client gone) does not cancel the
        work: the worker's answer is still read, so the worker never returns a stale one to the next caller."""
        if self._inline is not None:
            return await asyncio.shield(self._predict_inline(payload))
        worker = self._idle.get_nowait() if not self._idle.empty() else await self._wait_for_worker()
        answer = await asyncio.shield(self._call(worker, payload))
        if answer[0] == "ok":
            return answer[1]
        _raise(answer[1], answer[2])

    async def _predict_inline(self, payload: Payload) -> Prediction:
        async with self._inline_lock:
            return await asyncio.to_thread(self._inline.predict, payload)

    async def _call(self, worker: _Worker, payload: Payload) -> tuple:
        try:
            answer = await worker.call(payload)
        except Unavailable:
            log.error("inference worker %d of model %s died; starting another", worker.process.pid, self.model_name)
            WORKER_RESTARTS.labels(self.model_name).inc()
            self._workers.remove(worker)
            worker.stop()
            self._replacements.add(asyncio.create_task(self._replace()))
            raise
        self._idle.put_nowait(worker)
        return answer

    async def _wait_for_worker(self) -> "_Worker":
        while True:
            try:
                return await asyncio.wait_for(self._idle.get(), WORKER_WAIT_CHECK_S)
            except TimeoutError:
                if not self._workers and not self._replacements:
                    raise Unavailable(f"model {self.model_name} has no inference worker: they died and could not be restarted; see the log") from None

    async def _replace(self) -> None:
        try:
            for attempt in range(RESTART_ATTEMPTS):
                try:
                    self._idle.put_nowait(await self._start_worker())
                    return
                except MlgridError as error:
                    log.error("cannot restart an inference worker of model %s (attempt %d): %s", self.model_name, attempt + 1, error.message)
                    await asyncio.sleep(2 ** attempt)
        finally:
            self._replacements.discard(asyncio.current_task())

    async def close(self) -> None:
        for task in list(self._replacements):
            task.cancel()
        for worker in self._workers:
            await asyncio.to_thread(worker.stop)
        self._workers.clear()

