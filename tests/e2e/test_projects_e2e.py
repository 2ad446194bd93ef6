"""`mlgrid run` and mlgrid.projects.run against a real `mlgrid server`: example projects under
tests/projects_examples, a git repository made here, and every bad input the issue names."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import kubernetes
import pytest
from conftest import unique

import mlgrid
from mlgrid import projects
from mlgrid.exceptions import MlgridException
from mlgrid.projects.spec import ExecutionException

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "projects_examples")
TYPED = os.path.join(EXAMPLES, "typed")
RUN_ID = re.compile(r"in run with ID '([0-9a-f]{32})'")


@pytest.fixture(autouse=True)
def project_env(monkeypatch):
    """`python` in the commands is this interpreter; the MLflow URI is the one derived from the tracking URI."""
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}")
    for name in ("MLGRID_GATEWAY_URL", "MLFLOW_TRACKING_URI", "MLGRID_EXPERIMENT_NAME", "MLGRID_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def client(server):
    return mlgrid.MlgridClient(server["uri"])


def mlgrid_run(server, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlgrid.cli.main", "run", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "MLGRID_TRACKING_URI": server["uri"], **(env or {})},
    )


def run_id_of(result) -> str:
    return RUN_ID.search(result.stderr).group(1)


def test_typed_parameters_are_checked_substituted_and_logged(server, client, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("x\n")
    experiment_name = unique()
    result = mlgrid_run(server, TYPED, "-P", "alpha=0.5", "-P", f"data={data}", "-P", "epochs=3", "-P", "seed=7",
                        "--experiment-name", experiment_name, "--run-name", "typed")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["argv"] == ["--epochs", "3", "--alpha", "0.5", "--data", str(data), "--source", "s3://bucket/data",
                             "--label", "a b; $HOME", "--seed", "7"]
    assert shown["cwd"] == TYPED
    run = client.get_run(run_id_of(result))
    experiment = client.get_experiment_by_name(experiment_name)
    host = server["uri"].removeprefix("grpc://").rpartition(":")[0]
    assert shown["env"] == {
        "MLGRID_RUN_ID": run.info.run_id, "MLGRID_TRACKING_URI": server["uri"], "MLGRID_EXPERIMENT_ID": experiment.experiment_id,
        "MLFLOW_RUN_ID": run.info.run_id, "MLFLOW_TRACKING_URI": f"http://{host}:5000",
        "MLFLOW_EXPERIMENT_ID": experiment.experiment_id,
    }
    assert (run.info.status, run.info.run_name, run.info.experiment_id) == ("FINISHED", "typed", experiment.experiment_id)
    assert run.data.params == {"epochs": "3", "alpha": "0.5", "data": str(data), "source": "s3://bucket/data",
                               "label": "a b; $HOME", "seed": "7"}
    assert {k: v for k, v in run.data.tags.items() if k.startswith("mlflow.") and k != "mlflow.user"} == {
        "mlflow.runName": "typed", "mlflow.source.type": "PROJECT", "mlflow.source.name": TYPED,
        "mlflow.project.entryPoint": "main", "mlflow.project.backend": "local", "mlflow.project.env": "local",
        **{k: v for k, v in run.data.tags.items() if k.startswith(("mlflow.source.git", "mlflow.gitRepoURL"))},
    }
    assert "=== Run (ID" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["-P", "alpha=0.5", "-P", f"data={TYPED}", "-P", "epochs=ten"], "parameter 'epochs': expected an int, got 'ten'"),
    (["-P", f"data={TYPED}"], "missing required parameter 'alpha'"),
    (["-e", "train"], "unknown entry point 'train' of project 'typed-example': declared entry points are 'main'"),
    (["-P", "alpha"], "Invalid value for -P: expected NAME=VALUE, got 'alpha'"),
])
def test_bad_input_fails_before_anything_is_created(server, client, args, message):
    experiment_name = unique()
    result = mlgrid_run(server, TYPED, "--experiment-name", experiment_name, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Running command" not in result.stderr
    assert client.get_experiment_by_name(experiment_name) is None


def test_parameter_errors_list_what_is_expected(server):
    result = mlgrid_run(server, TYPED, "-P", "epochs=ten")
    assert result.returncode == 1
    assert ("Entry point 'main' takes: epochs (int, default '10'), alpha (float, required), data (path, required), "
            "source (uri, default 's3://bucket/data'), label (string, default 'a b; $HOME')") in result.stderr


def test_unknown_experiment_id_is_not_found(server):
    result = mlgrid_run(server, TYPED, "-e", "fail", "--experiment-id", "987654321")
    assert result.returncode == 1
    assert "Error: NOT_FOUND" in result.stderr and "Running command" not in result.stderr


def test_failing_entry_point_marks_the_run_failed(server, client):
    result = mlgrid_run(server, TYPED, "-e", "fail")
    assert result.returncode == 1
    assert "failing on purpose" in result.stdout
    assert f"Error: UNKNOWN: run {run_id_of(result)} failed (exit code 3)" in result.stderr
    assert client.get_run(run_id_of(result)).info.status == "FAILED"


def test_scripts_run_without_an_mlproject(server, client):
    result = mlgrid_run(server, os.path.join(EXAMPLES, "scripts_only"), "-e", "hello.py", "-P", "who=a b", "-P", "n=2")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello.py --who a b --n 2\n"
    run = client.get_run(run_id_of(result))
    assert run.data.params == {"who": "a b", "n": "2"} and run.data.tags["mlflow.project.entryPoint"] == "hello.py"
    result = mlgrid_run(server, os.path.join(EXAMPLES, "scripts_only"), "-e", "hello.sh", "-P", "x=1")
    assert (result.returncode, result.stdout) == (0, "hello.sh --x 1\n")


def test_the_command_logs_to_its_run_with_the_fluent_api(server, client):
    experiment_id = client.create_experiment(unique())
    submitted = projects.run(TYPED, "log_metric", parameters={"value": 0.75}, experiment_id=experiment_id,
                             tracking_uri=server["uri"])
    run = client.get_run(submitted.run_id)
    assert (run.info.status, run.info.experiment_id) == ("FINISHED", experiment_id)
    assert run.data.metrics == {"value": 0.75} and run.data.tags["logged_by"] == "log_metric.py"
    assert submitted.get_status() == "FINISHED"


def test_a_run_is_resumed_by_id(server, client):
    experiment_id = client.create_experiment(unique())
    run = client.create_run(experiment_id, run_name="earlier")
    client.set_terminated(run.info.run_id, "FAILED")
    submitted = projects.run(TYPED, "log_metric", parameters={"value": 1}, run_id=run.info.run_id, tracking_uri=server["uri"])
    assert submitted.run_id == run.info.run_id
    resumed = client.get_run(run.info.run_id)
    assert (resumed.info.status, resumed.info.run_name, resumed.data.metrics) == ("FINISHED", "earlier", {"value": 1.0})
    assert resumed.data.tags["mlflow.source.type"] == "PROJECT" and resumed.data.params == {"value": "1"}
    with pytest.raises(ExecutionException, match="--run-id resumes a run in its own experiment"):
        projects.run(TYPED, "log_metric", run_id=run.info.run_id, experiment_id=experiment_id, tracking_uri=server["uri"])
    with pytest.raises(MlgridException, match="NOT_FOUND"):
        projects.run(TYPED, "log_metric", run_id="0" * 32, tracking_uri=server["uri"])


def git(*args, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def git_repo(tmp_path):
    """A repository with the scripts_only project under sub/: tag v1 prints v1, the default branch prints v2."""
    repo = tmp_path / "repo"
    shutil.copytree(os.path.join(EXAMPLES, "scripts_only"), repo / "sub")
    git("init", "--quiet", "-b", "main", cwd=repo)
    (repo / "sub" / "version.py").write_text("print('v1')\n")
    git("add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-m", "v1", cwd=repo)
    git("tag", "v1", cwd=repo)
    (repo / "sub" / "version.py").write_text("print('v2')\n")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "--quiet", "-am", "v2", cwd=repo)
    return repo


def test_git_projects_with_subdir_and_version(server, client, git_repo, capfd):
    uri = f"file://{git_repo}#sub"
    v1 = projects.run(uri, "version.py", version="v1", tracking_uri=server["uri"])
    latest = projects.run(uri, "version.py", tracking_uri=server["uri"])
    assert capfd.readouterr().out == "v1\nv2\n"
    tags = client.get_run(v1.run_id).data.tags
    assert tags["mlflow.source.git.commit"] == git("rev-parse", "v1", cwd=git_repo)
    assert tags["mlflow.source.git.repoURL"] == f"file://{git_repo}"
    assert tags["mlflow.source.name"] == uri
    assert client.get_run(latest.run_id).data.tags["mlflow.source.git.commit"] == git("rev-parse", "main", cwd=git_repo)
    with pytest.raises(ExecutionException, match="git -c advice.detachedHead=false checkout --quiet v9 failed"):
        projects.run(uri, "version.py", version="v9", tracking_uri=server["uri"])
    with pytest.raises(ExecutionException, match="'nope' is not a folder of the project"):
        projects.run(f"file://{git_repo}#nope", "version.py", tracking_uri=server["uri"])
    with pytest.raises(ExecutionException, match="--version needs a git URI"):
        projects.run(str(git_repo / "sub"), "version.py", version="v1", tracking_uri=server["uri"])


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# Started with SIGINT ignored too, as a shell script starts a job in the background: the command it runs must
# still stop when mlgrid run forwards it the signal.
@pytest.mark.parametrize("started", [None, _ignore_sigint], ids=["foreground", "sigint-ignored"])
def test_sigint_stops_the_command_and_marks_the_run_killed(server, client, started):
    process = subprocess.Popen(
        [sys.executable, "-m", "mlgrid.cli.main", "run", TYPED, "-e", "sleep"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "MLGRID_TRACKING_URI": server["uri"]}, preexec_fn=started,
    )
    assert process.stdout.readline() == "sleeping\n"
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "Signal SIGINT: stopping run" in stderr and "was killed" in stderr
    assert client.get_run(RUN_ID.search(stderr).group(1)).info.status == "KILLED"


def test_python_env_project_runs_in_a_cached_virtualenv(server, client, tmp_path):
    env = {"MLGRID_ENV_ROOT": str(tmp_path / "envs")}
    first = mlgrid_run(server, os.path.join(EXAMPLES, "python_env"), env=env)
    assert first.returncode == 0, first.stderr
    prefix = re.fullmatch(r"prefix=(\S+) six=\d+\.\d+\.\d+\n", first.stdout).group(1)
    assert prefix.startswith(str(tmp_path / "envs" / "mlgrid-")) and "Creating virtualenv" in first.stderr
    second = mlgrid_run(server, os.path.join(EXAMPLES, "python_env"), env=env)
    assert second.stdout == first.stdout and "Creating virtualenv" not in second.stderr
    assert client.get_run(run_id_of(second)).data.tags["mlflow.project.env"] == "virtualenv"


def test_docker_project_without_an_engine_fails_before_a_run(server, client, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    experiment_name = unique()
    result = mlgrid_run(server, os.path.join(EXAMPLES, "docker"), "--experiment-name", experiment_name,
                        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 1
    assert "FAILED_PRECONDITION: this project's docker_env needs a Docker engine" in result.stderr
    assert client.get_experiment_by_name(experiment_name) is not None  # resolved first; no run in it
    assert list(client.iter_runs([client.get_experiment_by_name(experiment_name).experiment_id])) == []


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: test, user: {token: secret}}]
contexts: [{name: mlgrid-test, context: {cluster: test, user: test}}]
current-context: mlgrid-test
"""


