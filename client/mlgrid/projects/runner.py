"""mlgrid.projects.run: fetch a project, check the call, create (or resume) its tracking run, start its command."""
from __future__ import annotations

import logging
import os

import grpc

from mlgrid.client import TRACKING_URI_ENV, MlgridClient, current_user, grpc_target
from mlgrid.entities import Param, RunInfo, RunTag
from mlgrid.fluent import DEFAULT_EXPERIMENT_ID, EXPERIMENT_ID_ENV, EXPERIMENT_NAME_ENV
from mlgrid.projects import kubernetes
from mlgrid.projects.environments import select_environment
from mlgrid.projects.source import ProjectSource, fetch_project
from mlgrid.projects.spec import DEFAULT_ENTRY_POINT, ExecutionException, load_project
from mlgrid.projects.submitted import LocalSubmittedRun, SubmittedRun

BACKENDS = ("local", "kubernetes")
GATEWAY_URL_ENV = "MLGRID_GATEWAY_URL"
GATEWAY_HTTP_PORT = 5000

_logger = logging.getLogger(__name__)


def run(
    uri: str,
    entry_point: str = DEFAULT_ENTRY_POINT,
    version: str | None = None,
    parameters: dict | None = None,
    docker_args: dict | None = None,
    experiment_name: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    run_id: str | None = None,
    env_manager: str | None = None,
    backend: str = "local",
    backend_config: str | None = None,
    synchronous: bool = True,
    tracking_uri: str | None = None,
) -> SubmittedRun:
    """Run the project at `uri` (a folder or a git URI, `#subdir` allowed) as mlflow.projects.run does.

    Everything that can be checked is checked before the run is created. Synchronous: waits for the end
    (Ctrl-C or SIGTERM stops the command and marks the run KILLED) and raises ExecutionException unless it
    FINISHED; otherwise returns the SubmittedRun at once.
    """
    if backend not in BACKENDS:
        raise ExecutionException(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if backend_config and backend != "kubernetes":
        raise ExecutionException("--backend-config goes with --backend kubernetes")
    if run_id and (experiment_name or experiment_id):
        raise ExecutionException("--run-id resumes a run in its own experiment: leave out --experiment-name/--experiment-id")
    if experiment_name and experiment_id:
        raise ExecutionException("give --experiment-name or --experiment-id, not both")
    kube_config = kubernetes.load_backend_config(backend_config) if backend == "kubernetes" else None
    source = fetch_project(uri, version)
    try:
        project = load_project(source.directory)
        entry = project.entry_point(entry_point)
        declared, extra = entry.resolve_parameters({str(k): str(v) for k, v in (parameters or {}).items()})
        command = entry.command_line(declared, extra)
        if kube_config is None:
            environment = select_environment(project, env_manager, docker_args)
            env_name, env_tags = environment.name, environment.tags
        elif project.docker_env is None or env_manager or docker_args:
            raise ExecutionException(
                "the kubernetes backend runs projects with a docker_env (and without --env-manager or --docker-args)"
            )
        else:
            env_name, env_tags = "docker", {"mlflow.docker.image.uri": project.docker_env.image}
        client = MlgridClient(tracking_uri)
        run_experiment_id = _experiment_id(client, experiment_name, experiment_id) if not run_id else None
        if kube_config is None:
            environment.prepare()
        else:
            image = kubernetes.build_and_push_image(project, kube_config.repository_uri, source.git_commit)
        tags = _project_tags(source, entry.name, backend, env_name, env_tags)
        run_info, resumed = _start_run(client, run_id, run_experiment_id, run_name, tags)
    except BaseException:
        source.cleanup()
        raise
    run_id = run_info.run_id
    try:
        params = {**declared, **extra}
        client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag(k, v) for k, v in tags.items()] if resumed else [])
        run_env = child_environment(client.tracking_uri, run_id, run_info.experiment_id)
        _logger.info("=== Running command %r in run with ID %r ===", command, run_id)
        if kube_config is None:
            argv, process_env = environment.argv(command, run_env)
            submitted = LocalSubmittedRun(run_id, client, argv, process_env, project.directory, source.cleanup)
        else:
            job = kubernetes.render_job(kube_config.job_template, project, image, command, run_env)
            submitted = kubernetes.submit_job(job, kube_config.kube_context, run_id, client)
            source.cleanup()
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        source.cleanup()
        raise
    if synchronous:
        _wait(submitted)
    return submitted


