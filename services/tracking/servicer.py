"""TrackingService over gRPC: a thin adapter from wire messages to the store."""
from prometheus_client import Counter

from mlgrid.v1 import tracking_pb2 as pb
from mlgrid.v1 import tracking_pb2_grpc
from services.common.errors import InvalidArgument, MlgridError
from services.db import validation
from services.db.clock import now_ms
from services.identity.model import EXPERIMENT
from services.identity.visibility import OPEN, Visibility
from services.tracking.store.base import ACTIVE, DELETED
from services.tracking.store.sql import SqlTrackingStore

METRIC_POINTS = Counter("mlgrid_tracking_metric_points_total", "Metric points stored")
PARAMS_LOGGED = Counter("mlgrid_tracking_params_total", "Params logged (including repeats of the same value)")
TAGS_SET = Counter("mlgrid_tracking_tags_total", "Run tags set")

DEFAULT_HISTORY_PAGE = 100_000
MAX_HISTORY_PAGE = 1_000_000
EMPTY = pb.Empty()


def _page_size(requested: int) -> int:
    if requested < 0 or requested > MAX_HISTORY_PAGE:
        raise InvalidArgument(f"page_size must be between 1 and {MAX_HISTORY_PAGE}, got {requested}")
    return requested or DEFAULT_HISTORY_PAGE


def _series_pages(run_id: str, key: str, history, page_size: int):
    steps, timestamps, values = history
    if len(steps) == 0:
        yield pb.MetricSeries(run_id=run_id, key=key)
        return
    for start in range(0, len(steps), page_size):
        end = start + page_size
        page = pb.MetricSeries(run_id=run_id, key=key)
        page.steps.extend(steps[start:end].tolist())
        page.timestamps.extend(timestamps[start:end].tolist())
        page.values.extend(values[start:end].tolist())
        yield page