class JobStatus:
    def __init__(self, condition: str):
        self.status = type("Status", (), {"conditions": [type("Condition", (), {"type": condition, "status": "True"})]})


def test_kubernetes_backend_builds_pushes_and_submits_the_job(server, client, tmp_path, monkeypatch):
    bin_dir, docker_calls = tmp_path / "bin", tmp_path / "docker-calls"
    bin_dir.mkdir()
    # A stand-in docker CLI: the engine answers; build and push are recorded with the Dockerfile given on stdin.
    (bin_dir / "docker").write_text(f'#!/bin/sh\necho "$@" >> {docker_calls}\n[ "$1" = build ] && cat >> {docker_calls}\nexit 0\n')
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    submitted_jobs = []
    monkeypatch.setattr(kubernetes.client.BatchV1Api, "create_namespaced_job",
                        lambda api, namespace, body: submitted_jobs.append((api, namespace, body)))
    monkeypatch.setattr(kubernetes.client.BatchV1Api, "read_namespaced_job_status", lambda api, name, namespace: JobStatus("Complete"))

    submitted = projects.run(
        os.path.join(EXAMPLES, "docker"), parameters={"alpha": 0.7}, backend="kubernetes", synchronous=False,
        backend_config=os.path.join(EXAMPLES, "kubernetes", "backend_config.json"), tracking_uri=server["uri"],
    )
    [(api, namespace, job)] = submitted_jobs
    assert api.api_client.configuration.host == "https://127.0.0.1:6443" and namespace == "mlgrid"
    container = job["spec"]["template"]["spec"]["containers"][0]
    image = container["image"]
    assert re.fullmatch(r"registry\.example\.com/mlgrid/docker-example:[0-9a-f]{12}", image)
    assert container["command"] == ["sh", "-c", "python -c 'import sys; print(sys.argv)' 0.7"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MLGRID_RUN_ID"] == env["MLFLOW_RUN_ID"] == submitted.run_id and env["MLGRID_TRACKING_URI"] == server["uri"]
    assert env["MODE"] == "train"
    calls = docker_calls.read_text()
    assert f"build -t {image} -f - {os.path.join(EXAMPLES, 'docker')}\nFROM python:3.11-slim\nCOPY . /mlgrid/projects/code/" in calls
    assert f"push {image}" in calls
    run = client.get_run(submitted.run_id)
    assert run.info.status == "RUNNING"
    assert run.data.tags["mlflow.project.backend"] == "kubernetes" and run.data.tags["mlflow.project.env"] == "docker"
    assert submitted.wait() and client.get_run(submitted.run_id).info.status == "FINISHED"


def test_kubernetes_backend_config_errors_come_before_a_run(server, tmp_path):
    result = mlgrid_run(server, os.path.join(EXAMPLES, "docker"), "-b", "kubernetes")
    assert result.returncode == 1 and "the kubernetes backend needs --backend-config FILE" in result.stderr
    (tmp_path / "config.json").write_text('{"repository-uri": "r"}')
    result = mlgrid_run(server, os.path.join(EXAMPLES, "docker"), "-b", "kubernetes", "-c", str(tmp_path / "config.json"))
    assert result.returncode == 1 and "missing kube-job-template-path" in result.stderr
    result = mlgrid_run(server, TYPED, "-e", "fail", "-b", "kubernetes", "-c", os.path.join(EXAMPLES, "kubernetes", "backend_config.json"))
    assert result.returncode == 1 and "the kubernetes backend runs projects with a docker_env" in result.stderr
