"""`mlgrid users|permissions|roles|tokens` against a real `mlgrid server --auth` (default permission
NO_PERMISSIONS, caches of one second), through the real CLI in-process (click's runner) with the credentials
in the environment as a shell would have them, and the mlgrid client using the tokens it creates."""
import re
import time

import grpc
import pytest
from click.testing import CliRunner
from conftest import ADMIN, ADMIN_PASSWORD, unique
from conftest import AUTH_CACHE_SECONDS as CACHE_SECONDS

from mlgrid import MlgridClient
from mlgrid._credentials import CREDENTIAL_ENV
from mlgrid.cli import main
from mlgrid.exceptions import MlgridException

PASSWORD = "correct horse battery staple"
DAY_MS = 86_400_000


@pytest.fixture
def cli(auth_server):
    """Run `mlgrid ARGS` signed in as a user (username and password) or with a token, or without credentials."""

    def run(*args, user=None, password=None, token=None, input=None, ok=True):
        env = {name: None for name in CREDENTIAL_ENV}
        env["MLGRID_TRACKING_URI"] = auth_server["grpc"]
        if token:
            env["MLGRID_TRACKING_TOKEN"] = token
        elif user:
            env.update(MLGRID_TRACKING_USERNAME=user, MLGRID_TRACKING_PASSWORD=password or PASSWORD)
        result = CliRunner().invoke(main.cli, [str(a) for a in args], input=input, env=env)
        assert (result.exit_code == 0) == ok, (args, result.output, result.exception)
        return result.output

    return run


@pytest.fixture
def admin_cli(cli):
    return lambda *args, **kwargs: cli(*args, user=ADMIN, password=ADMIN_PASSWORD, **kwargs)


@pytest.fixture
def new_user(admin_cli):
    def create() -> str:
        name = unique("user")
        admin_cli("users", "create", "-u", name, "--password", PASSWORD)
        return name

    return create


def admin_client(auth_server) -> MlgridClient:
    return MlgridClient(auth_server["grpc"], username=ADMIN, password=ADMIN_PASSWORD)


