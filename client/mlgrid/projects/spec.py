"""MLproject files, as MLflow reads them: environment, entry points, typed parameters and command templates."""
from __future__ import annotations

import dataclasses
import importlib
import math
import os
import shlex
import string
import urllib.parse

import grpc

from mlgrid.exceptions import MlgridException

MLPROJECT_FILE = "MLproject"
DEFAULT_PYTHON_ENV_FILE = "python_env.yaml"
DEFAULT_CONDA_ENV_FILE = "conda.yaml"
DEFAULT_ENTRY_POINT = "main"
PARAMETER_TYPES = ("string", "int", "float", "path", "uri")
# Files that run as an entry point without being declared, and how.
SCRIPT_RUNNERS = {".py": "python", ".sh": "bash"}
PROJECTS_EXTRA_HINT = "pip install 'mlgrid[projects]'"


class ExecutionException(MlgridException):
    """A project cannot run as asked (bad MLproject, parameters, environment or backend), or its run failed."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(message, code)


def import_optional(module: str):
    """Import a dependency of the `projects` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExecutionException(
            f"mlgrid projects need the {module.split('.')[0]!r} package: {PROJECTS_EXTRA_HINT}",
            grpc.StatusCode.FAILED_PRECONDITION,
        ) from None


def load_yaml(path: str):
    yaml = import_optional("yaml")
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as error:
        raise ExecutionException(f"{path} is not valid YAML: {error}") from None


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    type: str = "string"
    default: str | None = None  # None: the parameter is required

    def describe(self) -> str:
        required = "required" if self.default is None else f"default {self.default!r}"
        return f"{self.name} ({self.type}, {required})"

    def resolve(self, value: str) -> str:
        """The value to substitute: checked against the type; a path made absolute (from the caller's folder)."""
        if self.type == "int":
            try:
                int(value)
            except ValueError:
                raise ValueError(f"expected an int, got {value!r}") from None
        elif self.type == "float":
            try:
                if not math.isfinite(float(value)):
                    raise ValueError
            except ValueError:
                raise ValueError(f"expected a float, got {value!r}") from None
        elif self.type == "uri":
            if not urllib.parse.urlparse(value).scheme:
                raise ValueError(f"expected a URI with a scheme (s3://, https://, file://...), got {value!r}")
        elif self.type == "path":
            path = os.path.abspath(os.path.expanduser(value))
            if not os.path.exists(path):
                raise ValueError(f"no such file or folder: {path}")
            return path
        return value


