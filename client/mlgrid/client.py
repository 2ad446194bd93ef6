"""MlgridClient: one method per TrackingService and ModelRegistryService RPC, with mlflow.MlflowClient's names and signatures."""
from __future__ import annotations

import functools
import getpass
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import grpc

from mlgrid._artifact_transfer import ArtifactClient, ArtifactRoot
from mlgrid._credentials import Credentials, open_channel
from mlgrid._retry import retry_delays
from mlgrid.entities import (
    DatasetInput,
    Experiment,
    FileInfo,
    LoggedModel,
    Metric,
    MetricHistory,
    PagedList,
    Param,
    Run,
    RunStatus,
    RunTag,
    ViewType,
)
from mlgrid.exceptions import MlgridException
from mlgrid.identity import IdentityClient
from mlgrid.registry import RegistryMethods
from mlgrid.v1 import registry_pb2_grpc, tracking_pb2_grpc
from mlgrid.v1 import tracking_pb2 as pb

TRACKING_URI_ENV = "MLGRID_TRACKING_URI"
DEFAULT_TRACKING_URI = "grpc://127.0.0.1:50051"
DEFAULT_PORT = 50051
TLS_PORT = 443
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Ping a connection idle during a call, to notice a dead peer; no more often
    # than gRPC servers accept by default (5 minutes), or they close the connection.
    ("grpc.keepalive_time_ms", 360_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    # Reconnect to a restarted server within two seconds (gRPC's default backoff grows to two minutes).
    ("grpc.max_reconnect_backoff_ms", 2000),
]
UNARY_TIMEOUT_S = 120
# LogBatch limits of the server (MLflow's); log_batch splits larger batches.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_RUNS_PER_BULK_HISTORY = 100

T = TypeVar("T")


def uses_tls(tracking_uri: str) -> bool:
    return tracking_uri.startswith("grpcs://")


