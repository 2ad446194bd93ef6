"""MetricBatcher: buffering, columnar batches, error surfacing, and the retry/dedupe protocol over real gRPC."""
import threading
import time
from concurrent import futures

import grpc
import pytest

from mlgrid import _retry as retry
from mlgrid._batching import MetricBatcher
from mlgrid.client import MlgridClient
from mlgrid.exceptions import MlgridException
from mlgrid.v1 import tracking_pb2 as pb
from mlgrid.v1 import tracking_pb2_grpc

RUN_A, RUN_B = "a" * 32, "b" * 32
NEVER = 3600  # a flush interval that keeps the sender thread out of a test's way


class RecordingClient:
    """Stands in for MlgridClient.ingest: keeps every stream's batches; refuses streams naming a refused run."""

    def __init__(self, refused_runs=(), error_code=grpc.StatusCode.FAILED_PRECONDITION):
        self.streams: list[list[pb.IngestBatch]] = []
        self.refused_runs = set(refused_runs)
        self.error_code = error_code
        self.sent = threading.Event()

    def ingest(self, batches, timeout=None):
        batches = list(batches)
        self.streams.append(batches)
        self.sent.set()
        for batch in batches:
            if batch.run_id in self.refused_runs:
                raise MlgridException(f"run {batch.run_id} is deleted", self.error_code)
        return pb.IngestSummary(batches=len(batches))

    def stored_points(self, run_id, key):
        """(step, timestamp, value) of every point of the streams that were not refused."""
        return [point
                for stream in self.streams if not {b.run_id for b in stream} & self.refused_runs
                for batch in stream if batch.run_id == run_id
                for series in batch.metrics if series.key == key
                for point in zip(series.steps, series.timestamps, series.values)]


@pytest.fixture
def make_batcher():
    batchers = []

    def make(client, **options):
        batchers.append(MetricBatcher(client, **{"flush_interval": NEVER, **options}))
        return batchers[-1]

    yield make
    for batcher in batchers:
        batcher.close()


def test_points_are_sent_as_columns_one_batch_per_run(make_batcher):
    client = RecordingClient()
    batcher = make_batcher(client)
    batcher.add(RUN_A, "loss", 1, step=0, timestamp=100)
    batcher.add(RUN_B, "loss", 0.5, step=0, timestamp=100)
    batcher.add(RUN_A, "loss", 0.9, step=1, timestamp=101)
    batcher.add(RUN_A, "acc", 0.1, step=1, timestamp=101)
    assert client.streams == []  # nothing leaves before a flush
    batcher.flush()
    (stream,) = client.streams
    assert [b.run_id for b in stream] == [RUN_A, RUN_B] and len({b.batch_id for b in stream}) == 2
    series_a = {s.key: (list(s.steps), list(s.timestamps), list(s.values)) for s in stream[0].metrics}
    assert series_a == {"loss": ([0, 1], [100, 101], [1.0, 0.9]), "acc": ([1], [101], [0.1])}
    assert client.stored_points(RUN_B, "loss") == [(0, 100, 0.5)]


def test_step_defaults_to_zero_and_timestamp_to_now_in_ms(make_batcher):
    client = RecordingClient()
    batcher = make_batcher(client)
    before = int(time.time() * 1000)
    batcher.add(RUN_A, "loss", 2)
    batcher.flush()
    ((step, timestamp, value),) = client.stored_points(RUN_A, "loss")
    assert step == 0 and value == 2.0 and before <= timestamp <= int(time.time() * 1000)


def test_order_of_points_is_kept(make_batcher):
    client = RecordingClient()
    batcher = make_batcher(client)
    points = [(step % 7, 1000 + step, step * 0.5) for step in range(100)]
    for step, timestamp, value in points:
        batcher.add(RUN_A, "loss", value, step, timestamp)
    batcher.flush()
    assert client.stored_points(RUN_A, "loss") == points


def test_large_flush_is_split_into_messages_of_bounded_size(make_batcher):
    client = RecordingClient()
    batcher = make_batcher(client, max_points_per_message=10)
    for step in range(25):
        batcher.add(RUN_A, "loss", step, step, 0)
    for step in range(5):
        batcher.add(RUN_A, "acc", step, step, 0)
    batcher.flush()
    (stream,) = client.streams
    assert [sum(len(s.steps) for s in b.metrics) for b in stream] == [10, 10, 10]
    assert len({b.batch_id for b in stream}) == 3
    assert [p[0] for p in client.stored_points(RUN_A, "loss")] == list(range(25))
    assert [p[0] for p in client.stored_points(RUN_A, "acc")] == list(range(5))


