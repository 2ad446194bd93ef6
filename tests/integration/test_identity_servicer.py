"""Who may call what on IdentityService (MLflow 3.17's rules), with the caller set as the enforcement layer
will set it (services.identity.caller.CALLER), on SQLite and PostgreSQL."""
import pytest
from conftest import unique

from mlgrid.v1 import identity_pb2 as pb
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from services.identity.caller import CALLER, CREDENTIALS
from services.identity.model import Identity, Permission
from services.identity.servicer import IdentityServicer
from services.identity.store import IdentityStore

PASSWORD = "correct horse battery staple"


@pytest.fixture
def servicer(store):
    return IdentityServicer(IdentityStore(store.engine, Permission.READ), auth_enabled=True)


async def user(servicer, admin=False) -> Identity:
    created = await servicer.store.create_user(unique("user"), PASSWORD, is_admin=admin)
    return Identity(created.username, created.id, admin)


def as_caller(identity):
    CALLER.set(identity)


async def test_with_auth_on_a_call_without_a_caller_is_unauthenticated(servicer):
    as_caller(None)
    with pytest.raises(Unauthenticated):
        await servicer.ListUsers(pb.ListUsersRequest(), None)
    open_servicer = IdentityServicer(servicer.store, auth_enabled=False)  # auth off: the anonymous admin
    assert (await open_servicer.GetCurrentUser(pb.GetCurrentUserRequest(), None)).user.is_admin


async def test_user_management_needs_an_admin_and_users_see_themselves(servicer):
    admin, alice, bob = await user(servicer, admin=True), await user(servicer), await user(servicer)
    as_caller(alice)
    with pytest.raises(PermissionDenied, match="needs an admin"):
        await servicer.CreateUser(pb.CreateUserRequest(username=unique("x"), password=PASSWORD), None)
    for call in (servicer.UpdateUserAdmin(pb.UpdateUserAdminRequest(username=alice.username, is_admin=True), None),
                 servicer.DeleteUser(pb.DeleteUserRequest(username=bob.username), None),
                 servicer.GetUser(pb.GetUserRequest(username=bob.username), None),
                 servicer.GetUser(pb.GetUserRequest(username=unique("ghost")), None)):  # no existence oracle
        with pytest.raises(PermissionDenied):
            await call
    assert (await servicer.GetUser(pb.GetUserRequest(username=alice.username), None)).user.id == alice.user_id
    assert bob.username in {u.username for u in (await servicer.ListUsers(pb.ListUsersRequest(), None)).users}
    current = await servicer.GetCurrentUser(pb.GetCurrentUserRequest(), None)
    assert (current.user.username, current.is_basic_auth) == (alice.username, True)
    as_caller(admin)
    created = await servicer.CreateUser(pb.CreateUserRequest(username=unique("new"), password=PASSWORD), None)
    assert not created.user.is_admin
    with pytest.raises(InvalidArgument, match="own account"):
        await servicer.DeleteUser(pb.DeleteUserRequest(username=admin.username), None)
    await servicer.DeleteUser(pb.DeleteUserRequest(username=created.user.username), None)


async def test_own_password_needs_the_current_one_and_others_need_an_admin(servicer):
    admin, alice, bob = await user(servicer, admin=True), await user(servicer), await user(servicer)
    as_caller(alice)
    change = pb.UpdateUserPasswordRequest(username=alice.username, password="a brand new password")
    with pytest.raises(InvalidArgument, match="Current password is required"):
        await servicer.UpdateUserPassword(change, None)
    change.current_password = "not the password"
    with pytest.raises(InvalidArgument, match="does not match"):
        await servicer.UpdateUserPassword(change, None)
    change.current_password = PASSWORD
    await servicer.UpdateUserPassword(change, None)
    assert await servicer.store.verify_password(alice.username, "a brand new password") is not None
    with pytest.raises(PermissionDenied):
        await servicer.UpdateUserPassword(pb.UpdateUserPasswordRequest(username=bob.username, password=PASSWORD * 2), None)
    as_caller(admin)
    await servicer.UpdateUserPassword(pb.UpdateUserPasswordRequest(username=bob.username, password=PASSWORD * 2), None)
    assert await servicer.store.verify_password(bob.username, PASSWORD * 2) is not None