@dataclasses.dataclass(frozen=True)
class EntryPoint:
    name: str
    command: str
    parameters: dict[str, Parameter] = dataclasses.field(default_factory=dict)

    def signature(self) -> str:
        if not self.parameters:
            return f"Entry point {self.name!r} declares no parameters (any NAME=VALUE is passed as --NAME VALUE)."
        return f"Entry point {self.name!r} takes: " + ", ".join(p.describe() for p in self.parameters.values())

    def resolve_parameters(self, given: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
        """(declared parameters with their checked values, extra parameters as given); every problem at once."""
        declared, problems = {}, []
        for param in self.parameters.values():
            value = given.get(param.name, param.default)
            if value is None:
                problems.append(f"missing required parameter {param.name!r}")
                continue
            try:
                declared[param.name] = param.resolve(str(value))
            except ValueError as error:
                problems.append(f"parameter {param.name!r}: {error}")
        if problems:
            raise ExecutionException(
                f"bad parameters for entry point {self.name!r}: {'; '.join(problems)}. {self.signature()}"
            )
        extra = {k: v for k, v in given.items() if k not in self.parameters}
        return declared, extra

    def command_line(self, declared: dict[str, str], extra: dict[str, str]) -> str:
        """The command template with shell-quoted values; extra parameters appended as `--name value`."""
        command = self.command.format_map({k: shlex.quote(v) for k, v in declared.items()})
        return " ".join([command, *(f"--{shlex.quote(k)} {shlex.quote(v)}" for k, v in extra.items())])


@dataclasses.dataclass(frozen=True)
class DockerEnv:
    image: str
    volumes: tuple[str, ...] = ()
    # NAME (copied from the caller's environment) or (NAME, VALUE)
    environment: tuple[str | tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Project:
    name: str
    directory: str
    entry_points: dict[str, EntryPoint]
    python_env: str | None = None  # absolute path of python_env.yaml
    conda_env: str | None = None  # absolute path of conda.yaml
    docker_env: DockerEnv | None = None

    def entry_point(self, name: str) -> EntryPoint:
        """A declared entry point, or a .py/.sh file of the project run as one."""
        if name in self.entry_points:
            return self.entry_points[name]
        runner = SCRIPT_RUNNERS.get(os.path.splitext(name)[1])
        script = os.path.join(self.directory, name)
        if runner and _inside(self.directory, script) and os.path.isfile(script):
            return EntryPoint(name, f"{runner} {shlex.quote(name)}")
        declared = ", ".join(repr(n) for n in self.entry_points) or "none"
        raise ExecutionException(
            f"unknown entry point {name!r} of project {self.name!r}: declared entry points are {declared}, "
            f"and {name!r} is not a {'/'.join(SCRIPT_RUNNERS)} file of the project"
        )


def _inside(folder: str, path: str) -> bool:
    folder = os.path.realpath(folder)
    return os.path.commonpath([folder, os.path.realpath(path)]) == folder


def _find_mlproject(directory: str) -> str | None:
    for name in os.listdir(directory):
        if name.lower() == MLPROJECT_FILE.lower() and os.path.isfile(os.path.join(directory, name)):
            return os.path.join(directory, name)
    return None


def load_project(directory: str) -> Project:
    """Read the project in `directory`; without an MLproject file, its scripts are its entry points."""
    directory = os.path.abspath(directory)
    mlproject = _find_mlproject(directory)
    if mlproject is None:
        return Project(
            name=os.path.basename(directory), directory=directory, entry_points={},
            python_env=_existing(directory, DEFAULT_PYTHON_ENV_FILE), conda_env=_existing(directory, DEFAULT_CONDA_ENV_FILE),
        )
    spec = load_yaml(mlproject) or {}
    if not isinstance(spec, dict):
        raise ExecutionException(f"{mlproject}: expected a mapping of name, environment and entry_points")
    envs = [key for key in ("python_env", "conda_env", "docker_env") if key in spec]
    if len(envs) > 1:
        raise ExecutionException(f"{mlproject}: give one environment, not {' and '.join(envs)}")
    raw_entry_points = spec.get("entry_points") or {}
    if not isinstance(raw_entry_points, dict):
        raise ExecutionException(f"{mlproject}: entry_points must be a mapping of name to command and parameters")
    return Project(
        name=str(spec.get("name") or os.path.basename(directory)),
        directory=directory,
        entry_points={str(n): _entry_point(mlproject, str(n), e) for n, e in raw_entry_points.items()},
        python_env=_env_file(mlproject, directory, spec, "python_env"),
        conda_env=_env_file(mlproject, directory, spec, "conda_env"),
        docker_env=_docker_env(mlproject, spec["docker_env"]) if "docker_env" in spec else None,
    )


def _existing(directory: str, name: str) -> str | None:
    path = os.path.join(directory, name)
    return path if os.path.isfile(path) else None


def _env_file(mlproject: str, directory: str, spec: dict, key: str) -> str | None:
    if key not in spec:
        return None
    path = os.path.join(directory, str(spec[key]))
    if not (_inside(directory, path) and os.path.isfile(path)):
        raise ExecutionException(f"{mlproject}: {key} file {spec[key]!r} is not a file of the project")
    return path


def _entry_point(mlproject: str, name: str, spec) -> EntryPoint:
    where = f"{mlproject}: entry point {name!r}"
    if not isinstance(spec, dict) or not isinstance(spec.get("command"), str):
        raise ExecutionException(f"{where} needs a command")
    raw_params = spec.get("parameters") or {}
    if not isinstance(raw_params, dict):
        raise ExecutionException(f"{where}: parameters must be a mapping of name to type or {{type, default}}")
    parameters = {str(p): _parameter(where, str(p), s) for p, s in raw_params.items()}
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(spec["command"]) if field is not None}
    except ValueError as error:
        raise ExecutionException(f"{where}: bad command template: {error}") from None
    undeclared = sorted(fields - set(parameters))
    if undeclared:
        raise ExecutionException(f"{where}: the command uses undeclared parameters {', '.join(undeclared)}")
    return EntryPoint(name, spec["command"], parameters)


def _parameter(where: str, name: str, spec) -> Parameter:
    if isinstance(spec, str):  # the bare `name: type` form
        spec = {"type": spec}
    if not isinstance(spec, dict):
        raise ExecutionException(f"{where}: parameter {name!r} must be a type or a mapping of type and default")
    param_type = str(spec.get("type", "string"))
    if param_type not in PARAMETER_TYPES:
        raise ExecutionException(
            f"{where}: parameter {name!r} has unknown type {param_type!r}; types are {', '.join(PARAMETER_TYPES)}"
        )
    default = spec.get("default")
    return Parameter(name, param_type, None if default is None else str(default))


def _docker_env(mlproject: str, spec) -> DockerEnv:
    if not isinstance(spec, dict) or not isinstance(spec.get("image"), str):
        raise ExecutionException(f"{mlproject}: docker_env needs an image")
    volumes = spec.get("volumes") or []
    if not isinstance(volumes, list) or not all(isinstance(v, str) for v in volumes):
        raise ExecutionException(f"{mlproject}: docker_env volumes must be a list of HOST:CONTAINER strings")
    environment = []
    for entry in spec.get("environment") or []:
        if isinstance(entry, str):
            environment.append(entry)
        elif isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str):
            environment.append((entry[0], str(entry[1])))
        else:
            raise ExecutionException(
                f"{mlproject}: docker_env environment entries are NAME or [NAME, VALUE], not {entry!r}"
            )
    return DockerEnv(spec["image"], tuple(volumes), tuple(environment))
