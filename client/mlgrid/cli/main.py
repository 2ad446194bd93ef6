"""`mlgrid`: run the server, migrate its database, and manage experiments, runs, artifacts and models (users,
permissions, roles and tokens: mlgrid.cli.identity)."""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import posixpath
import threading

import click

from mlgrid._artifact_transfer import ArtifactRoot, parse_artifact_uri
from mlgrid.cli import identity
from mlgrid.cli.common import format_time, print_table, tracking_uri_option
from mlgrid.cli.run import run as run_command
from mlgrid.client import MlgridClient
from mlgrid.entities import ViewType
from mlgrid.exceptions import MlgridException

SERVER_EXTRA_HINT = "the server needs the mlgrid[server] extra: pip install 'mlgrid[server]'"
PROGRESS_MIN_BYTES = 16 * 1024 * 1024  # transfers at least this large show a progress bar

view_option = click.option(
    "--view", "view", type=click.Choice(["active_only", "deleted_only", "all"], case_sensitive=False),
    default="active_only", show_default=True, help="Which lifecycle stages to list.",
)


class _Cli(click.Group):
    """Reports a failed call as `Error: CODE: message` with exit status 1, without a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MlgridException as error:
            raise click.ClickException(str(error)) from None


def _import_server_module(name: str):
    """Import a module of the server; its dependencies come with the server extra only."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise click.ClickException(f"{SERVER_EXTRA_HINT} ({error})") from None


@click.group(cls=_Cli)
def cli() -> None:
    """mlgrid: ML experiment tracking over gRPC."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--grpc-port", default=50051, show_default=True, help="gRPC port.")
@click.option("--port", default=5000, show_default=True, help="HTTP port: MLflow's REST API (MLFLOW_TRACKING_URI=http://HOST:PORT) and Prometheus /metrics.")
@click.option("--backend-store-uri", default="sqlite:///mlgrid.db", show_default=True,
              help="Tracking database: sqlite:///path.db or postgresql://user:pass@host:5432/db.")
@click.option("--default-artifact-root", default=None,
              help="Where new experiments put artifacts [default: chosen by the server].")
@click.option("--artifacts-destination", envvar="MLGRID_ARTIFACTS_DESTINATION", default="./mlartifacts", show_default=True,
              help="Where artifacts are stored: a local folder, or s3://bucket/prefix (with the MLGRID_S3_* "
                   "settings) [env: MLGRID_ARTIFACTS_DESTINATION].")
@click.option("--auth", is_flag=True, default=False,
              help="Require credentials and check permissions on every call (also MLGRID_AUTH=on); the first admin "
                   "comes from MLGRID_ADMIN_USERNAME and MLGRID_ADMIN_PASSWORD.")
@click.option("--insecure-no-auth", is_flag=True, default=False,
              help="Serve a non-loopback --host without auth: anyone who reaches it may read, change and delete everything.")
def server(host, grpc_port, port, backend_store_uri, default_artifact_root, artifacts_destination, auth, insecure_no_auth) -> None:
    """Run every mlgrid service in one process."""
    server_module = _import_server_module("services.server")
    server_module.run(
        host=host, grpc_port=grpc_port, http_port=port, backend_store_uri=backend_store_uri,
        default_artifact_root=default_artifact_root, artifacts_destination=artifacts_destination,
        auth=auth, insecure_no_auth=insecure_no_auth,
    )


@cli.group()
def db() -> None:
    """Manage the tracking database."""


@db.command()
@click.argument("uri")
def upgrade(uri: str) -> None:
    """Apply the schema migrations to the database at URI."""
    _import_server_module("services.db.migrations").upgrade(uri)


@cli.group()
def experiments() -> None:
    """Create, list, rename, delete and restore experiments."""


@experiments.command("create")
@click.option("-n", "--experiment-name", required=True, help="Name of the new experiment.")
@click.option("--artifact-location", default=None, help="Where its runs store artifacts [default: chosen by the server].")
@tracking_uri_option
def create_experiment(experiment_name, artifact_location, tracking_uri) -> None:
    """Create an experiment and print its id."""
    experiment_id = MlgridClient(tracking_uri).create_experiment(experiment_name, artifact_location)
    click.echo(f"Created experiment {experiment_name!r} with id {experiment_id}")


@experiments.command("list")
@view_option
@tracking_uri_option
def list_experiments(view, tracking_uri) -> None:
    """List experiments."""
    found = MlgridClient(tracking_uri).iter_experiments(view_type=ViewType.from_string(view))
    rows = [[e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage] for e in found]
    print_table(["Experiment Id", "Name", "Artifact Location", "Stage"], rows)


@experiments.command("rename")
@click.option("-x", "--experiment-id", required=True)
@click.option("--new-name", required=True)
@tracking_uri_option
def rename_experiment(experiment_id, new_name, tracking_uri) -> None:
    """Rename an experiment."""
    MlgridClient(tracking_uri).rename_experiment(experiment_id, new_name)
    click.echo(f"Experiment {experiment_id} renamed to {new_name!r}")


@experiments.command("delete")
@click.option("-x", "--experiment-id", required=True)
@tracking_uri_option
def delete_experiment(experiment_id, tracking_uri) -> None:
    """Mark an experiment and its runs deleted (restorable)."""
    MlgridClient(tracking_uri).delete_experiment(experiment_id)
    click.echo(f"Experiment {experiment_id} deleted")


@experiments.command("restore")
@click.option("-x", "--experiment-id", required=True)
@tracking_uri_option
def restore_experiment(experiment_id, tracking_uri) -> None:
    """Restore a deleted experiment."""
    MlgridClient(tracking_uri).restore_experiment(experiment_id)
    click.echo(f"Experiment {experiment_id} restored")


@cli.group()
def runs() -> None:
    """List, describe, delete and restore runs."""


@runs.command("list")
@click.option("--experiment-id", required=True, help="Experiment whose runs to list.")
@view_option
@tracking_uri_option
def list_runs(experiment_id, view, tracking_uri) -> None:
    """List the runs of an experiment."""
    found = MlgridClient(tracking_uri).iter_runs([experiment_id], run_view_type=ViewType.from_string(view))
    rows = [[r.info.run_id, r.info.run_name, r.info.status, format_time(r.info.start_time)] for r in found]
    print_table(["Run Id", "Name", "Status", "Start Time"], rows)


@runs.command("describe")
@click.option("--run-id", required=True)
@tracking_uri_option
def describe_run(run_id, tracking_uri) -> None:
    """Print a run's info, data and inputs as JSON."""
    run = MlgridClient(tracking_uri).get_run(run_id)
    click.echo(json.dumps(run.to_dictionary(), indent=4))