def test_a_new_user_signs_in_with_a_token_they_created_until_it_is_revoked(admin_cli, cli, auth_server, monkeypatch):
    alice = unique("alice")
    created = admin_cli("users", "create", "-u", alice, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert f"Created user {alice!r}" in created
    assert PASSWORD not in created  # the prompt hides what is typed

    output = cli("tokens", "create", "--name", "ci", "--expires", "30d", user=alice)
    assert "shown only this once" in output
    secret = re.search(r"export MLGRID_TRACKING_TOKEN=(\S+)", output).group(1)
    assert secret.startswith("mlg_") and f"export MLFLOW_TRACKING_TOKEN={secret}" in output
    [token] = MlgridClient(auth_server["grpc"], token=secret).identity.list_access_tokens()
    assert token.name == "ci" and token.last_used_ms is not None  # that list call was its first use
    assert abs(token.expires_ms - (time.time() * 1000 + 30 * DAY_MS)) < 60_000

    monkeypatch.setenv("MLGRID_TRACKING_TOKEN", secret)
    client = MlgridClient(auth_server["grpc"])
    experiment = client.create_experiment(unique("by-token"))
    assert client.get_experiment(experiment).experiment_id == experiment
    assert cli("users", "current", token=secret).strip() == f"Signed in as {alice}"

    listed = cli("tokens", "list", token=secret).splitlines()
    assert listed[0].split() == ["Id", "Name", "Created", "Expires", "Last", "Used"]
    [row] = listed[1:]
    assert row.split()[1] == "ci" and not row.endswith("never")  # created, expires and last used: dates

    assert "revoked" in cli("tokens", "revoke", "--name", "ci", user=alice)
    time.sleep(CACHE_SECONDS + 0.2)
    with pytest.raises(MlgridException) as error:
        MlgridClient(auth_server["grpc"]).get_experiment(experiment)
    assert error.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "Error: UNAUTHENTICATED:" in cli("experiments", "list", token=secret, ok=False)
    assert cli("tokens", "list", user=alice).splitlines()[1:] == []


def test_tokens_that_never_expire_bad_expiries_and_tokens_of_others(cli, admin_cli, new_user):
    bob = new_user()
    secret = cli("tokens", "create", "-n", "forever", "--expires", "never", "--secret-only", user=bob).strip()
    assert secret.startswith("mlg_") and "\n" not in secret
    [row] = cli("tokens", "list", token=secret).splitlines()[1:]
    assert row.split()[1] == "forever" and " never " in row
    for bad in ("30", "3x", "0d", "-1h"):
        output = cli("tokens", "create", "-n", "bad", "--expires", bad, user=bob, ok=False)
        assert "Invalid value for '--expires'" in output
    assert "Error: ALREADY_EXISTS" in cli("tokens", "create", "-n", "forever", user=bob, ok=False)

    assert f"Created access token 'deploy' of {bob!r}" in admin_cli("tokens", "create", "-n", "deploy", "--user", bob)
    assert [row.split()[1] for row in cli("tokens", "list", user=bob).splitlines()[1:]] == ["forever", "deploy"]
    assert "Error: PERMISSION_DENIED" in cli("tokens", "list", "--user", ADMIN, user=bob, ok=False)
    admin_cli("tokens", "revoke", "-n", "deploy", "--user", bob)
    assert [row.split()[1] for row in cli("tokens", "list", user=bob).splitlines()[1:]] == ["forever"]


def test_granting_and_revoking_shows_in_permissions_get_and_list(admin_cli, cli, new_user, auth_server):
    bob = new_user()
    experiment = admin_client(auth_server).create_experiment(unique("granted"))
    where = ("--resource-type", "experiment", "--resource-id", experiment)
    get = ("permissions", "get", "--user", bob, *where)
    assert admin_cli(*get).strip() == f"{bob} has NO_PERMISSIONS on experiment {experiment}"
    with pytest.raises(MlgridException) as error:
        MlgridClient(auth_server["grpc"], username=bob, password=PASSWORD).create_run(experiment)
    assert error.value.code == grpc.StatusCode.NOT_FOUND  # hidden from bob

    assert f"Granted EDIT on experiment {experiment}" in admin_cli("permissions", "grant", "--user", bob, *where,
                                                                    "--permission", "edit")
    assert admin_cli(*get).strip() == f"{bob} has EDIT on experiment {experiment}"
    assert cli("permissions", "get", *where, user=bob).strip() == f"{bob} has EDIT on experiment {experiment}"
    [row] = cli("permissions", "list", user=bob).splitlines()[1:]
    assert row.split() == ["experiment", experiment, "EDIT", "direct"]
    MlgridClient(auth_server["grpc"], username=bob, password=PASSWORD).create_run(experiment)

    admin_cli("permissions", "revoke", "--user", bob, *where)
    assert admin_cli(*get).strip() == f"{bob} has NO_PERMISSIONS on experiment {experiment}"
    assert admin_cli("permissions", "list", "--user", bob).splitlines()[1:] == []
    assert "are an admin" in admin_cli("permissions", "list")


def test_role_lifecycle(admin_cli, cli, new_user, auth_server):
    carol = new_user()
    experiment = admin_client(auth_server).create_experiment(unique("role"))
    name = unique("readers")
    created = admin_cli("roles", "create", "-n", name, "--description", "read the role experiment")
    role_id = re.search(r"with id (\d+)", created).group(1)

    added = admin_cli("roles", "add-permission", "--role-id", role_id, "--resource-type", "experiment",
                      "--resource-pattern", experiment, "--permission", "READ")
    permission_id = re.search(r"Added permission (\d+)", added).group(1)
    [row] = admin_cli("roles", "list-permissions", "--role-id", role_id).splitlines()[1:]
    assert row.split() == [permission_id, "experiment", experiment, "READ"]

    admin_cli("roles", "assign", "--role-id", role_id, "--user", carol)
    [row] = admin_cli("roles", "list-users", "--role-id", role_id).splitlines()[1:]
    assert row.split()[1] == carol
    assert name in cli("roles", "list", "--user", carol, user=carol)
    assert name in admin_cli("roles", "list")
    assert name in admin_cli("users", "list")
    get = ("permissions", "get", "--user", carol, "--resource-type", "experiment", "--resource-id", experiment)
    assert admin_cli(*get).strip().endswith(f"has READ on experiment {experiment}")
    [row] = cli("permissions", "list", user=carol).splitlines()[1:]
    assert row.split() == ["experiment", experiment, "READ", "role", name]

    admin_cli("roles", "update-permission", "--permission-id", permission_id, "--permission", "MANAGE")
    assert admin_cli(*get).strip().endswith(f"has MANAGE on experiment {experiment}")
    admin_cli("roles", "update", "--role-id", role_id, "--description", "manage it")
    assert '"description": "manage it"' in admin_cli("roles", "get", "--role-id", role_id)

    admin_cli("roles", "remove-permission", "--permission-id", permission_id)
    assert admin_cli("roles", "list-permissions", "--role-id", role_id).splitlines()[1:] == []
    admin_cli("roles", "unassign", "--role-id", role_id, "--user", carol)
    assert admin_cli("roles", "list-users", "--role-id", role_id).splitlines()[1:] == []
    admin_cli("roles", "delete", "--role-id", role_id)
    assert "Error: NOT_FOUND" in admin_cli("roles", "get", "--role-id", role_id, ok=False)


def test_only_admins_create_users_and_wrong_credentials_say_how_to_sign_in(cli, new_user):
    dave = new_user()
    output = cli("users", "create", "-u", unique("eve"), "--password", PASSWORD, user=dave, ok=False)
    assert output.startswith("Error: PERMISSION_DENIED: ")
    output = cli("users", "list", user=dave, password="not the password at all", ok=False)
    assert output.startswith("Error: UNAUTHENTICATED: ")
    assert "MLGRID_TRACKING_TOKEN" in output and "MLGRID_TRACKING_USERNAME" in output
    assert cli("users", "current", ok=False).startswith("Error: UNAUTHENTICATED: ")


def test_users_change_their_password_and_admins_manage_users(admin_cli, cli, new_user):
    erin = new_user()
    new_password = "another long passphrase"
    output = cli("users", "update-password", user=erin, input=f"{PASSWORD}\n{new_password}\n{new_password}\n")
    assert f"Password of {erin!r} updated" in output and PASSWORD not in output and new_password not in output
    assert cli("users", "current", user=erin, password=new_password).strip() == f"Signed in as {erin}"
    assert "Error: UNAUTHENTICATED" in cli("users", "current", user=erin, ok=False)
    wrong = cli("users", "update-password", "--current-password", "not the current one", "--password", PASSWORD,
                user=erin, password=new_password, ok=False)
    assert "Error: INVALID_ARGUMENT: Current password does not match" in wrong

    admin_cli("users", "update-admin", "-u", erin, "--admin")
    assert cli("users", "current", user=erin, password=new_password).strip() == f"Signed in as {erin} (admin)"
    assert '"is_admin": true' in admin_cli("users", "get", "-u", erin)
    admin_cli("users", "update-admin", "-u", erin, "--no-admin")
    [row] = [line for line in admin_cli("users", "list").splitlines() if erin in line.split()]
    assert row.split()[1:] == [erin]  # not an admin, no roles

    admin_cli("users", "update-password", "-u", erin, "--password", PASSWORD)  # an admin needs no current password
    assert cli("users", "current", user=erin).strip() == f"Signed in as {erin}"
    admin_cli("users", "delete", "-u", erin)
    assert "Error: NOT_FOUND" in admin_cli("users", "get", "-u", erin, ok=False)