async def test_granting_needs_manage_on_the_resource_and_wildcards_an_admin(servicer, store):
    owner, other = await user(servicer), await user(servicer)
    experiment = await store.create_experiment(unique("exp"), "", {})
    await servicer.store.grant_creator(owner, "experiment", experiment)
    grant = pb.UserPermissionRequest(username=other.username, resource_type="experiment", resource_id=experiment,
                                     permission="EDIT")
    as_caller(other)
    with pytest.raises(PermissionDenied, match="needs MANAGE"):
        await servicer.GrantUserPermission(grant, None)
    as_caller(owner)
    await servicer.GrantUserPermission(grant, None)
    with pytest.raises(PermissionDenied, match="admin"):
        await servicer.GrantUserPermission(pb.UserPermissionRequest(
            username=other.username, resource_type="experiment", resource_id="*", permission="READ"), None)
    with pytest.raises(PermissionDenied):  # another user's effective permission
        await servicer.GetUserPermission(pb.UserPermissionRequest(
            username=other.username, resource_type="experiment", resource_id=experiment), None)
    as_caller(other)
    got = await servicer.GetUserPermission(pb.UserPermissionRequest(
        username=other.username, resource_type="experiment", resource_id=experiment), None)
    assert (got.permission, got.allowed) == ("EDIT", True)
    check = await servicer.CheckAccess(pb.CheckAccessRequest(
        resource_type="experiment", resource_id=experiment, permission="MANAGE"), None)
    assert (check.allowed, check.visible, check.username) == (False, True, other.username)
    as_caller(owner)
    await servicer.RevokeUserPermission(grant, None)


async def test_a_workspace_admin_manages_roles_and_creates_users_but_is_no_admin(servicer):
    ws_admin, member = await user(servicer), await user(servicer)
    admins = await servicer.store.create_role(unique("admins"))
    await servicer.store.add_role_permission(admins.id, "workspace", "*", "MANAGE")
    await servicer.store.assign_role(ws_admin.username, admins.id)
    as_caller(ws_admin)
    await servicer.CreateUser(pb.CreateUserRequest(username=unique("seeded"), password=PASSWORD), None)
    role = (await servicer.CreateRole(pb.CreateRoleRequest(workspace="default", name=unique("team")), None)).role
    await servicer.AddRolePermission(pb.AddRolePermissionRequest(
        role_id=role.id, resource_type="experiment", resource_pattern="*", permission="READ"), None)
    await servicer.AssignRole(pb.RoleAssignmentRequest(username=member.username, role_id=role.id), None)
    with pytest.raises(PermissionDenied):
        await servicer.UpdateUserAdmin(pb.UpdateUserAdminRequest(username=member.username, is_admin=True), None)
    as_caller(member)
    with pytest.raises(PermissionDenied):
        await servicer.DeleteRole(pb.RoleIdRequest(role_id=role.id), None)
    with pytest.raises(PermissionDenied):  # an unknown role is no different to them
        await servicer.DeleteRole(pb.RoleIdRequest(role_id=10**9), None)
    assert (await servicer.GetRole(pb.RoleIdRequest(role_id=role.id), None)).role.name == role.name
    with pytest.raises(PermissionDenied):
        await servicer.ListRoles(pb.ListRolesRequest(), None)
    listed = await servicer.ListRoles(pb.ListRolesRequest(workspace=["default"]), None)
    assert role.id in [r.id for r in listed.roles]


