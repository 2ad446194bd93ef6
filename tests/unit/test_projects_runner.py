"""mlgrid.projects.run's checks before anything is fetched, and the environment the command gets."""
import pytest

from mlgrid.projects import ExecutionException, run
from mlgrid.projects.runner import child_environment


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "slurm"}, "unknown backend 'slurm': expected one of local, kubernetes"),
    ({"backend_config": "c.json"}, "--backend-config goes with --backend kubernetes"),
    ({"run_id": "a" * 32, "experiment_name": "x"}, "--run-id resumes a run in its own experiment"),
    ({"experiment_name": "x", "experiment_id": "1"}, "give --experiment-name or --experiment-id, not both"),
])
def test_conflicting_options_are_refused(kwargs, message):
    with pytest.raises(ExecutionException, match=message):
        run("/nonexistent", **kwargs)


def test_a_missing_folder_is_not_found():
    with pytest.raises(ExecutionException, match="NOT_FOUND: no project folder at '/nonexistent'"):
        run("/nonexistent")


def test_the_command_gets_mlgrid_and_mlflow_variables(monkeypatch):
    monkeypatch.delenv("MLGRID_GATEWAY_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert child_environment("grpc://tracking.internal:50051", "r1", "7") == {
        "MLGRID_RUN_ID": "r1", "MLGRID_TRACKING_URI": "grpc://tracking.internal:50051", "MLGRID_EXPERIMENT_ID": "7",
        "MLFLOW_RUN_ID": "r1", "MLFLOW_TRACKING_URI": "http://tracking.internal:5000", "MLFLOW_EXPERIMENT_ID": "7",
    }
    assert child_environment("grpc://[::1]:50051", "r1", "7")["MLFLOW_TRACKING_URI"] == "http://[::1]:5000"


def test_the_mlflow_uri_can_be_set(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example.com")
    assert child_environment("grpc://h:1", "r", "0")["MLFLOW_TRACKING_URI"] == "http://mlflow.example.com"
    monkeypatch.setenv("MLGRID_GATEWAY_URL", "https://gateway.example.com")
    assert child_environment("grpc://h:1", "r", "0")["MLFLOW_TRACKING_URI"] == "https://gateway.example.com"
