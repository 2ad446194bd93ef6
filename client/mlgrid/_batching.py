"""Background metric logging for the fluent API.

`MetricBatcher.add` appends a point to in-memory columns and returns; a daemon
thread sends what accumulated every half second (sooner when much is waiting)
as IngestBatch messages over one IngestMetrics stream. Each batch has a fresh
id, and retries resend the same ids, so the server stores every point once.
A refused batch is never dropped silently: its error is kept and raised from
the next `add` for that run, or by `raise_pending`.
"""
from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

import grpc

from mlgrid.exceptions import MlgridException
from mlgrid.v1 import tracking_pb2 as pb

FLUSH_INTERVAL_S = 0.5
FLUSH_AT_POINTS = 20_000  # wake the sender early when this many points wait
MAX_POINTS_PER_MESSAGE = 50_000
# Beyond this many waiting points (the server is slow or away), `add` sends
# them itself, so memory stays bounded; below it, `add` never waits on the network.
MAX_BUFFERED_POINTS = 1_000_000
SEND_TIMEOUT_S = 120

# The points of one (run, key) as parallel lists: steps, timestamps, values.
Columns = tuple[list, list, list]


class MetricBatcher:
    """Buffers metric points of any runs and sends them to `client.ingest` from a daemon thread."""

    def __init__(self, client, flush_interval: float = FLUSH_INTERVAL_S, flush_at_points: int = FLUSH_AT_POINTS,
                 max_points_per_message: int = MAX_POINTS_PER_MESSAGE, max_buffered_points: int = MAX_BUFFERED_POINTS):
        self._client = client
        self._flush_interval = flush_interval
        self._flush_at_points = flush_at_points
        self._max_points_per_message = max_points_per_message
        self._max_buffered_points = max_buffered_points
        self._buffer: dict[tuple[str, str], Columns] = {}
        self._buffered = 0
        self._buffer_lock = threading.Lock()  # held only to append a point or swap the buffer
        self._send_lock = threading.Lock()  # one send at a time; flush() waits for the one under way
        self._errors: dict[str, MlgridException] = {}  # run_id -> first unreported error
        self._wake = threading.Event()
        self._closed = False
        self._sender = threading.Thread(target=self._send_periodically, name="mlgrid-metric-batcher", daemon=True)
        self._sender.start()

    def add(self, run_id: str, key: str, value, step: int | None = None, timestamp: int | None = None) -> None:
        """Buffer one point (step 0 and the current time unless given); raises the run's pending error first."""
        if run_id in self._errors:
            self.raise_pending((run_id,))
        if not isinstance(key, str):
            raise TypeError(f"metric key must be a str, got {type(key).__name__}")
        value = float(value)
        step = 0 if step is None else int(step)
        timestamp = int(time.time() * 1000) if timestamp is None else int(timestamp)
        with self._buffer_lock:
            columns = self._buffer.get((run_id, key))
            if columns is None:
                columns = self._buffer[(run_id, key)] = ([], [], [])
            columns[0].append(step)
            columns[1].append(timestamp)
            columns[2].append(value)
            self._buffered += 1
            buffered = self._buffered
        if buffered >= self._flush_at_points:
            if buffered >= self._max_buffered_points:
                self.flush()
            else:
                self._wake.set()

    def flush(self) -> None:
        """Send everything buffered so far and return when it is stored or refused (see raise_pending)."""
        with self._send_lock:
            with self._buffer_lock:
                buffer, self._buffer, self._buffered = self._buffer, {}, 0
            if buffer:
                self._send(buffer)

    def raise_pending(self, run_ids) -> None:
        """Raise (once) the first error kept for any of `run_ids`."""
        for run_id in run_ids:
            error = self._errors.pop(run_id, None)
            if error is not None:
                raise error

    def pop_errors(self) -> dict[str, MlgridException]:
        """Take every kept error, by run id."""
        with self._send_lock:  # errors are kept while sending
            errors, self._errors = self._errors, {}
        return errors

    def close(self) -> None:
        """Stop the sender thread and send what is left."""
        self._closed = True
        self._wake.set()
        self._sender.join()
        self.flush()

    def _send_periodically(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            self.flush()

    def _send(self, buffer: dict[tuple[str, str], Columns]) -> None:
        batches_by_run: dict[str, list[pb.IngestBatch]] = {}
        for run_id, series in _group_by_run(buffer).items():
            try:
                batches_by_run[run_id] = self._pack(run_id, series)
            except (TypeError, ValueError) as e:  # e.g. a step outside int64
                self._keep_error(run_id, MlgridException(str(e), grpc.StatusCode.INVALID_ARGUMENT))
        if not batches_by_run:
            return
        error = self._ingest([batch for batches in batches_by_run.values() for batch in batches])
        if error is None:
            return
        if len(batches_by_run) == 1 or error.code == grpc.StatusCode.UNAVAILABLE:
            for run_id in batches_by_run:
                self._keep_error(run_id, error)
            return
        # One run's batch was refused: send each run apart, so the other runs' points
        # are stored (batches the server already has are acknowledged, not stored again).
        for run_id, batches in batches_by_run.items():
            run_error = self._ingest(batches)
            if run_error is not None:
                self._keep_error(run_id, run_error)

    def _ingest(self, batches: list[pb.IngestBatch]) -> MlgridException | None:
        try:
            self._client.ingest(batches, timeout=SEND_TIMEOUT_S)
        except MlgridException as error:
            return error
        except Exception as error:  # e.g. a closed channel: reported like a refusal, never lost silently
            return MlgridException(f"{type(error).__name__}: {error}", grpc.StatusCode.UNKNOWN)
        return None

    def _pack(self, run_id: str, series: list[tuple[str, Columns]]) -> list[pb.IngestBatch]:
        """The run's points as IngestBatch messages of at most max_points_per_message points each."""
        batches = [pb.IngestBatch(batch_id=uuid.uuid4().hex, run_id=run_id)]
        room = self._max_points_per_message
        for key, (steps, timestamps, values) in series:
            start = 0
            while start < len(steps):
                if room == 0:
                    batches.append(pb.IngestBatch(batch_id=uuid.uuid4().hex, run_id=run_id))
                    room = self._max_points_per_message
                end = min(len(steps), start + room)
                batches[-1].metrics.add(
                    key=key, steps=steps[start:end], timestamps=timestamps[start:end], values=values[start:end]
                )
                room -= end - start
                start = end
        return batches

    def _keep_error(self, run_id: str, error: MlgridException) -> None:
        message = f"metrics logged to run {run_id} were not stored: {error.message}"
        self._errors.setdefault(run_id, MlgridException(message, error.code))


def _group_by_run(buffer: dict[tuple[str, str], Columns]) -> dict[str, list[tuple[str, Columns]]]:
    by_run = defaultdict(list)
    for (run_id, key), columns in buffer.items():
        by_run[run_id].append((key, columns))
    return by_run
