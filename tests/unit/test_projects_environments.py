"""Where a project's command runs: argv and environment of each kind, and clear errors for what is missing."""
import os
import stat
import sys

import pytest

from mlgrid.projects.environments import (
    CONTAINER_PROJECT_DIR, CondaEnvironment, DockerEnvironment, LocalEnvironment, VirtualEnvironment, select_environment,
)
from mlgrid.projects.spec import ExecutionException, load_project

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "projects_examples")
RUN_ENV = {"MLGRID_RUN_ID": "r1", "MLGRID_TRACKING_URI": "grpc://10.0.0.1:50051"}


def fake_executable(folder, name: str, script: str) -> str:
    """A shell script called `name` in `folder` (put on PATH by the caller)."""
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.fixture
def bin_dir(tmp_path, monkeypatch):
    """An empty folder first on PATH, for stand-in docker and conda commands."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def test_docker_argv_mounts_the_project_and_passes_environment_volumes_and_flags():
    project = load_project(os.path.join(EXAMPLES, "docker"))
    environment = DockerEnvironment(project.docker_env, project.directory, {"gpus": "all", "t": True})
    argv, env = environment.argv("python train.py --alpha 0.5", RUN_ENV)
    assert argv == [
        "docker", "run", "--rm", "-v", f"{project.directory}:{CONTAINER_PROJECT_DIR}", "-w", CONTAINER_PROJECT_DIR,
        "-v", "/tmp/mlgrid-data:/data",
        "-e", "MODE=train", "-e", "HOME",  # HOME: docker copies the caller's value
        "-e", "MLGRID_RUN_ID=r1", "-e", "MLGRID_TRACKING_URI=grpc://10.0.0.1:50051",
        "--gpus", "all", "-t",
        "python:3.11-slim", "sh", "-c", "python train.py --alpha 0.5",
    ]
    assert env["HOME"] == os.environ["HOME"] and "MLGRID_RUN_ID" not in env
    assert environment.tags == {"mlflow.docker.image.uri": "python:3.11-slim"}


def test_docker_passes_the_tracking_credentials_by_name_only(monkeypatch):
    project = load_project(os.path.join(EXAMPLES, "docker"))
    monkeypatch.setenv("MLGRID_TRACKING_TOKEN", "s3cret-token")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-password")
    argv, env = DockerEnvironment(project.docker_env, project.directory, {}).argv("true", RUN_ENV)
    assert argv[argv.index("MLGRID_TRACKING_TOKEN") - 1] == "-e"
    assert "MLFLOW_TRACKING_PASSWORD" in argv and "MLFLOW_TRACKING_USERNAME" not in argv
    assert not any("s3cret" in arg for arg in argv) and env["MLGRID_TRACKING_TOKEN"] == "s3cret-token"


def test_docker_without_an_engine_fails_clearly(bin_dir):
    fake_executable(bin_dir, "docker", "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock' >&2; exit 1\n")
    project = load_project(os.path.join(EXAMPLES, "docker"))
    with pytest.raises(ExecutionException, match="needs a Docker engine, and `docker info` failed: Cannot connect"):
        select_environment(project, None).prepare()


def test_docker_not_installed_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    project = load_project(os.path.join(EXAMPLES, "docker"))
    with pytest.raises(ExecutionException, match="needs docker on PATH"):
        select_environment(project, None).prepare()


def test_local_and_virtualenv_argv(tmp_path, monkeypatch):
    monkeypatch.setenv("MLGRID_ENV_ROOT", str(tmp_path))
    argv, env = LocalEnvironment().argv("echo hi", RUN_ENV)
    assert argv == ["bash", "-c", "echo hi"] and env["MLGRID_RUN_ID"] == "r1" and env["PATH"].endswith(os.environ["PATH"])
    venv = VirtualEnvironment(None, str(tmp_path))
    argv, env = venv.argv("echo hi", RUN_ENV)
    assert venv.path.startswith(str(tmp_path / "mlgrid-"))
    assert env["VIRTUAL_ENV"] == venv.path and env["PATH"].startswith(os.path.join(venv.path, "bin") + os.pathsep)


def test_virtualenvs_are_keyed_by_the_python_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MLGRID_ENV_ROOT", str(tmp_path))
    (tmp_path / "a.yaml").write_text("dependencies: [six]\n")
    (tmp_path / "b.yaml").write_text("dependencies: [six==1.16.0]\n")
    paths = {VirtualEnvironment(str(tmp_path / name), str(tmp_path)).path for name in ("a.yaml", "a.yaml", "b.yaml")}
    assert len(paths) == 2


def test_a_python_version_not_here_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("MLGRID_ENV_ROOT", str(tmp_path))
    (tmp_path / "python_env.yaml").write_text("python: '2.7.18'\ndependencies: [six]\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no python2.7 here
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    with pytest.raises(ExecutionException, match=rf"asks for Python 2.7.18, but this is Python {here} and no python2.7 is on PATH"):
        VirtualEnvironment(str(tmp_path / "python_env.yaml"), str(tmp_path)).prepare()
    assert not os.path.exists(os.path.join(tmp_path, "mlgrid-"))


def test_conda_missing_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "conda.yaml").write_text("dependencies: [python=3.11]\n")
    with pytest.raises(ExecutionException, match="--env-manager conda needs conda on PATH"):
        CondaEnvironment(str(tmp_path / "conda.yaml")).prepare()


def test_conda_env_is_created_once_and_wraps_the_command(tmp_path, bin_dir):
    calls = tmp_path / "conda-calls"
    envs = tmp_path / "envs"
    envs.mkdir()
    # A stand-in conda: lists the env folders it made, and makes one on `env create -n NAME`.
    fake_executable(bin_dir, "conda", f"""echo "$@" >> {calls}
