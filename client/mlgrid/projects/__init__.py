"""MLflow-compatible projects: MLproject files run with `mlgrid run` or mlgrid.projects.run(...)."""
from mlgrid.projects.runner import run
from mlgrid.projects.spec import ExecutionException
from mlgrid.projects.submitted import SubmittedRun

__all__ = ["ExecutionException", "SubmittedRun", "run"]