class TrackingServicer(tracking_pb2_grpc.TrackingServiceServicer):
    def __init__(self, store: SqlTrackingStore, visibility: Visibility = OPEN):
        self.visibility = visibility
        self.store = store

    # experiments
    async def CreateExperiment(self, request, context):
        experiment_id = await self.store.create_experiment(request.name, request.artifact_location, dict(request.tags))
        return pb.CreateExperimentResponse(experiment_id=experiment_id)

    def _unnamed_experiments(self, experiment_ids):
        """A search over the experiments it names was let through only if the caller may read each (the
        access rule); one naming none covers every experiment, narrowed to the readable ones."""
        return None if experiment_ids else self.visibility.clause(EXPERIMENT)

    async def GetExperiment(self, request, context):
        return pb.GetExperimentResponse(experiment=await self.store.get_experiment(request.experiment_id))

    async def GetExperimentByName(self, request, context):
        return pb.GetExperimentResponse(experiment=await self.store.get_experiment_by_name(request.experiment_name))

    async def SearchExperiments(self, request, context):
        found, token = await self.store.search_experiments(
            request.filter, request.view_type, request.order_by, request.max_results, request.page_token,
            self.visibility.clause(EXPERIMENT),
        )
        return pb.SearchExperimentsResponse(experiments=found, next_page_token=token)

    async def UpdateExperiment(self, request, context):
        await self.store.rename_experiment(request.experiment_id, request.new_name)
        return EMPTY

    async def DeleteExperiment(self, request, context):
        await self.store.set_experiment_lifecycle(request.experiment_id, DELETED)
        return EMPTY

    async def RestoreExperiment(self, request, context):
        await self.store.set_experiment_lifecycle(request.experiment_id, ACTIVE)
        return EMPTY

    async def SetExperimentTag(self, request, context):
        await self.store.set_experiment_tag(request.experiment_id, request.key, request.value)
        return EMPTY

    async def DeleteExperimentTag(self, request, context):
        await self.store.delete_experiment_tag(request.experiment_id, request.key)
        return EMPTY

    # runs
    async def CreateRun(self, request, context):
        start_time = request.start_time if request.HasField("start_time") else None
        run = await self.store.create_run(request.experiment_id, request.user_id, start_time, request.tags, request.run_name)
        return pb.RunResponse(run=run)

    async def GetRun(self, request, context):
        return pb.RunResponse(run=await self.store.get_run(request.run_id))

    async def UpdateRun(self, request, context):
        end_time = request.end_time if request.HasField("end_time") else None
        info = await self.store.update_run(request.run_id, request.status, end_time, request.run_name)
        return pb.UpdateRunResponse(run_info=info)

    async def DeleteRun(self, request, context):
        await self.store.set_run_lifecycle(request.run_id, DELETED)
        return EMPTY

    async def RestoreRun(self, request, context):
        await self.store.set_run_lifecycle(request.run_id, ACTIVE)
        return EMPTY

    async def SearchRuns(self, request, context):
        return await self.store.search_runs(
            request.experiment_ids,
            request.filter,
            request.run_view_type,
            request.order_by,
            request.max_results,
            request.page_token,
            self._unnamed_experiments(request.experiment_ids),
        )

    async def SearchRunsStream(self, request, context):
        async for page in self.store.search_runs_pages(
            request.experiment_ids,
            request.filter,
            request.run_view_type,
            request.order_by,
            request.max_results,
            request.page_token,
            self._unnamed_experiments(request.experiment_ids),
        ):
            yield page

    # params, metrics, tags
    async def LogParam(self, request, context):
        await self.store.log_param(request.run_id, request.key, request.value)
        PARAMS_LOGGED.inc()
        return EMPTY

    async def LogMetric(self, request, context):
        timestamp = request.timestamp if request.HasField("timestamp") else now_ms()
        model = None
        if request.model_id:
            model = pb.Metric(
                key=request.key, value=request.value, timestamp=timestamp, step=request.step, model_id=request.model_id,
                dataset_name=request.dataset_name, dataset_digest=request.dataset_digest,
            )
        await self.store.log_metric(request.run_id, request.key, request.value, timestamp, request.step, model)
        METRIC_POINTS.inc()
        return EMPTY

    async def SetTag(self, request, context):
        await self.store.set_tag(request.run_id, request.key, request.value)
        TAGS_SET.inc()
        return EMPTY

    async def DeleteTag(self, request, context):
        await self.store.delete_tag(request.run_id, request.key)
        return EMPTY

    async def LogBatch(self, request, context):
        stored = await self.store.log_batch(
            request.run_id, request.metrics, request.params, request.tags, request.request_id
        )
        if stored:
            METRIC_POINTS.inc(len(request.metrics))
            PARAMS_LOGGED.inc(len(request.params))
            TAGS_SET.inc(len(request.tags))
        return EMPTY

    async def LogInputs(self, request, context):
        if request.datasets or not request.models:
            await self.store.log_inputs(request.run_id, request.datasets)
        if request.models:
            await self.store.logged_models.link_run(request.run_id, (), request.models)
        return EMPTY

    async def LogOutputs(self, request, context):
        await self.store.logged_models.link_run(request.run_id, request.models, ())
        return EMPTY

    async def GetMetricHistory(self, request, context):
        page_size = _page_size(request.page_size)
        history = await self.store.metric_history(request.run_id, request.metric_key)
        for page in _series_pages(request.run_id, request.metric_key, history, page_size):
            yield page

    async def GetMetricHistoryBulk(self, request, context):
        page_size = _page_size(request.page_size)
        validation.bulk_run_ids(request.run_ids)
        for run_id in request.run_ids:
            history = await self.store.metric_history(run_id, request.metric_key)
            for page in _series_pages(run_id, request.metric_key, history, page_size):
                yield page

    async def GetMetricHistoryBulkInterval(self, request, context):
        sampled = await self.store.sampled_metric_history(
            request.run_ids,
            request.metric_key,
            request.start_step if request.HasField("start_step") else None,
            request.end_step if request.HasField("end_step") else None,
            request.max_results,
        )
        response = pb.GetMetricHistoryBulkIntervalResponse()
        add = response.metrics.add
        for run_id, steps, timestamps, values in sampled:
            for step, timestamp, value in zip(steps.tolist(), timestamps.tolist(), values.tolist()):
                add(run_id=run_id, key=request.metric_key, step=step, timestamp=timestamp, value=value)
        return response

    async def IngestMetrics(self, request_iterator, context):
        summary = pb.IngestSummary()
        async for batch in request_iterator:
            try:
                stored, points = await self.store.ingest(batch)
            except MlgridError as e:
                raise type(e)(
                    f"batch {batch.batch_id!r} (number {summary.batches + 1} of this stream) was refused, "
                    f"the {summary.batches} before it are stored: {e.message}"
                ) from None
            summary.batches += 1
            if stored:
                summary.metrics += points
                summary.params += len(batch.params)
                summary.tags += len(batch.tags)
                METRIC_POINTS.inc(points)
            else:
                summary.duplicate_batches += 1
        return summary

    # logged models
    async def CreateLoggedModel(self, request, context):
        model = await self.store.logged_models.create(
            request.experiment_id, request.name, request.model_type, request.source_run_id, request.params, request.tags
        )
        return pb.LoggedModelResponse(model=model)

    async def GetLoggedModel(self, request, context):
        return pb.LoggedModelResponse(model=await self.store.logged_models.get(request.model_id, request.allow_deleted))

    async def FinalizeLoggedModel(self, request, context):
        return pb.LoggedModelResponse(model=await self.store.logged_models.finalize(request.model_id, request.status))

    async def DeleteLoggedModel(self, request, context):
        await self.store.logged_models.delete(request.model_id)
        return EMPTY

    async def SearchLoggedModels(self, request, context):
        found, token = await self.store.logged_models.search(
            request.experiment_ids, request.filter, request.datasets, request.max_results, request.order_by, request.page_token,
            self._unnamed_experiments(request.experiment_ids),
        )
        return pb.SearchLoggedModelsResponse(models=found, next_page_token=token)

    async def SetLoggedModelTags(self, request, context):
        await self.store.logged_models.set_tags(request.model_id, request.tags)
        return EMPTY

    async def DeleteLoggedModelTag(self, request, context):
        await self.store.logged_models.delete_tag(request.model_id, request.tag_key)
        return EMPTY

    async def LogLoggedModelParams(self, request, context):
        await self.store.logged_models.log_params(request.model_id, request.params)
        return EMPTY