if [ "$1 $2" = "env list" ]; then
  printf '{{"envs": [%s]}}' "$(ls {envs} | sed 's/.*/"\\/envs\\/&"/' | paste -sd, -)"
elif [ "$1 $2" = "env create" ]; then mkdir {envs}/$5; fi
""")
    (tmp_path / "conda.yaml").write_text("dependencies: [python=3.11]\n")
    environment = CondaEnvironment(str(tmp_path / "conda.yaml"))
    environment.prepare()
    environment.prepare()
    created = [line for line in calls.read_text().splitlines() if line.startswith("env create")]
    assert created == [f"env create --quiet -n {environment.env_name} -f {tmp_path / 'conda.yaml'}"]
    argv, _ = environment.argv("python train.py", RUN_ENV)
    assert argv == ["conda", "run", "--no-capture-output", "-n", environment.env_name, "bash", "-c", "python train.py"]


@pytest.mark.parametrize("files, env_manager, expected", [
    ({}, None, "local"),
    ({"python_env.yaml": "dependencies: []\n"}, None, "virtualenv"),
    ({"conda.yaml": "dependencies: []\n"}, None, "conda"),
    ({"python_env.yaml": "dependencies: []\n"}, "local", "local"),
    ({}, "virtualenv", "virtualenv"),
])
def test_the_env_manager_defaults_to_what_the_project_declares(tmp_path, files, env_manager, expected):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    assert select_environment(load_project(str(tmp_path)), env_manager).name == expected


@pytest.mark.parametrize("files, env_manager, docker_args, message", [
    ({"conda.yaml": ""}, "virtualenv", None, "declares a conda_env, not a python_env"),
    ({}, "conda", None, "--env-manager conda needs a conda_env"),
    ({}, "pipenv", None, "unknown env manager 'pipenv'"),
    ({}, None, {"gpus": "all"}, "--docker-args apply to docker_env projects only"),
    ({"MLproject": "docker_env: {image: x}\n"}, "local", None, "runs in its docker_env image; --env-manager does not apply"),
])
def test_env_manager_mismatches_are_explained(tmp_path, files, env_manager, docker_args, message):
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    with pytest.raises(ExecutionException, match=message):
        select_environment(load_project(str(tmp_path)), env_manager, docker_args)



def test_local_commands_get_the_interpreter_running_mlgrid_first_on_path(monkeypatch):
    import sys

    from mlgrid.projects.environments import LocalEnvironment

    monkeypatch.setenv("PATH", "/usr/bin")
    argv, env = LocalEnvironment().argv("python -V", {"MLGRID_RUN_ID": "r"})
    assert argv == ["bash", "-c", "python -V"] and env["MLGRID_RUN_ID"] == "r"
    assert env["PATH"].split(os.pathsep)[:2] == [os.path.dirname(sys.executable), "/usr/bin"]