def grpc_target(tracking_uri: str) -> str:
    """`grpc://host:port`, `grpcs://host:port` (TLS) or `host:port` (IPv6: `[addr]:port`) -> `host:port`; the
    port defaults to 50051 (443 for grpcs)."""
    address = tracking_uri.removeprefix("grpcs://" if uses_tls(tracking_uri) else "grpc://").rstrip("/")
    host, colon, port = address.rpartition(":")
    if not address or "/" in address or (colon and not (host and port.isdigit())):
        raise MlgridException(
            f"unsupported tracking URI {tracking_uri!r}: expected grpc://host:port, grpcs://host:port or host:port",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    return address if colon else f"{address}:{TLS_PORT if uses_tls(tracking_uri) else DEFAULT_PORT}"


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # e.g. a container user without a passwd entry
        return "unknown"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class _ReplayableStream:
    """A one-shot request stream that keeps what it yielded, so a retry can send it again from the start."""

    _END = object()

    def __init__(self, source: Iterable):
        self._source = iter(source)
        self._sent: list = []
        self._lock = threading.Lock()  # a failed attempt's sender thread may still be pulling

    def replay(self) -> Iterator:
        index = 0
        while True:
            with self._lock:
                if index == len(self._sent):
                    item = next(self._source, self._END)
                    if item is self._END:
                        return
                    self._sent.append(item)
                item = self._sent[index]
            index += 1
            yield item


class MlgridClient(RegistryMethods):
    """A client of the tracking service and model registry (RegistryMethods) at `tracking_uri` (default: $MLGRID_TRACKING_URI, else grpc://127.0.0.1:50051).

    Every call carries the credentials given as `token` (an access token or OIDC JWT), or `username` and
    `password`; by default those of $MLGRID_TRACKING_TOKEN, else $MLGRID_TRACKING_USERNAME and
    $MLGRID_TRACKING_PASSWORD, else the MLFLOW_TRACKING_* ones (mlgrid._credentials).

    `identity` (mlgrid.identity.IdentityClient) manages users, grants, roles and access tokens.

    Every method raises MlgridException when the call fails. Idempotent calls
    are retried with backoff while the server is UNAVAILABLE.
    """

    def __init__(self, tracking_uri: str | None = None, *, token: str | None = None, username: str | None = None,
                 password: str | None = None):
        self.tracking_uri = tracking_uri or os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI
        self._credentials = Credentials.resolve(token, username, password)
        self._channel = open_channel(
            grpc_target(self.tracking_uri), uses_tls(self.tracking_uri), self._credentials, CHANNEL_OPTIONS,
        )
        self._stub = tracking_pb2_grpc.TrackingServiceStub(self._channel)
        # Artifact transfers, on the same channel: the server (or gateway) serves both services.
        self.artifacts = ArtifactClient(self._channel, self._call)
        self._registry = registry_pb2_grpc.ModelRegistryServiceStub(self._channel)
        # Users, grants, roles and access tokens (IdentityService), with the same credentials.
        self.identity = IdentityClient(self._channel, self._unary)

    def __repr__(self) -> str:
        return f"MlgridClient({self.tracking_uri!r}, credentials={self._credentials!r})"

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> MlgridClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _call(self, attempt: Callable[[], T], idempotent: bool) -> T:
        """Run one call; retry an idempotent one while the server is UNAVAILABLE."""
        delays = retry_delays() if idempotent else ()
        for retry_delay in (*delays, None):
            try:
                return attempt()
            except grpc.RpcError as rpc_error:
                error = MlgridException.from_rpc_error(rpc_error)
                if retry_delay is None or error.code != grpc.StatusCode.UNAVAILABLE:
                    raise error from None
            time.sleep(retry_delay * random.uniform(1.0, 1.5))  # jitter spreads out clients reconnecting together

    def _unary(self, method, request, idempotent: bool):
        return self._call(lambda: method(request, timeout=UNARY_TIMEOUT_S), idempotent)

    # experiments

    def create_experiment(self, name: str, artifact_location: str | None = None, tags: dict | None = None) -> str:
        request = pb.CreateExperimentRequest(
            name=name, artifact_location=artifact_location or "", tags={k: str(v) for k, v in (tags or {}).items()}
        )
        return self._unary(self._stub.CreateExperiment, request, idempotent=False).experiment_id

    def get_experiment(self, experiment_id: str) -> Experiment:
        request = pb.GetExperimentRequest(experiment_id=str(experiment_id))
        return Experiment.from_proto(self._unary(self._stub.GetExperiment, request, idempotent=True).experiment)

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        """The experiment called `name`, or None when there is none."""
        request = pb.GetExperimentByNameRequest(experiment_name=name)
        try:
            response = self._unary(self._stub.GetExperimentByName, request, idempotent=True)
        except MlgridException as error:
            if error.code == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return Experiment.from_proto(response.experiment)

    def get_or_create_experiment(self, name: str) -> Experiment:
        """The experiment called `name`, created when there is none (also when another process races to it)."""
        experiment = self.get_experiment_by_name(name)
        if experiment is not None:
            return experiment
        try:
            return self.get_experiment(self.create_experiment(name))
        except MlgridException as error:
            if error.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
            return self.get_experiment_by_name(name)

    def search_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        request = pb.SearchExperimentsRequest(
            view_type=int(view_type), max_results=max_results or 0, filter=filter_string or "",
            order_by=order_by or [], page_token=page_token or "",
        )
        response = self._unary(self._stub.SearchExperiments, request, idempotent=True)
        return PagedList([Experiment.from_proto(e) for e in response.experiments], response.next_page_token or None)

    def iter_experiments(
        self,
        view_type: int = ViewType.ACTIVE_ONLY,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[Experiment]:
        """Every matching experiment, page by page; the next page is fetched while you consume this one."""
        return self._iter_pages(lambda token: self.search_experiments(view_type, page_size, filter_string, order_by, token))

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        request = pb.UpdateExperimentRequest(experiment_id=str(experiment_id), new_name=new_name)
        self._unary(self._stub.UpdateExperiment, request, idempotent=False)

    def delete_experiment(self, experiment_id: str) -> None:
        request = pb.DeleteExperimentRequest(experiment_id=str(experiment_id))
        self._unary(self._stub.DeleteExperiment, request, idempotent=True)

    def restore_experiment(self, experiment_id: str) -> None:
        request = pb.RestoreExperimentRequest(experiment_id=str(experiment_id))
        self._unary(self._stub.RestoreExperiment, request, idempotent=True)

    def set_experiment_tag(self, experiment_id: str, key: str, value) -> None:
        request = pb.SetExperimentTagRequest(experiment_id=str(experiment_id), key=key, value=str(value))
        self._unary(self._stub.SetExperimentTag, request, idempotent=True)

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        request = pb.DeleteExperimentTagRequest(experiment_id=str(experiment_id), key=key)
        self._unary(self._stub.DeleteExperimentTag, request, idempotent=True)

    # runs

    def create_run(
        self, experiment_id: str, start_time: int | None = None, tags: dict | None = None, run_name: str | None = None
    ) -> Run:
        tags = {k: str(v) for k, v in (tags or {}).items()}
        request = pb.CreateRunRequest(
            experiment_id=str(experiment_id),
            user_id=tags.get("mlflow.user") or current_user(),
            start_time=_now_ms() if start_time is None else start_time,
            tags=[pb.RunTag(key=k, value=v) for k, v in tags.items()],
            run_name=run_name or "",
        )
        return Run.from_proto(self._unary(self._stub.CreateRun, request, idempotent=False).run)

    def get_run(self, run_id: str) -> Run:
        return Run.from_proto(self._unary(self._stub.GetRun, pb.GetRunRequest(run_id=run_id), idempotent=True).run)

    def update_run(self, run_id: str, status: str | None = None, name: str | None = None) -> None:
        request = pb.UpdateRunRequest(
            run_id=run_id, status=RunStatus.from_string(status) if status else 0, run_name=name or ""
        )
        self._unary(self._stub.UpdateRun, request, idempotent=True)

    def set_terminated(self, run_id: str, status: str = "FINISHED", end_time: int | None = None) -> None:
        request = pb.UpdateRunRequest(
            run_id=run_id, status=RunStatus.from_string(status), end_time=_now_ms() if end_time is None else end_time
        )
        self._unary(self._stub.UpdateRun, request, idempotent=True)

    def delete_run(self, run_id: str) -> None:
        self._unary(self._stub.DeleteRun, pb.DeleteRunRequest(run_id=run_id), idempotent=True)

    def restore_run(self, run_id: str) -> None:
        self._unary(self._stub.RestoreRun, pb.RestoreRunRequest(run_id=run_id), idempotent=True)

    def search_runs(
        self,
        experiment_ids: str | list[str],
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        request = pb.SearchRunsRequest(
            experiment_ids=[str(e) for e in experiment_ids], filter=filter_string or "",
            run_view_type=int(run_view_type), max_results=max_results, order_by=order_by or [],
            page_token=page_token or "",
        )
        response = self._unary(self._stub.SearchRuns, request, idempotent=True)
        return PagedList([Run.from_proto(r) for r in response.runs], response.next_page_token or None)

    def iter_runs(
        self,
        experiment_ids: str | list[str],
        filter_string: str = "",
        run_view_type: int = ViewType.ACTIVE_ONLY,
        order_by: list[str] | None = None,
        page_size: int = 1000,
    ) -> Iterator[Run]:
        """Every matching run, streamed page by page: the server reads the next page while this one
        travels and you consume it. A dropped connection resumes after the last page received."""
        if isinstance(experiment_ids, str):
            experiment_ids = [experiment_ids]
        token, delays = "", iter(retry_delays())
        while True:
            request = pb.SearchRunsRequest(
                experiment_ids=[str(e) for e in experiment_ids], filter=filter_string or "",
                run_view_type=int(run_view_type), max_results=page_size, order_by=order_by or [], page_token=token,
            )
            try:
                for page in self._stub.SearchRunsStream(request):
                    for run in page.runs:
                        yield Run.from_proto(run)
                    token = page.next_page_token
                    if not token:
                        return
                return
            except grpc.RpcError as rpc_error:
                error = MlgridException.from_rpc_error(rpc_error)
                delay = next(delays, None)
                if delay is None or error.code != grpc.StatusCode.UNAVAILABLE:
                    raise error from None
                time.sleep(delay * random.uniform(1.0, 1.5))

    @staticmethod
    def _iter_pages(fetch: Callable[[str | None], PagedList]) -> Iterator:
        prefetcher = ThreadPoolExecutor(1, thread_name_prefix="mlgrid-prefetch")
        try:
            page = fetch(None)
            while True:
                next_page = prefetcher.submit(fetch, page.token) if page.token else None
                yield from page
                if next_page is None:
                    return
                page = next_page.result()
        finally:
            prefetcher.shutdown(wait=False, cancel_futures=True)

    # params, metrics, tags, inputs

    def log_param(self, run_id: str, key: str, value):
        """Log a param (str() of `value`); logging a different value again is INVALID_ARGUMENT."""
        request = pb.LogParamRequest(run_id=run_id, key=key, value=str(value))
        self._unary(self._stub.LogParam, request, idempotent=True)
        return value

    def log_metric(self, run_id: str, key: str, value: float, timestamp: int | None = None, step: int | None = None) -> None:
        request = pb.LogMetricRequest(
            run_id=run_id, key=key, value=float(value),
            timestamp=_now_ms() if timestamp is None else timestamp, step=step or 0,
        )
        self._unary(self._stub.LogMetric, request, idempotent=False)

    def log_batch(
        self, run_id: str, metrics: Sequence[Metric] = (), params: Sequence[Param] = (), tags: Sequence[RunTag] = ()
    ) -> None:
        """Log entities in LogBatch calls of at most 1000 metrics, 100 params and 100 tags each.

        Each call is atomic and carries a fresh request id, so a retry never stores it twice.
        """
        metric_chunks = _chunks(list(metrics), MAX_METRICS_PER_BATCH)
        param_chunks = _chunks(list(params), MAX_PARAMS_PER_BATCH)
        tag_chunks = _chunks(list(tags), MAX_TAGS_PER_BATCH)
        for i in range(max(len(metric_chunks), len(param_chunks), len(tag_chunks), 1)):
            request = pb.LogBatchRequest(
                run_id=run_id,
                metrics=[m.to_proto() for m in metric_chunks[i]] if i < len(metric_chunks) else [],
                params=[p.to_proto() for p in param_chunks[i]] if i < len(param_chunks) else [],
                tags=[t.to_proto() for t in tag_chunks[i]] if i < len(tag_chunks) else [],
                request_id=uuid.uuid4().hex,
            )
            self._unary(self._stub.LogBatch, request, idempotent=True)

    def set_tag(self, run_id: str, key: str, value) -> None:
        request = pb.SetTagRequest(run_id=run_id, key=key, value=str(value))
        self._unary(self._stub.SetTag, request, idempotent=True)

    def delete_tag(self, run_id: str, key: str) -> None:
        self._unary(self._stub.DeleteTag, pb.DeleteTagRequest(run_id=run_id, key=key), idempotent=True)

    def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput] | None = None) -> None:
        request = pb.LogInputsRequest(run_id=run_id, datasets=[d.to_proto() for d in datasets or ()])
        self._unary(self._stub.LogInputs, request, idempotent=False)

    def get_logged_model(self, model_id: str) -> LoggedModel:
        """An MLflow 3 logged model (models:/<model_id>), as mlflow.MlflowClient.get_logged_model."""
        request = pb.GetLoggedModelRequest(model_id=model_id)
        return LoggedModel.from_proto(self._unary(self._stub.GetLoggedModel, request, idempotent=True).model)

    # metric history and high-rate ingest

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        history = self.get_metric_history_columns(run_id, key)
        return [Metric(key, v, t, s) for s, t, v in zip(history.steps, history.timestamps, history.values)]

    def get_metric_history_columns(self, run_id: str, key: str) -> MetricHistory:
        """The whole history of a metric as columns: the fast way to read many points."""
        request = pb.GetMetricHistoryRequest(run_id=run_id, metric_key=key)

        def read() -> MetricHistory:
            history = MetricHistory()
            for page in self._stub.GetMetricHistory(request):
                history.extend(page)
            return history

        return self._call(read, idempotent=True)

    def get_metric_history_bulk(self, run_ids: Sequence[str], key: str) -> dict[str, MetricHistory]:
        """The history of metric `key` of each run, as columns; a run without it maps to an empty history."""
        histories: dict[str, MetricHistory] = {}
        for chunk in _chunks(list(run_ids), MAX_RUNS_PER_BULK_HISTORY):
            histories.update(self._call(functools.partial(self._read_bulk_history, chunk, key), idempotent=True))
        return histories

    def _read_bulk_history(self, run_ids: Sequence[str], key: str) -> dict[str, MetricHistory]:
        histories = {run_id: MetricHistory() for run_id in run_ids}
        for page in self._stub.GetMetricHistoryBulk(pb.GetMetricHistoryBulkRequest(run_ids=run_ids, metric_key=key)):
            histories[page.run_id].extend(page)
        return histories

    def ingest(self, batches: Iterable[pb.IngestBatch], timeout: float | None = None) -> pb.IngestSummary:
        """Send IngestBatch messages over one IngestMetrics stream.

        Retried while the server is UNAVAILABLE: the batches already sent go
        again with their batch ids, which the server stores at most once (so
        they are kept in memory until the call ends).
        """
        stream = _ReplayableStream(batches)
        return self._call(lambda: self._stub.IngestMetrics(stream.replay(), timeout=timeout), idempotent=True)

    # artifacts (the transfers are in mlgrid._artifact_transfer)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        """Store the local file under the run's artifacts, in folder `artifact_path` (default: the root)."""
        path = "/".join(p for p in (artifact_path, os.path.basename(local_path)) if p)
        self.artifacts.upload_file(ArtifactRoot(run_id=run_id), local_path, path)

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        """Store every file under the local folder in the run's folder `artifact_path`, several at a time."""
        self.artifacts.upload_dir(ArtifactRoot(run_id=run_id), local_dir, artifact_path or "")

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        """FileInfo of each file and folder directly in the run's folder `path` (default: the root)."""
        return self.artifacts.list(ArtifactRoot(run_id=run_id), path or "")

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        """Copy the run's file or folder `path` under dst_path (default: a new temporary folder); returns its local path."""
        return self.artifacts.download(ArtifactRoot(run_id=run_id), (path or "").strip("/"), dst_path)