def test_bad_points_are_refused_by_add(make_batcher):
    batcher = make_batcher(RecordingClient())
    with pytest.raises(TypeError, match="metric key must be a str"):
        batcher.add(RUN_A, 1, 1.0)
    with pytest.raises(ValueError):
        batcher.add(RUN_A, "loss", "not a number")


def test_sender_wakes_when_enough_points_wait(make_batcher):
    client = RecordingClient()
    batcher = make_batcher(client, flush_at_points=5)
    for step in range(5):
        batcher.add(RUN_A, "loss", 1.0, step)
    assert client.sent.wait(10)
    batcher.flush()
    assert len(client.stored_points(RUN_A, "loss")) == 5


def test_sender_flushes_periodically(make_batcher):
    client = RecordingClient()
    batcher = make_batcher(client, flush_interval=0.05)
    batcher.add(RUN_A, "loss", 1.0)
    assert client.sent.wait(10)


def test_add_sends_itself_when_the_buffer_is_full(make_batcher):
    client = RecordingClient()
    batcher = make_batcher(client, flush_at_points=3, max_buffered_points=3)
    for step in range(3):
        batcher.add(RUN_A, "loss", 1.0, step)
    assert len(client.stored_points(RUN_A, "loss")) == 3  # sent before the third add returned


def test_refused_points_raise_once_from_raise_pending_or_the_next_add(make_batcher):
    client = RecordingClient(refused_runs={RUN_A})
    batcher = make_batcher(client)
    batcher.add(RUN_A, "loss", 1.0)
    batcher.flush()  # the error is kept, not raised here (it may run on the sender thread)
    batcher.raise_pending([RUN_B])  # another run's call does not see it
    with pytest.raises(MlgridException) as err:
        batcher.raise_pending([RUN_A])
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert RUN_A in err.value.message and "deleted" in err.value.message
    batcher.raise_pending([RUN_A])  # raised once

    batcher.add(RUN_A, "loss", 2.0)
    batcher.flush()
    with pytest.raises(MlgridException, match="deleted"):
        batcher.add(RUN_A, "loss", 3.0)
    batcher.add(RUN_A, "loss", 4.0)  # the error was reported; logging goes on


def test_one_refused_run_does_not_lose_the_other_runs_points(make_batcher):
    client = RecordingClient(refused_runs={RUN_B})
    batcher = make_batcher(client)
    batcher.add(RUN_A, "loss", 1.0, 0, 0)
    batcher.add(RUN_B, "loss", 2.0, 0, 0)
    batcher.flush()
    assert [{b.run_id for b in stream} for stream in client.streams] == [{RUN_A, RUN_B}, {RUN_A}, {RUN_B}]
    assert client.stored_points(RUN_A, "loss") == [(0, 0, 1.0)]
    batcher.raise_pending([RUN_A])
    with pytest.raises(MlgridException):
        batcher.raise_pending([RUN_B])


def test_unavailable_after_retries_is_kept_for_every_run(make_batcher):
    client = RecordingClient(refused_runs={RUN_A}, error_code=grpc.StatusCode.UNAVAILABLE)
    batcher = make_batcher(client)
    batcher.add(RUN_A, "loss", 1.0)
    batcher.add(RUN_B, "loss", 1.0)
    batcher.flush()
    assert len(client.streams) == 1  # no per-run resend: the server is away, not refusing a run
    assert {run_id: e.code for run_id, e in batcher.pop_errors().items()} == {
        RUN_A: grpc.StatusCode.UNAVAILABLE, RUN_B: grpc.StatusCode.UNAVAILABLE
    }


def test_unexpected_send_failure_is_kept_too(make_batcher):
    class BrokenClient:
        def ingest(self, batches, timeout=None):
            raise ValueError("Cannot invoke RPC on closed channel!")

    batcher = make_batcher(BrokenClient())
    batcher.add(RUN_A, "loss", 1.0)
    batcher.flush()
    with pytest.raises(MlgridException, match="closed channel") as err:
        batcher.raise_pending([RUN_A])
    assert err.value.code == grpc.StatusCode.UNKNOWN


