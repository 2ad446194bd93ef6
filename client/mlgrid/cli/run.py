"""`mlgrid run`: run an MLproject (a folder or a git repository) as a tracked run, as `mlflow run` does."""
from __future__ import annotations

import logging

import click

from mlgrid import projects
from mlgrid.client import TRACKING_URI_ENV
from mlgrid.projects.environments import ENV_MANAGERS
from mlgrid.projects.runner import BACKENDS
from mlgrid.projects.spec import DEFAULT_ENTRY_POINT


def _key_values(option: str, items: tuple[str, ...], flags_allowed: bool) -> dict:
    """NAME=VALUE items as a dict; a bare NAME is True where flags are allowed (docker's -t)."""
    parsed = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not name or not (equals or flags_allowed):
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint=option)
        parsed[name] = value if equals else True
    return parsed


@click.command("run")
@click.argument("uri")
@click.option("-e", "--entry-point", default=DEFAULT_ENTRY_POINT, show_default=True,
              help="An entry point of the MLproject, or a .py/.sh file of the project.")
@click.option("-v", "--version", default=None, help="Git commit, branch or tag to check out (git URIs only).")
@click.option("-P", "--param-list", "params", multiple=True, metavar="NAME=VALUE",
              help="A parameter of the entry point; undeclared ones are passed as --NAME VALUE. Repeatable.")
@click.option("-A", "--docker-args", multiple=True, metavar="NAME[=VALUE]",
              help="A `docker run` flag for docker_env projects, e.g. -A gpus=all -A network=host. Repeatable.")
@click.option("--experiment-name", default=None, help="Experiment to run in (created if missing).")
@click.option("--experiment-id", default=None, help="Experiment to run in (must exist).")
@click.option("--run-name", default=None, help="Name of the run.")
@click.option("--run-id", default=None, help="Resume this run instead of creating one.")
@click.option("--env-manager", type=click.Choice(ENV_MANAGERS), default=None,
              help="Where the command runs [default: virtualenv with python_env, conda with conda_env, else local].")
@click.option("-b", "--backend", type=click.Choice(BACKENDS), default="local", show_default=True)
@click.option("-c", "--backend-config", type=click.Path(dir_okay=False), default=None,
              help="kubernetes: JSON file with kube-context, repository-uri and kube-job-template-path.")
@click.option("--tracking-uri", envvar=TRACKING_URI_ENV, default=None,
              help=f"Tracking server, grpc://host:port [env: {TRACKING_URI_ENV}; default grpc://127.0.0.1:50051].")
def run(uri, entry_point, version, params, docker_args, experiment_name, experiment_id, run_name, run_id,
        env_manager, backend, backend_config, tracking_uri) -> None:
    """Run the project at URI: a folder, or a git repository (https://, git@, file://), with #subdir.

    The command gets MLGRID_RUN_ID and MLGRID_TRACKING_URI, and MLFLOW_RUN_ID and MLFLOW_TRACKING_URI for
    code that uses mlflow's client: the gateway's REST address, $MLGRID_GATEWAY_URL or $MLFLOW_TRACKING_URI
    when set, else http://<tracking host>:5000.
    """
    logger = logging.getLogger("mlgrid.projects")
    if not logger.handlers:  # status lines on stderr, around the command's own output
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    projects.run(
        uri, entry_point=entry_point, version=version, parameters=_key_values("-P", params, flags_allowed=False),
        docker_args=_key_values("-A", docker_args, flags_allowed=True), experiment_name=experiment_name,
        experiment_id=experiment_id, run_name=run_name, run_id=run_id, env_manager=env_manager, backend=backend,
        backend_config=backend_config, tracking_uri=tracking_uri,
    )
