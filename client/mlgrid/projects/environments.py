"""Where a project's command runs: the current environment, a cached virtualenv, a conda env or a docker container.

Each environment is prepared once (before any run is created, so a broken one
records nothing) and then turns the command line into the argv and process
environment to start it with.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid

import grpc

from mlgrid._credentials import CREDENTIAL_ENV
from mlgrid.projects import spec
from mlgrid.projects.spec import ExecutionException

ENV_MANAGERS = ("local", "virtualenv", "conda")
ENV_ROOT_ENV = "MLGRID_ENV_ROOT"
DEFAULT_ENV_ROOT = os.path.join("~", ".mlgrid", "envs")
CONTAINER_PROJECT_DIR = "/mlgrid/projects/code"
READY_MARKER = ".mlgrid-ready"
STDERR_FD = 2  # written once a virtualenv is completely installed

_logger = logging.getLogger(__name__)


def _failed_precondition(message: str) -> ExecutionException:
    return ExecutionException(message, grpc.StatusCode.FAILED_PRECONDITION)


def _check_call(argv: list[str], what: str, cwd: str | None = None) -> None:
    """Run a set-up command with all its output on stderr, leaving stdout to the project's command."""
    if subprocess.run(argv, cwd=cwd, stdout=STDERR_FD).returncode != 0:
        raise _failed_precondition(f"{what} failed: {' '.join(argv)}")


def _content_key(path: str | None, fallback: str) -> str:
    content = open(path, "rb").read() if path else fallback.encode()
    return hashlib.sha256(content).hexdigest()