def test_step_outside_int64_is_reported_for_its_run_only(make_batcher):
    client = RecordingClient()
    batcher = make_batcher(client)
    batcher.add(RUN_A, "loss", 1.0, step=2**63)
    batcher.add(RUN_B, "loss", 1.0, step=1)
    batcher.flush()
    assert len(client.stored_points(RUN_B, "loss")) == 1
    with pytest.raises(MlgridException) as err:
        batcher.raise_pending([RUN_A])
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_close_sends_what_is_left(make_batcher):
    client = RecordingClient()
    batcher = make_batcher(client)
    batcher.add(RUN_A, "loss", 1.0)
    batcher.close()
    assert len(client.stored_points(RUN_A, "loss")) == 1


# the retry/dedupe protocol, over a real gRPC server

class DedupingIngestServicer(tracking_pb2_grpc.TrackingServiceServicer):
    """IngestMetrics as the server does it: each batch stored at most once per batch_id.

    `unavailable_after` makes the first stream fail with UNAVAILABLE after
    storing that many batches, like a connection dropped mid-stream.
    """

    def __init__(self, unavailable_after=None, deleted_runs=()):
        self.unavailable_after = unavailable_after
        self.deleted_runs = set(deleted_runs)
        self.streams: list[list[str]] = []  # batch ids received, per IngestMetrics call
        self.stored: dict[str, pb.IngestBatch] = {}
        self.lock = threading.Lock()

    def IngestMetrics(self, request_iterator, context):
        received = []
        with self.lock:
            self.streams.append(received)
        summary = pb.IngestSummary()
        for batch in request_iterator:
            received.append(batch.batch_id)
            if batch.run_id in self.deleted_runs:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"run {batch.run_id} is deleted")
            with self.lock:
                summary.batches += 1
                if batch.batch_id in self.stored:
                    summary.duplicate_batches += 1
                else:
                    self.stored[batch.batch_id] = batch
                    summary.metrics += sum(len(s.steps) for s in batch.metrics)
            if len(self.streams) == 1 and len(received) == self.unavailable_after:
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection dropped")
        return summary

    def points(self, run_id, key):
        return sorted(point
                      for batch in self.stored.values() if batch.run_id == run_id
                      for series in batch.metrics if series.key == key
                      for point in zip(series.steps, series.timestamps, series.values))


@pytest.fixture
def serve():
    servers = []

    def start(servicer) -> MlgridClient:
        server = grpc.server(futures.ThreadPoolExecutor(4))
        tracking_pb2_grpc.add_TrackingServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return MlgridClient(f"grpc://127.0.0.1:{port}")

    yield start
    for server in servers:
        server.stop(None)


def test_retry_after_unavailable_resends_the_same_batches_and_stores_each_once(serve, make_batcher, monkeypatch):
    monkeypatch.setattr(retry, "FIRST_DELAY", 0.01)
    monkeypatch.setenv(retry.RETRY_SECONDS_ENV, "0.31")  # 0.01, 0.02, 0.04, 0.08, 0.16
    servicer = DedupingIngestServicer(unavailable_after=2)
    batcher = make_batcher(serve(servicer), max_points_per_message=100)
    expected = {run_id: [(step, 1000 + step, step / 10) for step in range(500)] for run_id in (RUN_A, RUN_B)}
    for run_id, points in expected.items():
        for step, timestamp, value in points:
            batcher.add(run_id, "loss", value, step, timestamp)
    batcher.flush()

    first, second = servicer.streams
    assert len(first) == 2 and len(second) == 10  # 2 runs x 500 points / 100 per message
    assert second[:2] == first and len(set(second)) == 10  # the retry resent the same ids, then the rest
    for run_id, points in expected.items():
        assert servicer.points(run_id, "loss") == points  # nothing lost, nothing twice
    assert batcher.pop_errors() == {}


def test_server_refusal_surfaces_and_other_runs_are_stored(serve, make_batcher):
    servicer = DedupingIngestServicer(deleted_runs={RUN_B})
    batcher = make_batcher(serve(servicer))
    batcher.add(RUN_A, "loss", 1.0, 0, 0)
    batcher.add(RUN_B, "loss", 2.0, 0, 0)
    batcher.flush()
    assert servicer.points(RUN_A, "loss") == [(0, 0, 1.0)]
    with pytest.raises(MlgridException) as err:
        batcher.raise_pending([RUN_A, RUN_B])
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION and f"run {RUN_B} is deleted" in err.value.message
