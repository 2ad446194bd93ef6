"""The `mlgrid` CLI, with the client and the server modules replaced by stand-ins."""
import json
import sys
import types

import grpc
import pytest
from click.testing import CliRunner

from mlgrid.cli import main
from mlgrid.entities import Experiment, Run, RunData, RunInfo
from mlgrid.exceptions import MlgridException

RUN = Run(RunInfo("a" * 32, "1", "baseline", "ann", "FINISHED", 1_700_000_000_000, 1_700_000_001_000, "active", "x"),
          RunData({"loss": 0.5}, {"lr": "0.1"}, {"team": "vision"}))


class StubClient:
    """The MlgridClient methods the CLI calls; `calls` records them with the tracking URI used."""

    calls: list = []

    def __init__(self, tracking_uri=None):
        self.tracking_uri = tracking_uri

    def __getattr__(self, method):
        def call(*args, **kwargs):
            StubClient.calls.append((self.tracking_uri, method, args, kwargs))
            if method == "get_run" and args[0] != RUN.info.run_id:
                raise MlgridException(f"run {args[0]} does not exist", grpc.StatusCode.NOT_FOUND)
            return {
                "create_experiment": "42",
                "iter_experiments": iter([Experiment("0", "Default", "mlgrid-artifacts:/0", "active")]),
                "iter_runs": iter([RUN]),
                "get_run": RUN,
            }.get(method)

        return call


@pytest.fixture
def cli(monkeypatch):
    StubClient.calls = []
    monkeypatch.setattr(main, "MlgridClient", StubClient)
    runner = CliRunner()
    return lambda *args, **env: runner.invoke(main.cli, args, env=env or None)


def test_experiments_create_prints_the_id(cli):
    result = cli("experiments", "create", "-n", "mnist", "--artifact-location", "s3://b/m")
    assert result.exit_code == 0 and result.output.split()[-1] == "42"
    assert StubClient.calls == [(None, "create_experiment", ("mnist", "s3://b/m"), {})]


def test_tracking_uri_from_the_environment(cli):
    cli("experiments", "delete", "-x", "3", MLGRID_TRACKING_URI="grpc://env:1")
    cli("experiments", "restore", "-x", "3", "--tracking-uri", "grpc://opt:2")
    assert [(c[0], c[1]) for c in StubClient.calls] == [("grpc://env:1", "delete_experiment"),
                                                         ("grpc://opt:2", "restore_experiment")]


def test_experiments_list_table(cli):
    result = cli("experiments", "list", "--view", "all")
    header, row = result.output.splitlines()
    assert header.split() == ["Experiment", "Id", "Name", "Artifact", "Location", "Stage"]
    assert row.split() == ["0", "Default", "mlgrid-artifacts:/0", "active"]
    assert StubClient.calls[0][3] == {"view_type": 3}


def test_experiments_rename(cli):
    assert cli("experiments", "rename", "-x", "3", "--new-name", "b").exit_code == 0
    assert StubClient.calls[0][1:3] == ("rename_experiment", ("3", "b"))


def test_runs_list_table(cli):
    result = cli("runs", "list", "--experiment-id", "1", "--view", "deleted_only")
    assert result.exit_code == 0
    row = result.output.splitlines()[1]
    assert row.startswith(f"{'a' * 32}  baseline  FINISHED") and "2023-11-1" in row
    assert StubClient.calls[0][2:] == ((["1"],), {"run_view_type": 2})


def test_runs_describe_prints_json(cli):
    described = json.loads(cli("runs", "describe", "--run-id", "a" * 32).output)
    assert described["info"]["run_id"] == "a" * 32 and described["data"]["params"] == {"lr": "0.1"}
    assert described["inputs"] == {"dataset_inputs": []}


def test_runs_delete_and_restore(cli):
    assert cli("runs", "delete", "--run-id", "a" * 32).exit_code == 0
    assert cli("runs", "restore", "--run-id", "a" * 32).exit_code == 0
    assert [c[1] for c in StubClient.calls] == ["delete_run", "restore_run"]


def test_errors_print_code_and_message_and_exit_1(cli):
    result = cli("runs", "describe", "--run-id", "0" * 32)
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: NOT_FOUND: run {'0' * 32} does not exist"
    assert "Traceback" not in result.output


def test_server_runs_services_server_with_the_options(cli, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "services.server", types.SimpleNamespace(run=lambda **kw: calls.append(kw)))
    assert cli("server", "--grpc-port", "6000", "--backend-store-uri", "sqlite:///x.db").exit_code == 0
    assert calls == [dict(host="127.0.0.1", grpc_port=6000, http_port=5000, backend_store_uri="sqlite:///x.db",
                          default_artifact_root=None, artifacts_destination="./mlartifacts",
                          auth=False, insecure_no_auth=False)]
    assert cli("server", "--auth").exit_code == 0 and calls[-1]["auth"] is True


@pytest.mark.parametrize("host", ["0.0.0.0", "", "10.1.2.3", "::", "mlgrid.example"])
def test_server_refuses_an_open_address_without_auth(host):
    from services.server import refuse_open_without_auth

    with pytest.raises(SystemExit, match="--auth.*MLGRID_ADMIN_USERNAME.*--insecure-no-auth"):
        refuse_open_without_auth(host, auth=False, insecure_no_auth=False)
    refuse_open_without_auth(host, auth=True, insecure_no_auth=False)
    refuse_open_without_auth(host, auth=False, insecure_no_auth=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_server_serves_loopback_without_auth(host):
    from services.server import refuse_open_without_auth

    refuse_open_without_auth(host, auth=False, insecure_no_auth=False)


@pytest.mark.parametrize("args, module", [(("server",), "services.server"),
                                          (("db", "upgrade", "sqlite:///x.db"), "services.db.migrations")])
def test_server_commands_without_the_server_extra(cli, monkeypatch, args, module):
    monkeypatch.setitem(sys.modules, module, None)  # what a missing dependency looks like to import
    result = cli(*args)
    assert result.exit_code == 1 and "pip install 'mlgrid[server]'" in result.output


def test_db_upgrade_migrates_the_uri(cli, monkeypatch):
    upgraded = []
    monkeypatch.setitem(sys.modules, "services.db.migrations", types.SimpleNamespace(upgrade=upgraded.append))
    assert cli("db", "upgrade", "postgresql://db/x").exit_code == 0 and upgraded == ["postgresql://db/x"]

