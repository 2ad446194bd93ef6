"""The MLflow compatibility tests: the stock `mlflow` client (the dev extra's 3.17) against a real
`mlgrid server` process, through MLflow's REST API on its HTTP port.

This folder is a package so that this conftest does not take the module name `conftest` from
tests/conftest.py, whose helpers the test modules import."""
import mlflow
import pytest
from conftest import wait_for_port


@pytest.fixture(scope="session")
def mlflow_server_url(server) -> str:
    """The HTTP URL of the session's `mlgrid server` (one per xdist worker): MLflow's tracking URI."""
    wait_for_port(server["http_port"], server["proc"], server["workdir"] / "server.log")
    return f"http://127.0.0.1:{server['http_port']}"


@pytest.fixture
def client(mlflow_server_url):
    """The stock MlflowClient, with the fluent API pointed at the same server; no run is left active."""
    mlflow.set_tracking_uri(mlflow_server_url)
    yield mlflow.MlflowClient(mlflow_server_url)
    while mlflow.active_run():
        mlflow.end_run()