@runs.command("delete")
@click.option("--run-id", required=True)
@tracking_uri_option
def delete_run(run_id, tracking_uri) -> None:
    """Mark a run deleted (restorable)."""
    MlgridClient(tracking_uri).delete_run(run_id)
    click.echo(f"Run {run_id} deleted")


@runs.command("restore")
@click.option("--run-id", required=True)
@tracking_uri_option
def restore_run(run_id, tracking_uri) -> None:
    """Restore a deleted run."""
    MlgridClient(tracking_uri).restore_run(run_id)
    click.echo(f"Run {run_id} restored")


@cli.group()
def artifacts() -> None:
    """Log, list and download run artifacts."""


@contextlib.contextmanager
def _progress(total: int, label: str):
    """A progress callback for transfers from any thread: a bar on stderr for large ones, else nothing."""
    if total < PROGRESS_MIN_BYTES:
        yield None
        return
    lock = threading.Lock()
    with click.progressbar(length=total, label=label, file=click.get_text_stream("stderr")) as bar:

        def update(nbytes: int) -> None:
            with lock:
                bar.update(nbytes)

        yield update


def _local_size(local_file: str | None, local_dir: str | None) -> int:
    if local_file:
        return os.path.getsize(local_file)
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _, names in os.walk(local_dir) for name in names)


@click.command()
@click.option("--run-id", "-r", required=True, help="Run to log to.")
@click.option("--local-file", "-l", type=click.Path(exists=True, dir_okay=False), help="A file to log.")
@click.option("--local-dir", type=click.Path(exists=True, file_okay=False), help="A folder whose files to log.")
@click.option("--artifact-path", "-a", default=None, help="Folder of the run's artifacts to log into [default: the root].")
@tracking_uri_option
def log_artifacts_command(run_id, local_file, local_dir, artifact_path, tracking_uri) -> None:
    """Log a local file (--local-file) or every file under a local folder (--local-dir) as artifacts of a run."""
    if (local_file is None) == (local_dir is None):
        raise click.UsageError("give one of --local-file and --local-dir")
    client = MlgridClient(tracking_uri)
    root, folder = ArtifactRoot(run_id=run_id), (artifact_path or "").strip("/")
    with _progress(_local_size(local_file, local_dir), "Uploading") as progress:
        if local_file:
            client.artifacts.upload_file(root, local_file, posixpath.join(folder, os.path.basename(local_file)), progress)
        else:
            client.artifacts.upload_dir(root, local_dir, folder, progress)
    click.echo(f"Logged {local_file or local_dir} to run {run_id}" + (f" under {folder}" if folder else ""))


