"""The environment files of a model folder, as MLflow writes them: requirements.txt (pip),
python_env.yaml (virtualenv: python version, build tools, `-r requirements.txt`) and conda.yaml."""
from __future__ import annotations

import importlib.metadata
import os
import platform

from mlgrid.models.signature import _invalid

REQUIREMENTS_FILE = "requirements.txt"
PYTHON_ENV_FILE = "python_env.yaml"
CONDA_ENV_FILE = "conda.yaml"
ENV_FILES = {"conda": CONDA_ENV_FILE, "virtualenv": PYTHON_ENV_FILE}


def _yaml():
    import yaml

    return yaml


def pinned(*distributions: str) -> list[str]:
    """`name==version` of each installed distribution (a local label such as +cpu dropped, so pip
    finds it on PyPI); missing ones are left out."""
    pins = []
    for name in distributions:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+')[0]}")
    return pins


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name).split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


def _conda_pip_requirements(conda_env) -> list[str]:
    if isinstance(conda_env, str):
        with open(conda_env) as f:
            conda_env = _yaml().safe_load(f)
    if not isinstance(conda_env, dict):
        raise _invalid("conda_env must be a dict or the path of a conda.yaml file")
    for entry in conda_env.get("dependencies", []):
        if isinstance(entry, dict) and "pip" in entry:
            return list(entry["pip"])
    return []


def _read_requirements(requirements) -> list[str]:
    if isinstance(requirements, str):
        with open(requirements) as f:
            return [line.strip() for line in f if line.strip() and not line.startswith("#")]
    return [str(r) for r in requirements]


def write_environment(
    model_dir: str,
    default_requirements: list[str],
    pip_requirements=None,
    extra_pip_requirements=None,
    conda_env=None,
) -> None:
    """Write requirements.txt, python_env.yaml and conda.yaml. pip_requirements (a list or a file)
    replaces the flavor's defaults, extra_pip_requirements adds to them, conda_env (dict or file)
    gives the whole conda environment; as in MLflow, at most one of pip_requirements and conda_env."""
    if pip_requirements is not None and conda_env is not None:
        raise _invalid("give pip_requirements or conda_env, not both")
    if pip_requirements is not None and extra_pip_requirements is not None:
        raise _invalid("give pip_requirements or extra_pip_requirements, not both")
    python = platform.python_version()
    if conda_env is not None:
        requirements = _conda_pip_requirements(conda_env)
    elif pip_requirements is not None:
        requirements = _read_requirements(pip_requirements)
    else:
        requirements = list(default_requirements) + _read_requirements(extra_pip_requirements or [])
    with open(os.path.join(model_dir, REQUIREMENTS_FILE), "w") as f:
        f.write("\n".join(requirements) + "\n")
    pip = _installed_version("pip")
    build = [f"pip=={pip}" if pip else "pip", *pinned("setuptools"), "wheel"]
    with open(os.path.join(model_dir, PYTHON_ENV_FILE), "w") as f:
        _yaml().safe_dump({"python": python, "build_dependencies": build, "dependencies": ["-r requirements.txt"]}, f, sort_keys=False)
    if conda_env is None:
        conda_env = {
            "name": "mlflow-env",
            "channels": ["conda-forge"],
            "dependencies": [f"python={python}", f"pip<={pip}" if pip else "pip", {"pip": requirements}],
        }
    if isinstance(conda_env, str):
        with open(conda_env) as f:
            conda_env = _yaml().safe_load(f)
    with open(os.path.join(model_dir, CONDA_ENV_FILE), "w") as f:
        _yaml().safe_dump(conda_env, f, sort_keys=False)