async def test_tokens_are_their_owners_and_admins_may_manage_anyones(servicer):
    admin, alice, bob = await user(servicer, admin=True), await user(servicer), await user(servicer)
    as_caller(alice)
    created = await servicer.CreateAccessToken(pb.CreateAccessTokenRequest(name="ci", expires_in_seconds=60), None)
    owner = await servicer.store.verify_token(created.secret)
    assert owner.username == alice.username and created.token.expires_ms > created.token.created_ms
    with pytest.raises(PermissionDenied):
        await servicer.ListAccessTokens(pb.ListAccessTokensRequest(username=bob.username), None)
    with pytest.raises(InvalidArgument, match="one of them"):
        await servicer.RevokeAccessToken(pb.RevokeAccessTokenRequest(), None)
    as_caller(admin)
    listed = await servicer.ListAccessTokens(pb.ListAccessTokensRequest(username=alice.username), None)
    assert [t.name for t in listed.tokens] == ["ci"]
    await servicer.RevokeAccessToken(pb.RevokeAccessTokenRequest(id=created.token.id, username=alice.username), None)
    assert await servicer.store.verify_token(created.secret) is None


async def test_sessions_are_opened_with_own_credentials_and_ended_with_themselves(servicer):
    alice = await user(servicer)
    as_caller(Identity(alice.username, alice.user_id, False, "password"))
    with pytest.raises(InvalidArgument, match="expires_in_seconds"):
        await servicer.CreateSession(pb.CreateSessionRequest(), None)
    opened = await servicer.CreateSession(pb.CreateSessionRequest(expires_in_seconds=3600), None)
    assert opened.username == alice.username and opened.expires_ms > 0
    session = await servicer.store.verify_token(opened.secret)
    assert (session.username, session.via) == (alice.username, "session")
    assert await servicer.store.list_tokens(alice.user_id) == []  # a session is no access token
    for via in ("session", "token"):  # no session from a session, nor from a token
        as_caller(Identity(alice.username, alice.user_id, False, via))
        with pytest.raises(PermissionDenied, match="password or an OIDC token"):
            await servicer.CreateSession(pb.CreateSessionRequest(expires_in_seconds=60), None)
    as_caller(Identity(alice.username, alice.user_id, False, "password"))
    with pytest.raises(InvalidArgument, match="ends the session it is called with"):
        await servicer.EndSession(pb.EndSessionRequest(), None)
    as_caller(session)
    CREDENTIALS.set(f"Bearer {opened.secret}")
    await servicer.EndSession(pb.EndSessionRequest(), None)
    assert await servicer.store.verify_token(opened.secret) is None
    with pytest.raises(NotFound):
        await servicer.EndSession(pb.EndSessionRequest(), None)
    open_servicer = IdentityServicer(servicer.store, auth_enabled=False)
    as_caller(None)
    with pytest.raises(FailedPrecondition, match="authentication on"):
        await open_servicer.CreateSession(pb.CreateSessionRequest(expires_in_seconds=60), None)


async def test_the_grants_on_one_resource_are_listed_to_its_managers(servicer, store):
    owner, other, bystander = await user(servicer), await user(servicer), await user(servicer)
    experiment = await store.create_experiment(unique("exp"), "", {})
    await servicer.store.grant_creator(owner, "experiment", experiment)
    await servicer.store.grant(other.username, "experiment", experiment, "EDIT")
    await servicer.store.grant(bystander.username, "experiment", "*", "READ")  # not on this one
    team = await servicer.store.create_role(unique("team"))  # a role's grant is not a user's direct grant
    await servicer.store.add_role_permission(team.id, "experiment", experiment, "READ")
    await servicer.store.assign_role(bystander.username, team.id)
    request = pb.ListResourcePermissionsRequest(resource_type="experiment", resource_id=experiment)
    as_caller(other)
    with pytest.raises(PermissionDenied, match="needs MANAGE"):
        await servicer.ListResourcePermissions(request, None)
    as_caller(owner)
    listed = (await servicer.ListResourcePermissions(request, None)).permissions
    assert sorted((p.username, p.permission) for p in listed) == sorted(
        [(owner.username, "MANAGE"), (other.username, "EDIT")])
    with pytest.raises(InvalidArgument, match="resource_id"):
        await servicer.ListResourcePermissions(pb.ListResourcePermissionsRequest(resource_type="experiment"), None)
