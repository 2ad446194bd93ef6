"""MLflow's AuthServiceClient (`mlflow.server.get_app_client("basic-auth", ...)`), unchanged, against
`mlgrid server`: users, per-user grants and roles over MLflow 3.17's auth REST API.

The session's server runs without authentication, so the caller is the anonymous admin (see
services/identity/servicer.py); who-may-call-what is tested on the servicer with callers set
(tests/integration/test_identity_servicer.py), and over HTTP once enforcement authenticates callers."""
import pytest
import requests
from conftest import unique
from mlflow.exceptions import RestException
from mlflow.server import get_app_client

PASSWORD = "correct horse battery staple"


@pytest.fixture
def auth(mlflow_server_url):
    return get_app_client("basic-auth", tracking_uri=mlflow_server_url)


def test_users_are_created_read_updated_and_deleted(auth, mlflow_server_url):
    name = unique("ada")
    user = auth.create_user(name, PASSWORD)
    assert (user.username, user.is_admin, user.password_hash) == (name, False, "REDACTED") and user.id > 0
    assert auth.get_user(name).id == user.id
    with pytest.raises(RestException, match="RESOURCE_ALREADY_EXISTS"):
        auth.create_user(name, PASSWORD)
    with pytest.raises(RestException, match="at least 12 characters"):
        auth.create_user(unique("bob"), "short")
    auth.update_user_admin(name, True)
    assert auth.get_user(name).is_admin
    auth.update_user_password(name, "another long password")
    listed = requests.get(f"{mlflow_server_url}/api/2.0/mlflow/users/list", timeout=10).json()["users"]
    assert {"id": user.id, "username": name, "is_admin": True, "roles": []} in listed
    auth.delete_user(name)
    with pytest.raises(RestException, match="RESOURCE_DOES_NOT_EXIST"):
        auth.get_user(name)


def test_grants_are_given_read_and_revoked(auth, mlflow_server_url):
    name = unique("carol")
    auth.create_user(name, PASSWORD)
    experiment = requests.post(f"{mlflow_server_url}/api/2.0/mlflow/experiments/create",
                               json={"name": unique("exp")}, timeout=10).json()["experiment_id"]
    before = auth.get_user_permission(name, "experiment", experiment)
    assert (before.permission, before.allowed) == ("READ", False)  # the default; READ does not allow USE
    auth.grant_user_permission(name, "experiment", experiment, "EDIT")
    after = auth.get_user_permission(name, "experiment", experiment)
    assert (after.permission, after.allowed) == ("EDIT", True)
    listed = requests.get(f"{mlflow_server_url}/api/3.0/mlflow/users/permissions/list",
                          params={"username": name}, timeout=10).json()
    assert listed["is_admin"] is False
    assert [(p["resource_type"], p["resource_pattern"], p["permission"]) for p in listed["permissions"]] == [
        ("experiment", experiment, "EDIT")]
    with pytest.raises(RestException, match="only wildcard"):
        auth.grant_user_permission(name, "run", "abc", "READ")
    auth.revoke_user_permission(name, "experiment", experiment)
    assert auth.get_user_permission(name, "experiment", experiment).permission == "READ"
    with pytest.raises(RestException, match="RESOURCE_DOES_NOT_EXIST"):
        auth.revoke_user_permission(name, "experiment", experiment)


def test_roles_are_managed_assigned_and_listed(auth):
    name = unique("dave")
    auth.create_user(name, PASSWORD)
    role = auth.create_role("default", unique("team"), description="the team")
    assert (role.workspace, role.description, role.permissions) == ("default", "the team", [])
    grant = auth.add_role_permission(role.id, "registered_model", "*", "EDIT")
    assert (grant.role_id, grant.resource_type, grant.resource_pattern, grant.permission) == (
        role.id, "registered_model", "*", "EDIT")
    assert [p.id for p in auth.list_role_permissions(role.id)] == [grant.id]
    assert auth.update_role_permission(grant.id, "MANAGE").permission == "MANAGE"
    assert auth.update_role(role.id, description="renamed").description == "renamed"
    assert auth.get_role(role.id).permissions[0].permission == "MANAGE"
    assert role.id in [r.id for r in auth.list_roles("default")]
    assignment = auth.assign_role(name, role.id)
    assert (assignment.role_id, assignment.user_id) == (role.id, auth.get_user(name).id)
    assert [a.id for a in auth.list_role_users(role.id)] == [assignment.id]
    assert [r.id for r in auth.list_user_roles(name)] == [role.id]
    assert auth.get_user_permission(name, "registered_model", "any-model").permission == "MANAGE"
    auth.unassign_role(name, role.id)
    assert auth.list_user_roles(name) == []
    auth.remove_role_permission(grant.id)
    assert auth.list_role_permissions(role.id) == []
    auth.delete_role(role.id)
    with pytest.raises(RestException, match="RESOURCE_DOES_NOT_EXIST"):
        auth.get_role(role.id)
    with pytest.raises(RestException, match="reserved"):
        auth.create_role("default", "__user_1__")


def test_access_tokens_over_rest(auth, mlflow_server_url):
    name = unique("erin")
    auth.create_user(name, PASSWORD)
    base = f"{mlflow_server_url}/api/2.0/mlgrid/tokens"
    created = requests.post(f"{base}/create", json={"name": "ci", "expires_in_seconds": 3600, "username": name},
                            timeout=10).json()
    assert created["secret"].startswith("mlg_") and created["token"]["name"] == "ci"
    assert created["token"]["expires_ms"] > created["token"]["created_ms"]
    listed = requests.get(f"{base}/list", params={"username": name}, timeout=10).json()["tokens"]
    assert [t["name"] for t in listed] == ["ci"]
    assert requests.post(f"{base}/revoke", json={"name": "ci", "username": name}, timeout=10).json() == {}
    assert requests.get(f"{base}/list", params={"username": name}, timeout=10).json() == {"tokens": []}
