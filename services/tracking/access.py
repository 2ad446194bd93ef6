"""Who may call each TrackingService method (MLflow's basic-auth model): reading an experiment, its runs
and their data needs READ on the experiment; logging to them EDIT; deleting and restoring MANAGE (a run,
a logged model follow their experiment). Searches are narrowed to what the caller may read."""
from services.common.errors import NotFound
from services.identity.access import Rule, creating, needs, signed_in
from services.identity.model import EXPERIMENT, EXPERIMENT_NAME, LOGGED_MODEL, RUN, Permission

READ, EDIT, MANAGE = Permission.READ, Permission.EDIT, Permission.MANAGE

RULES: dict[str, Rule] = {
    "CreateExperiment": creating(EXPERIMENT, "experiment_id", "any signed-in user may create an experiment"),
    "GetExperiment": needs(READ, EXPERIMENT, "experiment_id"),
    "GetExperimentByName": needs(READ, EXPERIMENT_NAME, "experiment_name"),
    "SearchExperiments": signed_in("answers only the experiments the caller may read"),
    "UpdateExperiment": needs(EDIT, EXPERIMENT, "experiment_id"),
    "DeleteExperiment": needs(MANAGE, EXPERIMENT, "experiment_id"),
    "RestoreExperiment": needs(MANAGE, EXPERIMENT, "experiment_id"),
    "SetExperimentTag": needs(EDIT, EXPERIMENT, "experiment_id"),
    "DeleteExperimentTag": needs(EDIT, EXPERIMENT, "experiment_id"),
    "CreateRun": needs(EDIT, EXPERIMENT, "experiment_id"),
    "GetRun": needs(READ, RUN, "run_id"),
    "UpdateRun": needs(EDIT, RUN, "run_id"),
    "DeleteRun": needs(MANAGE, RUN, "run_id"),
    "RestoreRun": needs(MANAGE, RUN, "run_id"),
    # Named experiments need READ; none named means every experiment, narrowed to the readable ones.
    "SearchRuns": needs(READ, EXPERIMENT, "experiment_ids"),
    "SearchRunsStream": needs(READ, EXPERIMENT, "experiment_ids"),
    "LogParam": needs(EDIT, RUN, "run_id"),
    "LogMetric": needs(EDIT, RUN, "run_id"),
    "SetTag": needs(EDIT, RUN, "run_id"),
    "DeleteTag": needs(EDIT, RUN, "run_id"),
    "LogBatch": needs(EDIT, RUN, "run_id"),
    "LogInputs": needs(EDIT, RUN, "run_id"),
    "LogOutputs": needs(EDIT, RUN, "run_id"),
    "GetMetricHistory": needs(READ, RUN, "run_id"),
    "GetMetricHistoryBulk": needs(READ, RUN, "run_ids"),
    "GetMetricHistoryBulkInterval": needs(READ, RUN, "run_ids"),
    "IngestMetrics": needs(EDIT, RUN, "run_id"),  # every batch of the stream names its run
    "CreateLoggedModel": needs(EDIT, EXPERIMENT, "experiment_id"),
    "GetLoggedModel": needs(READ, LOGGED_MODEL, "model_id"),
    "FinalizeLoggedModel": needs(EDIT, LOGGED_MODEL, "model_id"),
    "DeleteLoggedModel": needs(MANAGE, LOGGED_MODEL, "model_id"),
    "SearchLoggedModels": needs(READ, EXPERIMENT, "experiment_ids"),
    "SetLoggedModelTags": needs(EDIT, LOGGED_MODEL, "model_id"),
    "DeleteLoggedModelTag": needs(EDIT, LOGGED_MODEL, "model_id"),
    "LogLoggedModelParams": needs(EDIT, LOGGED_MODEL, "model_id"),
}


def resolvers(store) -> dict:
    """How the authority finds the experiment a request names by name."""

    async def experiment_named(name: str) -> tuple[str, str] | None:
        try:
            return EXPERIMENT, (await store.get_experiment_by_name(name)).experiment_id
        except NotFound:
            return None

    return {EXPERIMENT_NAME: experiment_named}