class LocalEnvironment:
    """The current environment: `python` in the command is the interpreter running mlgrid (its folder
    first on PATH), also when mlgrid was started as .venv/bin/mlgrid without activating the venv."""

    name = "local"
    tags: dict[str, str] = {}

    def prepare(self) -> None:
        pass

    def argv(self, command: str, run_env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        return ["bash", "-c", command], {**os.environ, "PATH": path, **run_env}


class VirtualEnvironment(LocalEnvironment):
    """A venv made from python_env.yaml (Python version, pip dependencies), cached under $MLGRID_ENV_ROOT
    (default ~/.mlgrid/envs) by the file's sha256; without the file, the current Python and no dependencies."""

    name = "virtualenv"

    def __init__(self, python_env_file: str | None, project_dir: str):
        self.python_env_file = python_env_file
        self.project_dir = project_dir
        root = os.path.expanduser(os.environ.get(ENV_ROOT_ENV) or DEFAULT_ENV_ROOT)
        key = _content_key(python_env_file, f"python: {_current_python_version()}\n")
        self.path = os.path.join(root, f"mlgrid-{key[:40]}")

    def prepare(self) -> None:
        python_env = (spec.load_yaml(self.python_env_file) if self.python_env_file else None) or {}
        if not isinstance(python_env, dict):
            raise ExecutionException(f"{self.python_env_file}: expected a mapping of python and dependencies")
        python = _find_python(str(python_env.get("python") or _current_python_version()), self.python_env_file)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with _locked(self.path + ".lock"):  # another process may be making the same env
            if os.path.exists(os.path.join(self.path, READY_MARKER)):
                return
            _logger.info("=== Creating virtualenv %s ===", self.path)
            shutil.rmtree(self.path, ignore_errors=True)  # left half-made by an interrupted attempt
            _check_call([python, "-m", "venv", self.path], "creating the virtualenv")
            for group in ("build_dependencies", "dependencies"):
                self._pip_install([str(p) for p in python_env.get(group) or []], group)
            open(os.path.join(self.path, READY_MARKER), "w").close()

    def _pip_install(self, requirements: list[str], group: str) -> None:
        """Install requirement lines (`pkg>=1`, `-r requirements.txt`...) from a file in the project folder, so
        that relative paths in them resolve from there, as in MLflow."""
        if not requirements:
            return
        requirements_file = os.path.join(self.project_dir, f".mlgrid-requirements-{uuid.uuid4().hex}.txt")
        with open(requirements_file, "w") as f:
            f.write("\n".join(requirements) + "\n")
        try:
            pip = [os.path.join(self.path, "bin", "python"), "-m", "pip", "install", "-r", requirements_file]
            _check_call(pip, f"installing the {group} of {self.python_env_file}", cwd=self.project_dir)
        finally:
            os.remove(requirements_file)

    def argv(self, command: str, run_env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        argv, env = super().argv(command, run_env)
        env.pop("PYTHONHOME", None)
        env["VIRTUAL_ENV"] = self.path
        env["PATH"] = os.path.join(self.path, "bin") + os.pathsep + env.get("PATH", "")
        return argv, env


def _current_python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _find_python(version: str, python_env_file: str | None) -> str:
    """This interpreter when it is the requested major.minor, else pythonX.Y on PATH."""
    major_minor = ".".join(version.split(".")[:2])
    if major_minor == _current_python_version():
        return sys.executable
    found = shutil.which(f"python{major_minor}")
    if found is None:
        raise _failed_precondition(
            f"{python_env_file} asks for Python {version}, but this is Python {_current_python_version()} and no "
            f"python{major_minor} is on PATH: install Python {major_minor}, or run with --env-manager local"
        )
    return found


@contextlib.contextmanager
def _locked(path: str):
    with open(path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


class CondaEnvironment(LocalEnvironment):
    """A conda env made from conda.yaml, named by the file's sha256; conda must be on PATH."""

    name = "conda"

    def __init__(self, conda_env_file: str):
        self.conda_env_file = conda_env_file
        self.env_name = f"mlgrid-{_content_key(conda_env_file, '')[:40]}"

    def prepare(self) -> None:
        conda = shutil.which("conda")
        if conda is None:
            raise _failed_precondition(
                "--env-manager conda needs conda on PATH (install Miniconda or Miniforge), or run with --env-manager local"
            )
        listing = subprocess.run([conda, "env", "list", "--json"], capture_output=True, text=True, check=False)
        existing = {os.path.basename(p) for p in json.loads(listing.stdout or "{}").get("envs", [])}
        if self.env_name not in existing:
            _logger.info("=== Creating conda env %s ===", self.env_name)
            _check_call([conda, "env", "create", "--quiet", "-n", self.env_name, "-f", self.conda_env_file],
                        "creating the conda env")

    def argv(self, command: str, run_env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        argv, env = super().argv(command, run_env)
        return ["conda", "run", "--no-capture-output", "-n", self.env_name, *argv], env


class DockerEnvironment:
    """A container of the docker_env image, the project folder mounted as its working directory."""

    name = "docker"

    def __init__(self, docker_env: spec.DockerEnv, project_dir: str, docker_args: dict[str, str | bool] | None = None):
        self.docker_env = docker_env
        self.project_dir = project_dir
        self.docker_args = docker_args or {}
        self.tags = {"mlflow.docker.image.uri": docker_env.image}

    def prepare(self) -> None:
        check_docker_engine()

    def argv(self, command: str, run_env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        argv = ["docker", "run", "--rm", "-v", f"{self.project_dir}:{CONTAINER_PROJECT_DIR}", "-w", CONTAINER_PROJECT_DIR]
        for volume in self.docker_env.volumes:
            argv += ["-v", volume]
        credentials = {name: None for name in CREDENTIAL_ENV if name in os.environ}  # never on the command line
        for name, value in [*docker_environment(self.docker_env).items(), *credentials.items(), *run_env.items()]:
            argv += ["-e", name if value is None else f"{name}={value}"]  # a bare NAME: docker copies it from here
        for name, value in self.docker_args.items():
            flag = f"-{name}" if len(name) == 1 else f"--{name}"
            argv += [flag] if value is True else [flag, str(value)]
        return [*argv, self.docker_env.image, "sh", "-c", command], dict(os.environ)


def docker_environment(docker_env: spec.DockerEnv) -> dict[str, str | None]:
    """docker_env's environment: NAME -> VALUE, or None for a NAME taken from the caller's environment."""
    return dict(entry if isinstance(entry, tuple) else (entry, None) for entry in docker_env.environment)


def check_docker_engine() -> None:
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, text=True)
    except FileNotFoundError:
        raise _failed_precondition("this project's docker_env needs docker on PATH and a Docker engine") from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise _failed_precondition(
            "this project's docker_env needs a Docker engine, and `docker info` failed"
            + (f": {detail[-1]}" if detail else "")
        )


def select_environment(
    project: spec.Project, env_manager: str | None, docker_args: dict[str, str | bool] | None = None
):
    """The environment to run `project` in: its docker_env, else `env_manager`, else the one its files ask for."""
    if project.docker_env is not None:
        if env_manager is not None:
            raise ExecutionException(f"project {project.name!r} runs in its docker_env image; --env-manager does not apply")
        return DockerEnvironment(project.docker_env, project.directory, docker_args)
    if docker_args:
        raise ExecutionException(f"--docker-args apply to docker_env projects only, and {project.name!r} has no docker_env")
    if env_manager is None:
        env_manager = "virtualenv" if project.python_env else "conda" if project.conda_env else "local"
    if env_manager == "local":
        return LocalEnvironment()
    if env_manager == "virtualenv":
        if project.conda_env and not project.python_env:
            raise ExecutionException(
                f"project {project.name!r} declares a conda_env, not a python_env: use --env-manager conda or local"
            )
        return VirtualEnvironment(project.python_env, project.directory)
    if env_manager == "conda":
        if not project.conda_env:
            raise ExecutionException(f"--env-manager conda needs a conda_env (conda.yaml) in project {project.name!r}")
        return CondaEnvironment(project.conda_env)
    raise ExecutionException(f"unknown env manager {env_manager!r}: expected one of {', '.join(ENV_MANAGERS)}")