def _wait(submitted: SubmittedRun) -> None:
    with submitted.forwarding_signals():
        succeeded = submitted.wait()
    status = submitted.get_status()
    if not succeeded:
        code = grpc.StatusCode.CANCELLED if status == "KILLED" else grpc.StatusCode.UNKNOWN
        exit_code = f" (exit code {submitted.process.returncode})" if isinstance(submitted, LocalSubmittedRun) else ""
        raise ExecutionException(f"run {submitted.run_id} {'was killed' if status == 'KILLED' else 'failed'}{exit_code}", code)
    _logger.info("=== Run (ID %r) succeeded ===", submitted.run_id)


def _project_tags(source: ProjectSource, entry_point: str, backend: str, env_name: str,
                  env_tags: dict[str, str]) -> dict[str, str]:
    """MLflow's tags of a project run."""
    tags = {
        "mlflow.user": current_user(),
        "mlflow.source.type": "PROJECT",
        "mlflow.source.name": source.source_name,
        "mlflow.project.entryPoint": entry_point,
        "mlflow.project.backend": backend,
        "mlflow.project.env": env_name,
        **env_tags,
    }
    if source.git_commit:
        tags["mlflow.source.git.commit"] = source.git_commit
    if source.git_repo_url:
        tags["mlflow.source.git.repoURL"] = tags["mlflow.gitRepoURL"] = source.git_repo_url
    return tags


def _experiment_id(client: MlgridClient, experiment_name: str | None, experiment_id: str | None) -> str:
    """The given experiment (NOT_FOUND when it does not exist), or the one named (created if missing)."""
    if experiment_id:
        return client.get_experiment(experiment_id).experiment_id
    name = experiment_name or os.environ.get(EXPERIMENT_NAME_ENV)
    if not name:
        return os.environ.get(EXPERIMENT_ID_ENV) or DEFAULT_EXPERIMENT_ID
    return client.get_or_create_experiment(name).experiment_id


def _start_run(client: MlgridClient, run_id: str | None, experiment_id: str | None, run_name: str | None,
               tags: dict[str, str]) -> tuple[RunInfo, bool]:
    """(the run's info, whether it is resumed)"""
    if not run_id:
        return client.create_run(experiment_id, tags=tags, run_name=run_name).info, False
    run = client.get_run(run_id)
    if run.info.lifecycle_stage == "deleted":
        raise ExecutionException(f"run {run_id} is deleted; restore it to resume it", grpc.StatusCode.FAILED_PRECONDITION)
    client.update_run(run_id, status="RUNNING", name=run_name)
    return run.info, True


def child_environment(tracking_uri: str, run_id: str, experiment_id: str) -> dict[str, str]:
    """What the command gets to log to its run, with mlgrid's client or (through the gateway's REST API) mlflow's."""
    mlflow_uri = os.environ.get(GATEWAY_URL_ENV) or os.environ.get("MLFLOW_TRACKING_URI")
    if not mlflow_uri:
        host = grpc_target(tracking_uri).rpartition(":")[0]
        mlflow_uri = f"http://{host}:{GATEWAY_HTTP_PORT}"
    return {
        "MLGRID_RUN_ID": run_id,
        TRACKING_URI_ENV: tracking_uri,
        EXPERIMENT_ID_ENV: experiment_id,
        "MLFLOW_RUN_ID": run_id,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "MLFLOW_EXPERIMENT_ID": experiment_id,
    }