# `log` takes a file or a folder; mlflow's two names work too.
for _name in ("log", "log-artifact", "log-artifacts"):
    artifacts.add_command(log_artifacts_command, _name)


def _artifact_root_and_path(run_id, artifact_path, artifact_uri) -> tuple[ArtifactRoot, str]:
    if (run_id is None) == (artifact_uri is None):
        raise click.UsageError("give one of --run-id (with --artifact-path) and --artifact-uri")
    if artifact_uri:
        if artifact_path:
            raise click.UsageError("--artifact-path goes with --run-id; put the path in --artifact-uri")
        return parse_artifact_uri(artifact_uri)
    return ArtifactRoot(run_id=run_id), (artifact_path or "").strip("/")


@artifacts.command("download")
@click.option("--run-id", "-r", default=None, help="Run whose artifacts to download.")
@click.option("--artifact-path", "-a", default=None, help="File or folder of the run's artifacts [default: all].")
@click.option("--artifact-uri", "-u", default=None, help="Instead of the two above: runs:/<run_id>/<path> or mlgrid-artifacts:/...")
@click.option("--dst-path", "-d", default=None, help="Local folder to download into [default: a new temporary folder].")
@tracking_uri_option
def download_artifacts_command(run_id, artifact_path, artifact_uri, dst_path, tracking_uri) -> None:
    """Download a file or folder of artifacts and print its local path."""
    root, path = _artifact_root_and_path(run_id, artifact_path, artifact_uri)
    client = MlgridClient(tracking_uri)
    found = client.artifacts.stat(root, path)
    total = sum(f.file_size for f in client.artifacts.list_files(root, path)) if found.file.is_dir else found.file.file_size
    with _progress(total, "Downloading") as progress:
        local = client.artifacts.download(root, path, dst_path, progress)
    click.echo(local)


@artifacts.command("list")
@click.option("--run-id", "-r", default=None, help="Run whose artifacts to list.")
@click.option("--artifact-path", "-a", default=None, help="Folder of the run's artifacts to list [default: the root].")
@click.option("--artifact-uri", "-u", default=None, help="Instead of the two above: runs:/<run_id>/<path> or mlgrid-artifacts:/...")
@tracking_uri_option
def list_artifacts_command(run_id, artifact_path, artifact_uri, tracking_uri) -> None:
    """List the files and folders directly in a folder of artifacts."""
    root, path = _artifact_root_and_path(run_id, artifact_path, artifact_uri)
    found = MlgridClient(tracking_uri).artifacts.list(root, path)
    print_table(["Path", "Type", "Size"], [[f.path, "dir" if f.is_dir else "file", "" if f.is_dir else f.file_size] for f in found])


# ---------------------------------------------------------------- model registry


def _name_filter(name: str) -> str:
    """`name = '<name>'` for the registry's filter grammar, quoted with a quote the name does not hold."""
    quote = "'" if "'" not in name else '"'
    if quote in name:
        raise click.BadParameter(f"{name!r} holds both kinds of quotes; it cannot be named in a filter")
    return f"name = {quote}{name}{quote}"


@cli.group()
def models() -> None:
    """Register models in the model registry, and serve them."""


@models.command("serve")
@click.option("-m", "--model-uri", "model_uris", required=True, multiple=True,
              help="The model: models:/<name>@<alias>, models:/<name>/<version|stage>, runs:/<run_id>/<path> or a "
                   "folder; repeat as NAME=URI to serve several.")
