"""The Dockerfile and its lock: checked by reading them, as these machines have no container engine to build it."""
import importlib.util
import re
from importlib.metadata import requires
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()
LOCK = REPO / "deploy" / "docker" / "requirements.lock"
CHART_HELPERS = REPO / "deploy" / "helm" / "mlgrid" / "templates" / "_helpers.tpl"


def stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]


def pins() -> dict[str, str]:
    lines = [line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[a-z0-9-]+==[\w.+!-]+", line) for line in lines), "requirements.lock: name==version lines only"
    return dict(line.split("==") for line in lines)


def test_modules_the_image_and_chart_run_are_entrypoints():
    """The image's CMD and each Deployment's args name `python -m` modules that exist (services.<name>.__main__)."""
    (cmd,) = re.findall(r'^CMD \["([\w.]+)"\]$', DOCKERFILE, flags=re.M)
    chart_modules = re.findall(r"module: (services\.\w+)", CHART_HELPERS.read_text())
    assert 'ENTRYPOINT ["python", "-m"]' in DOCKERFILE
    assert sorted(chart_modules) == sorted(f"services.{p.parent.name}" for p in (REPO / "services").glob("*/__main__.py"))
    for module in [cmd, *chart_modules]:
        assert importlib.util.find_spec(f"{module}.__main__") is not None, module


def test_final_stage_installs_only_the_wheel_and_the_lock_and_runs_unprivileged():
    build, final = stages()
    assert build.startswith("${PYTHON_IMAGE} AS build") and final.startswith("${PYTHON_IMAGE}\n")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", DOCKERFILE, flags=re.M)
    assert "pip install --no-index --find-links /wheels --constraint /requirements.lock" in final
    assert "[server,serving]" in final
    assert not re.search(r"gcc|build-essential|COPY (client|services)", final)
    # The one system package: the gateway's gRPC data plane, without recommends, lists removed.
    assert re.findall(r"apt-get install[^\n]*", final) == ["apt-get install -y --no-install-recommends nginx-light \\"]
    assert "rm -rf /var/lib/apt/lists/*" in final
    assert "USER 10001:10001" in final and "--uid 10001" in final


def test_lock_pins_every_requirement_of_the_image_extras():
    """Each requirement of mlgrid[server,serving] on Linux (and of the extras it pulls in) is pinned."""
    pinned = pins()
    for extra in ("server", "serving", "models"):
        for requirement in map(Requirement, requires("mlgrid")):
            applies = requirement.marker is None or Marker(str(requirement.marker)).evaluate({"extra": extra, "sys_platform": "linux"})
            if applies and requirement.name != "mlgrid":
                assert canonicalize_name(requirement.name) in pinned, f"{requirement} ([{extra}]) is not in {LOCK.name}"
    assert "torch" not in pinned and "mlflow" not in pinned  # dev-only: not in the image


def test_dockerignore_sends_only_what_the_build_copies():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else is left out
    copied = set(re.findall(r"^COPY (?!--)(\S+(?: \S+)*?) \S+$", DOCKERFILE, flags=re.M))
    sources = {source for line in copied for source in line.split()}
    for source in sources:
        assert f"!{source.rstrip('/')}/" in ignore or f"!{source}" in ignore, source
