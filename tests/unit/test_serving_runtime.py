"""The serving runtime without the network: building a model's input from a payload, worker
processes (and their restart after a crash), and adaptive batching."""
import asyncio
import os
import time

import grpc
import numpy as np
import pandas as pd
import pytest

import mlgrid.pyfunc
from mlgrid.models import ColSpec, ModelSignature, Schema
from services.common.errors import InvalidArgument, Unavailable
from services.serving.batching import Batcher
from services.serving.payload import UNNAMED, Payload
from services.serving.predictor import Predictor
from services.serving.workers import WorkerPool

SIGNATURE = ModelSignature(Schema((ColSpec("double", "a"), ColSpec("double", "b"))))


class SumRows(mlgrid.pyfunc.PythonModel):
    """a + b per row; sleeps `delay` per call so that requests queue; dies on a = -999."""

    def __init__(self, delay=0.0):
        self.delay = delay

    def predict(self, context, model_input, params=None):
        if (model_input["a"] == -999).any():
            os._exit(3)
        if (model_input["a"] == -1).any():
            raise ValueError("a must not be -1")
        time.sleep(self.delay)
        return (model_input["a"] + model_input["b"]).to_numpy()


class CallSizes(mlgrid.pyfunc.PythonModel):
    """Returns, for each row, how many rows the predict call held."""

    def predict(self, context, model_input, params=None):
        time.sleep(0.02)
        return np.full(len(model_input), len(model_input))


def save(tmp_path, python_model, name="m", signature=SIGNATURE):
    path = tmp_path / name
    mlgrid.pyfunc.save_model(path, python_model=python_model, signature=signature)
    return str(path)


def columns(a, b):
    return Payload({"a": np.asarray(a, dtype=float), "b": np.asarray(b, dtype=float)})


def test_payloads_become_what_the_signature_asks(tmp_path):
    predictor = Predictor.load(save(tmp_path, SumRows()))
    assert list(predictor.predict(columns([1, 2], [10, 20])).arrays[UNNAMED]) == [11, 22]
    as_matrix = Payload({"input-0": np.array([[1.0, 2.0], [3.0, 4.0]])}, kind="tensor")  # OIP: one [N, 2] tensor
    frame = predictor.model_input(as_matrix)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == ["a", "b"]
    oip_columns = Payload({"a": np.array([[1.0], [2.0]]), "b": np.array([[3.0], [4.0]])})  # OIP: [N, 1] columns
    assert list(predictor.predict(oip_columns).arrays[UNNAMED]) == [4.0, 6.0]
    with pytest.raises(InvalidArgument, match="missing column"):
        predictor.predict(Payload({"a": np.array([1.0])}))


async def test_workers_predict_and_a_crashed_worker_is_replaced(tmp_path):
    pool = WorkerPool(save(tmp_path, SumRows()), 1, "crashy")
    await pool.start()
    try:
        assert list((await pool.predict(columns([1], [2]))).arrays[UNNAMED]) == [3]
        with pytest.raises(Unavailable, match="worker died"):
            await pool.predict(columns([-999], [0]))
        result = await asyncio.wait_for(pool.predict(columns([5], [5])), 60)  # waits for the replacement
        assert list(result.arrays[UNNAMED]) == [10]
        with pytest.raises(InvalidArgument):
            await pool.predict(Payload({"a": np.array(["x"], dtype=object), "b": np.array([1.0])}))
    finally:
        await pool.close()


async def test_requests_fail_rather_than_wait_when_no_worker_can_come_back(tmp_path, monkeypatch):
    from services.serving import workers

    monkeypatch.setattr(workers, "RESTART_ATTEMPTS", 1)
    path = save(tmp_path, SumRows())
    pool = WorkerPool(path, 1, "gone")
    await pool.start()
    try:
        os.remove(os.path.join(path, "python_model.pkl"))  # the replacement cannot load the model
        with pytest.raises(Unavailable):
            await pool.predict(columns([-999], [0]))
        with pytest.raises(Unavailable, match="could not be restarted"):
            await asyncio.wait_for(pool.predict(columns([1], [1])), 60)
    finally:
        await pool.close()


async def test_a_model_that_does_not_load_is_a_clear_error(tmp_path):
    path = save(tmp_path, SumRows())
    os.remove(os.path.join(path, "python_model.pkl"))
    pool = WorkerPool(path, 1, "broken")
    with pytest.raises(Exception, match="does not load"):
        await pool.start()
    await pool.close()


@pytest.mark.parametrize("workers", [0, 1])
async def test_concurrent_requests_are_batched_and_answered_row_by_row(tmp_path, workers):
    pool = WorkerPool(save(tmp_path, CallSizes()), workers, "sizes")
    await pool.start()
    batcher = Batcher(pool, "sizes", max_batch_size=64, max_batch_wait_ms=0)
    try:
        results = await asyncio.gather(*(batcher.predict(columns([i] * (1 + i % 2), [0] * (1 + i % 2))) for i in range(16)))
        sizes = [r.arrays[UNNAMED] for r in results]
        assert [len(s) for s in sizes] == [1 + i % 2 for i in range(16)]  # each got its own rows back
        assert max(s[0] for s in sizes) > 2  # some predict calls held several requests
        one = await batcher.predict(columns([1], [1]))  # an idle server sends at once
        assert list(one.arrays[UNNAMED]) == [1]
    finally:
        await batcher.close()
        await pool.close()


async def test_a_bad_request_fails_alone_and_max_batch_size_holds(tmp_path):
    pool = WorkerPool(save(tmp_path, SumRows(delay=0.02)), 0, "sum")
    await pool.start()
    batcher = Batcher(pool, "sum", max_batch_size=3, max_batch_wait_ms=50)
    try:
        good = [batcher.predict(columns([i], [1])) for i in range(5)]
        bad_type = batcher.predict(Payload({"a": np.array(["x"], dtype=object), "b": np.array([1.0])}))
        bad_value = batcher.predict(columns([-1], [0]))  # batched with good ones: the batch fails, then each runs alone
        results = await asyncio.gather(*good, bad_type, bad_value, return_exceptions=True)
        assert [list(r.arrays[UNNAMED]) for r in results[:5]] == [[1], [2], [3], [4], [5]]
        assert isinstance(results[5], InvalidArgument) and results[5].code == grpc.StatusCode.INVALID_ARGUMENT
        assert isinstance(results[6], InvalidArgument) and "must not be -1" in results[6].message
        too_big = await batcher.predict(columns(range(10), range(10)))  # larger than a batch: runs alone
        assert len(too_big.arrays[UNNAMED]) == 10
    finally:
        await batcher.close()
        await pool.close()


async def test_a_cancelled_caller_leaves_the_worker_in_step(tmp_path):
    pool = WorkerPool(save(tmp_path, SumRows(delay=0.2)), 1, "cancel")
    await pool.start()
    try:
        first = asyncio.ensure_future(pool.predict(columns([1], [1])))
        await asyncio.sleep(0.05)
        first.cancel()  # the client went away while the worker computes
        second = await asyncio.wait_for(pool.predict(columns([10], [10])), 30)
        assert list(second.arrays[UNNAMED]) == [20]  # its own answer, not the cancelled one's
        assert list((await pool.predict(columns([3], [4]))).arrays[UNNAMED]) == [7]
    finally:
        await pool.close()