@click.option("--name", default=None, help="The name it is served under [default: its registered name, else 'model'].")
@click.option("-h", "--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("-p", "--port", default=8080, show_default=True, help="HTTP port: /invocations, OIP REST (/v2/...), /metrics.")
@click.option("--grpc-port", default=8081, show_default=True, help="OIP gRPC port (GRPCInferenceService).")
@click.option("-w", "--workers", default=1, show_default=True, help="Inference processes per model (0: in the server process).")
@click.option("--max-batch-size", default=32, show_default=True, help="Rows per predict call when requests are batched.")
@click.option("--max-batch-wait-ms", default=0.0, show_default=True,
              help="How long a batch may wait for more requests (0: batch only what queues while workers are busy).")
@tracking_uri_option
def serve_model(model_uris, name, host, port, grpc_port, workers, max_batch_size, max_batch_wait_ms, tracking_uri) -> None:
    """Serve models over MLflow's scoring protocol and the Open Inference Protocol, like `mlflow models serve`."""
    config_module = _import_server_module("services.common.config")
    service = _import_server_module("services.serving.service")
    server = _import_server_module("services.common.server")
    from_env = config_module.ServingConfig.from_env()
    config = from_env.model_copy(update={
        "http_port": port, "workers": workers, "max_batch_size": max_batch_size, "max_batch_wait_ms": max_batch_wait_ms,
        "tracking_uri": tracking_uri or from_env.tracking_uri,
    })
    if name and len(model_uris) > 1:
        raise click.UsageError("--name names a single model; serve several as -m NAME=URI")
    try:
        specs = service.parse_models(",".join(model_uris), config)
    except _import_server_module("services.common.errors").MlgridError as error:
        raise click.UsageError(error.message) from None
    if name:
        specs = [dataclasses.replace(specs[0], name=name)]
    server.configure_logging()
    try:
        server.run_event_loop(service.serve(
            specs, config, config_module.ServerConfig(host=host, grpc_port=grpc_port), config_module.AuthConfig.from_env()
        ))
    except _import_server_module("services.common.errors").MlgridError as error:
        raise click.ClickException(f"{error.code.name}: {error.message}") from None


@models.command("register")
@click.option("-m", "--model-uri", required=True, help="The model's files: runs:/<run_id>/<path>, mlgrid-artifacts:/..., s3://...")
@click.option("-n", "--name", required=True, help="Registered model to add a version to (created if missing).")
@tracking_uri_option
def register_model(model_uri, name, tracking_uri) -> None:
    """Register MODEL_URI as the next version of NAME, as mlflow.register_model does."""
    version = MlgridClient(tracking_uri).register_model(model_uri, name)
    click.echo(f"Registered {name} version {version.version} from {version.source}")


@cli.group("registered-models")
def registered_models() -> None:
    """List and describe registered models."""


@registered_models.command("list")
@click.option("--filter", "filter_string", default="", help="e.g. \"name LIKE '%churn%'\" or \"tags.team = 'a'\".")
@tracking_uri_option
def list_registered_models(filter_string, tracking_uri) -> None:
    """List registered models with their latest versions and aliases."""
    found = MlgridClient(tracking_uri).iter_registered_models(filter_string)
    rows = [
        [m.name, ", ".join(f"{v.current_stage}: {v.version}" for v in m.latest_versions),
         ", ".join(f"{alias}: {version}" for alias, version in sorted(m.aliases.items())), format_time(m.last_updated_timestamp)]
        for m in found
    ]
    print_table(["Name", "Latest Versions", "Aliases", "Last Updated"], rows)


@registered_models.command("describe")
@click.option("-n", "--name", required=True)
@tracking_uri_option
def describe_registered_model(name, tracking_uri) -> None:
    """Print a registered model as JSON."""
    click.echo(json.dumps(dataclasses.asdict(MlgridClient(tracking_uri).get_registered_model(name)), indent=4))


@cli.group("model-versions")
def model_versions() -> None:
    """List model versions and move aliases."""


@model_versions.command("list")
@click.option("-n", "--name", required=True, help="Registered model whose versions to list.")
@tracking_uri_option
def list_model_versions(name, tracking_uri) -> None:
    """List the versions of a registered model, newest first."""
    client = MlgridClient(tracking_uri)
    client.get_registered_model(name)  # NOT_FOUND for a model that does not exist, rather than an empty list
    found = client.iter_model_versions(_name_filter(name))
    rows = [
        [v.version, v.current_stage, ", ".join(v.aliases), v.status, v.source, format_time(v.creation_timestamp)]
        for v in found
    ]
    print_table(["Version", "Stage", "Aliases", "Status", "Source", "Created"], rows)


@model_versions.command("set-alias")
@click.option("-n", "--name", required=True)
@click.option("-a", "--alias", required=True, help="e.g. champion; moved here if it names another version.")
@click.option("-v", "--version", required=True)
@tracking_uri_option
def set_model_version_alias(name, alias, version, tracking_uri) -> None:
    """Point ALIAS of a registered model at a version (models:/NAME@ALIAS)."""
    MlgridClient(tracking_uri).set_registered_model_alias(name, alias, version)
    click.echo(f"models:/{name}@{alias} -> version {version}")


@model_versions.command("delete-alias")
@click.option("-n", "--name", required=True)
@click.option("-a", "--alias", required=True)
@tracking_uri_option
def delete_model_version_alias(name, alias, tracking_uri) -> None:
    """Remove an alias of a registered model."""
    MlgridClient(tracking_uri).delete_registered_model_alias(name, alias)


cli.add_command(run_command)
for _group in identity.GROUPS:
    cli.add_command(_group)

if __name__ == "__main__":
    cli(prog_name="mlgrid")
