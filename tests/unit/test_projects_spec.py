"""MLproject files: entry points, typed parameters, command templates, environments, script entry points."""
import os
import shlex
import textwrap

import pytest

from mlgrid.projects.spec import DockerEnv, ExecutionException, load_project

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "projects_examples")


def write_project(folder, mlproject: str, **files) -> str:
    (folder / "MLproject").write_text(textwrap.dedent(mlproject))
    for name, content in files.items():
        (folder / name.replace("__", ".")).write_text(content)
    return str(folder)


def test_typed_example_parses_every_form():
    project = load_project(os.path.join(EXAMPLES, "typed"))
    assert project.name == "typed-example"
    assert list(project.entry_points) == ["main", "log_metric", "fail", "sleep"]
    params = project.entry_point("main").parameters
    assert [(p.name, p.type, p.default) for p in params.values()] == [
        ("epochs", "int", "10"), ("alpha", "float", None), ("data", "path", None),
        ("source", "uri", "s3://bucket/data"), ("label", "string", "a b; $HOME"),
    ]
    assert (project.python_env, project.conda_env, project.docker_env) == (None, None, None)


def test_values_are_checked_converted_and_shell_quoted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("x\n")
    entry = load_project(os.path.join(EXAMPLES, "typed")).entry_point("main")
    declared, extra = entry.resolve_parameters({"alpha": "1e-3", "data": "data.csv", "label": "it's; rm -rf /", "seed": "7"})
    assert declared == {"epochs": "10", "alpha": "1e-3", "data": str(tmp_path / "data.csv"),
                        "source": "s3://bucket/data", "label": "it's; rm -rf /"}
    assert extra == {"seed": "7"}
    command = entry.command_line(declared, extra)
    assert shlex.split(command) == [
        "python", "show_args.py", "--epochs", "10", "--alpha", "1e-3", "--data", str(tmp_path / "data.csv"),
        "--source", "s3://bucket/data", "--label", "it's; rm -rf /", "--seed", "7",
    ]


@pytest.mark.parametrize("given, problem", [
    ({"epochs": "ten"}, "parameter 'epochs': expected an int, got 'ten'"),
    ({"epochs": "1.5"}, "expected an int, got '1.5'"),
    ({"alpha": "fast"}, "parameter 'alpha': expected a float, got 'fast'"),
    ({"alpha": "nan"}, "expected a float, got 'nan'"),
    ({"source": "bucket/data"}, "parameter 'source': expected a URI with a scheme"),
    ({"data": "no/such/file.csv"}, "parameter 'data': no such file or folder"),
    ({"alpha": None}, "missing required parameter 'alpha'"),
])
def test_bad_values_fail_listing_what_is_expected(given, problem):
    entry = load_project(os.path.join(EXAMPLES, "typed")).entry_point("main")
    with pytest.raises(ExecutionException) as raised:
        values = {"alpha": "0.1", "data": EXAMPLES, **given}
        entry.resolve_parameters({k: v for k, v in values.items() if v is not None})
    message = str(raised.value)
    assert problem in message
    assert "Entry point 'main' takes: epochs (int, default '10'), alpha (float, required), data (path, required)" in message


def test_every_problem_is_reported_at_once():
    entry = load_project(os.path.join(EXAMPLES, "typed")).entry_point("main")
    with pytest.raises(ExecutionException) as raised:
        entry.resolve_parameters({"epochs": "ten"})
    assert all(p in str(raised.value) for p in ("'epochs'", "'alpha'", "'data'"))


def test_scripts_run_as_entry_points_without_an_mlproject():
    project = load_project(os.path.join(EXAMPLES, "scripts_only"))
    assert (project.name, project.entry_points) == ("scripts_only", {})
    assert project.entry_point("hello.py").command_line({}, {"who": "a b"}) == "python hello.py --who 'a b'"
    assert project.entry_point("hello.sh").command_line({}, {}) == "bash hello.sh"
    with pytest.raises(ExecutionException, match=r"unknown entry point 'main' .*declared entry points are none"):
        project.entry_point("main")


@pytest.mark.parametrize("name", ["missing.py", "data.txt", "../scripts_only/hello.py"])
def test_unknown_entry_points_name_the_declared_ones(name):
    project = load_project(os.path.join(EXAMPLES, "typed"))
    with pytest.raises(ExecutionException, match="declared entry points are 'main', 'log_metric', 'fail', 'sleep'"):
        project.entry_point(name)


def test_docker_env_volumes_and_both_kinds_of_environment_entries():
    project = load_project(os.path.join(EXAMPLES, "docker"))
    assert project.docker_env == DockerEnv("python:3.11-slim", ("/tmp/mlgrid-data:/data",), (("MODE", "train"), "HOME"))


def test_env_files_default_by_name_without_an_mlproject(tmp_path):
    (tmp_path / "python_env.yaml").write_text("python: '3.11'\n")
    assert load_project(str(tmp_path)).python_env == str(tmp_path / "python_env.yaml")


@pytest.mark.parametrize("mlproject, message", [
    ("- a list", "expected a mapping"),
    ("python_env: p.yaml\nconda_env: c.yaml", "give one environment, not python_env and conda_env"),
    ("python_env: missing.yaml", "python_env file 'missing.yaml' is not a file of the project"),
    ("docker_env: {volumes: []}", "docker_env needs an image"),
    ("docker_env: {image: x, environment: [[a, b, c]]}", "environment entries are NAME or [NAME, VALUE]"),
    ("entry_points: {main: {parameters: {}}}", "entry point 'main' needs a command"),
    ("entry_points: {main: {command: 'run {x}'}}", "the command uses undeclared parameters x"),
    ("entry_points: {main: {command: 'run {x', parameters: {x: int}}}", "bad command template"),
    ("entry_points: {main: {command: run, parameters: {x: bool}}}", "unknown type 'bool'; types are string, int, float, path, uri"),
    ("entry_points: [main]", "entry_points must be a mapping"),
    ("name: [unclosed", "is not valid YAML"),
])
def test_bad_mlproject_files_are_explained(tmp_path, mlproject, message):
    (tmp_path / "p.yaml").write_text("")
    (tmp_path / "c.yaml").write_text("")
    write_project(tmp_path, mlproject)
    with pytest.raises(ExecutionException) as raised:
        load_project(str(tmp_path))
    assert message in str(raised.value)
