"""IdentityService over gRPC: a thin adapter from wire messages to IdentityStore, with MLflow 3.17's rules
of who may call what, checked here per method (the interceptors authenticate; these decide):

- users: admins create, update the admin flag of and delete users (workspace admins may create them too);
  any signed-in user lists users and reads their own user and permissions; users change their own
  password by giving the current one, admins anyone's; nobody deletes themselves;
- grants: granting or revoking on one resource needs MANAGE on it; on "*", an admin or workspace admin;
  a user's effective permission is read by that user, an admin or a workspace admin;
- roles: admins and workspace admins manage them; members of a workspace read its roles;
- access tokens: each user their own; admins anyone's;
- UI sessions: made with a password or an OIDC JWT (never from a token or another session); each call to
  EndSession ends the session it is made with;
- the direct grants on one resource (the UI's permissions panel): MANAGE on it;
- CheckAccess: any caller, about themselves.

With authentication off (MLGRID_AUTH unset: nobody sets services.identity.caller.CALLER) the caller is an
anonymous admin, as every other API is open then; with it on, a call without a caller is refused.
"""
from collections.abc import Callable

from google.protobuf import empty_pb2

from mlgrid.v1 import identity_pb2 as pb
from mlgrid.v1 import identity_pb2_grpc
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from services.db.clock import now_ms
from services.identity import caller, rules, tokens
from services.identity.model import DEFAULT_WORKSPACE, Identity, Permission, Role, RolePermission, User
from services.identity.store import IdentityStore
from services.identity.tokens import TokenInfo

EMPTY = empty_pb2.Empty()
ANONYMOUS_ADMIN = Identity("anonymous", None, is_admin=True, via="none")
MAX_SESSION_SECONDS = 30 * 86_400
# How a caller must have signed in to open a UI session: with their own credentials, not a secret made from them.
SESSION_FROM = ("password", "oidc")


def user_pb(user: User, roles: list[Role] = ()) -> pb.User:
    return pb.User(id=user.id, username=user.username, is_admin=user.is_admin, roles=[role_pb(r) for r in roles])


def grant_pb(grant: RolePermission) -> pb.RolePermission:
    return pb.RolePermission(id=grant.id, role_id=grant.role_id, resource_type=grant.resource_type,
                             resource_pattern=grant.resource_pattern, permission=grant.permission)


def role_pb(role: Role) -> pb.Role:
    return pb.Role(id=role.id, name=role.name, workspace=role.workspace, description=role.description,
                   permissions=[grant_pb(g) for g in role.permissions])


def token_pb(token: TokenInfo) -> pb.AccessToken:
    return pb.AccessToken(id=token.id, name=token.name, created_ms=token.created_ms, expires_ms=token.expires_ms or 0,
                          last_used_ms=token.last_used_ms or 0)


def denied(what: str) -> PermissionDenied:
    return PermissionDenied(f"Permission denied: {what}")


# The methods after which what a process has cached may be stale: the verified credentials too (True), or
# only the permissions looked up (False).
CHANGING = {
    "UpdateUserPassword": True, "UpdateUserAdmin": True, "DeleteUser": True, "RevokeAccessToken": True, "EndSession": True,
    **dict.fromkeys(("GrantUserPermission", "RevokeUserPermission", "DeleteRole", "AddRolePermission",
                     "RemoveRolePermission", "UpdateRolePermission", "AssignRole", "UnassignRole"), False),
}


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, store: IdentityStore, auth_enabled: bool, changed: Callable[[bool], None] | None = None):
        """`changed(credentials)`: called after each change (CHANGING), e.g. to drop this process's caches at once rather
        than when they expire."""
        self.store = store
        self.auth_enabled = auth_enabled
        if changed is not None:
            for name, credentials in CHANGING.items():
                setattr(self, name, _then(getattr(self, name), changed, credentials))

    # ------------------------------------------------------------ who calls

    def _caller(self) -> Identity:
        found = caller.current()
        if found is not None:
            return found
        if self.auth_enabled:
            raise Unauthenticated("You are not authenticated: sign in with a username and password or a token")
        return ANONYMOUS_ADMIN

    async def _is_manager(self, who: Identity) -> bool:
        """An admin, or an admin of the (one, default) workspace."""
        return who.is_admin or await self.store.is_workspace_admin(who)

    async def _require_admin(self, who: Identity, what: str, workspace_admins: bool = False) -> None:
        if who.is_admin or (workspace_admins and await self.store.is_workspace_admin(who)):
            return
        raise denied(f"{what} needs an admin" + (" or a workspace admin" if workspace_admins else ""))

    async def _require_self_or_manager(self, who: Identity, username: str, what: str) -> None:
        if who.username != username and not await self._is_manager(who):
            raise denied(f"{what} of another user needs an admin or a workspace admin")

    async def _require_role_manager(self, who: Identity, role_id: int) -> None:
        if who.is_admin:
            return
        role = await self._role_or_denied(role_id)
        if not (role.workspace == DEFAULT_WORKSPACE and await self.store.is_workspace_admin(who)):
            raise denied(f"managing role {role_id} needs an admin or an admin of its workspace")

    async def _role_or_denied(self, role_id: int) -> Role:
        try:
            return await self.store.get_role(role_id)
        except NotFound:  # not telling a non-admin which roles exist
            raise denied(f"role {role_id}") from None

    async def _require_role_reader(self, who: Identity, role_id: int) -> None:
        if who.is_admin:
            return
        role = await self._role_or_denied(role_id)
        if role.workspace not in {r.workspace for r in await self.store.list_user_roles(who.username)}:
            raise denied(f"reading role {role_id} needs a role in its workspace")

    def _token_owner(self, who: Identity, username: str) -> str:
        if username and username != who.username:
            if not who.is_admin:
                raise denied("the tokens of another user need an admin")
            return username
        if who.user_id is None:
            raise InvalidArgument("username: name the user whose tokens these are")
        return who.username

    # ------------------------------------------------------------ users

    async def CreateUser(self, request, context):
        await self._require_admin(self._caller(), "creating a user", workspace_admins=True)
        return pb.UserResponse(user=user_pb(await self.store.create_user(request.username, request.password)))

    async def GetUser(self, request, context):
        await self._require_self_or_manager(self._caller(), request.username, "reading the user")
        return pb.UserResponse(user=user_pb(await self.store.get_user(request.username)))

    async def ListUsers(self, request, context):
        who = self._caller()
        roles = await self.store.list_users_roles()
        manager = await self._is_manager(who)
        return pb.ListUsersResponse(users=[
            user_pb(u, roles.get(u.id, []) if manager or u.username == who.username else [])
            for u in await self.store.list_users()
        ])

    async def GetCurrentUser(self, request, context):
        who = self._caller()
        if who.user_id is None:
            return pb.GetCurrentUserResponse(user=pb.User(username=who.username, is_admin=who.is_admin))
        user = await self.store.get_user(who.username)
        return pb.GetCurrentUserResponse(user=user_pb(user), is_basic_auth=user.has_password and who.via != "oidc")

    async def UpdateUserPassword(self, request, context):
        who = self._caller()
        if who.username == request.username:  # self-service: the current password, as MLflow asks
            if not request.current_password:
                raise InvalidArgument("Current password is required when changing your own password.")
            if await self.store.verify_password(who.username, request.current_password) is None:
                raise InvalidArgument("Current password does not match.")
            if request.password == request.current_password:
                raise InvalidArgument("New password must differ from the current password.")
        else:
            await self._require_admin(who, "changing another user's password")
        await self.store.update_password(request.username, request.password)
        return EMPTY

    async def UpdateUserAdmin(self, request, context):
        await self._require_admin(self._caller(), "changing whether a user is an admin")
        await self.store.update_admin(request.username, request.is_admin)
        return EMPTY

    async def DeleteUser(self, request, context):
        who = self._caller()
        await self._require_admin(who, "deleting a user")
        if request.username == who.username:
            raise InvalidArgument("Users cannot delete their own account. Ask another admin to delete this user instead.")
        await self.store.delete_user(request.username)
        return EMPTY

    # ------------------------------------------------------------ per-user grants

    async def _require_resource_manager(self, who: Identity, resource_type: str, resource_id: str) -> None:
        if resource_id == rules.WILDCARD:
            rules.validate_resource_type(resource_type)
            await self._require_admin(who, f"a grant on every {resource_type}", workspace_admins=True)
        elif not (await self.store.permission(who, resource_type, resource_id)).allows(Permission.MANAGE):
            raise denied(f"managing the grants on {resource_type} {resource_id!r} needs MANAGE on it")

    async def GrantUserPermission(self, request, context):
        await self._require_resource_manager(self._caller(), request.resource_type, request.resource_id)
        await self.store.grant(request.username, request.resource_type, request.resource_id, request.permission)
        return EMPTY

    async def RevokeUserPermission(self, request, context):
        await self._require_resource_manager(self._caller(), request.resource_type, request.resource_id)
        await self.store.revoke(request.username, request.resource_type, request.resource_id)
        return EMPTY

    async def GetUserPermission(self, request, context):
        await self._require_self_or_manager(self._caller(), request.username, "the permissions")
        user = await self.store.get_user(request.username)
        permission = await self.store.permission(Identity(user.username, user.id, user.is_admin),
                                                 request.resource_type, request.resource_id)
        return pb.GetUserPermissionResponse(allowed=permission.allows(Permission.USE), permission=permission.name)

    async def _permissions(self, username: str) -> pb.ListUserPermissionsResponse:
        is_admin, grants = await self.store.list_user_permissions(username)
        return pb.ListUserPermissionsResponse(is_admin=is_admin, permissions=[
            pb.UserPermission(role_id=g.role_id, role_name=g.role_name, workspace=g.workspace,
                              resource_type=g.resource_type, resource_pattern=g.resource_pattern, permission=g.permission)
            for g in grants
        ])

    async def ListUserPermissions(self, request, context):
        await self._require_self_or_manager(self._caller(), request.username, "the permissions")
        return await self._permissions(request.username)

    async def ListCurrentUserPermissions(self, request, context):
        who = self._caller()
        if who.user_id is None:
            return pb.ListUserPermissionsResponse(is_admin=who.is_admin)
        return await self._permissions(who.username)

    # ------------------------------------------------------------ roles

    async def CreateRole(self, request, context):
        who = self._caller()
        if not (who.is_admin or (request.workspace == DEFAULT_WORKSPACE and await self.store.is_workspace_admin(who))):
            raise denied("creating a role needs an admin or an admin of its workspace")
        if not request.workspace.strip():
            raise InvalidArgument("Workspace cannot be empty.")
        description = request.description if request.HasField("description") else None
        return pb.RoleResponse(role=role_pb(await self.store.create_role(request.name, request.workspace, description)))

    async def GetRole(self, request, context):
        await self._require_role_reader(self._caller(), request.role_id)
        return pb.RoleResponse(role=role_pb(await self.store.get_role(request.role_id)))

    async def ListRoles(self, request, context):
        who = self._caller()
        workspaces = [w for w in request.workspace]
        if any(not w.strip() for w in workspaces):
            raise InvalidArgument("Parameter 'workspace' must be a non-empty string when provided.")
        if not who.is_admin:
            mine = {r.workspace for r in await self.store.list_user_roles(who.username)}
            if not workspaces or not set(workspaces) <= mine:
                raise denied("listing roles needs an admin, or naming workspaces you have a role in")
        return pb.ListRolesResponse(roles=[role_pb(r) for r in await self.store.list_roles(workspaces or None)])

    async def UpdateRole(self, request, context):
        await self._require_role_manager(self._caller(), request.role_id)
        role = await self.store.update_role(request.role_id, request.name if request.HasField("name") else None,
                                            request.description if request.HasField("description") else None)
        return pb.RoleResponse(role=role_pb(role))

    async def DeleteRole(self, request, context):
        await self._require_role_manager(self._caller(), request.role_id)
        await self.store.delete_role(request.role_id)
        return EMPTY

    async def AddRolePermission(self, request, context):
        await self._require_role_manager(self._caller(), request.role_id)
        grant = await self.store.add_role_permission(request.role_id, request.resource_type, request.resource_pattern,
                                                     request.permission)
        return pb.RolePermissionResponse(role_permission=grant_pb(grant))

    async def _grant_of_managed_role(self, role_permission_id: int) -> None:
        who = self._caller()
        try:
            grant = await self.store.get_role_permission(role_permission_id)
        except NotFound:
            if who.is_admin:
                raise
            raise denied(f"role permission {role_permission_id}") from None
        await self._require_role_manager(who, grant.role_id)

    async def RemoveRolePermission(self, request, context):
        await self._grant_of_managed_role(request.role_permission_id)
        await self.store.remove_role_permission(request.role_permission_id)
        return EMPTY

    async def ListRolePermissions(self, request, context):
        await self._require_role_reader(self._caller(), request.role_id)
        grants = await self.store.list_role_permissions(request.role_id)
        return pb.ListRolePermissionsResponse(role_permissions=[grant_pb(g) for g in grants])

    async def UpdateRolePermission(self, request, context):
        await self._grant_of_managed_role(request.role_permission_id)
        grant = await self.store.update_role_permission(request.role_permission_id, request.permission)
        return pb.RolePermissionResponse(role_permission=grant_pb(grant))

    async def AssignRole(self, request, context):
        await self._require_role_manager(self._caller(), request.role_id)
        found = await self.store.assign_role(request.username, request.role_id)
        return pb.RoleAssignmentResponse(assignment=pb.RoleAssignment(id=found.id, user_id=found.user_id,
                                                                      role_id=found.role_id))

    async def UnassignRole(self, request, context):
        await self._require_role_manager(self._caller(), request.role_id)
        await self.store.unassign_role(request.username, request.role_id)
        return EMPTY

    async def ListUserRoles(self, request, context):
        await self._require_self_or_manager(self._caller(), request.username, "the roles")
        return pb.ListRolesResponse(roles=[role_pb(r) for r in await self.store.list_user_roles(request.username)])

    async def ListRoleUsers(self, request, context):
        await self._require_role_manager(self._caller(), request.role_id)
        found = await self.store.list_role_users(request.role_id)
        return pb.ListRoleUsersResponse(assignments=[pb.RoleAssignment(id=a.id, user_id=a.user_id, role_id=a.role_id)
                                                     for a in found])

    # ------------------------------------------------------------ access tokens

    async def CreateAccessToken(self, request, context):
        owner = await self.store.get_user(self._token_owner(self._caller(), request.username))
        if request.expires_in_seconds < 0:
            raise InvalidArgument("expires_in_seconds must be positive, or 0 for a token that never expires")
        expires = now_ms() + request.expires_in_seconds * 1000 if request.expires_in_seconds else None
        token, secret = await self.store.create_token(owner.id, request.name, expires)
        return pb.CreateAccessTokenResponse(token=token_pb(token), secret=secret)

    async def ListAccessTokens(self, request, context):
        owner = await self.store.get_user(self._token_owner(self._caller(), request.username))
        return pb.ListAccessTokensResponse(tokens=[token_pb(t) for t in await self.store.list_tokens(owner.id)])

    async def RevokeAccessToken(self, request, context):
        owner = await self.store.get_user(self._token_owner(self._caller(), request.username))
        if bool(request.name) == bool(request.id):
            raise InvalidArgument("give the token's name or its id (one of them)")
        await self.store.revoke_token(owner.id, request.name or request.id)
        return EMPTY

    # ------------------------------------------------------------ UI sessions

    async def CreateSession(self, request, context):
        who = self._caller()
        if who.user_id is None:
            raise FailedPrecondition("sessions need authentication on (mlgrid server --auth, or MLGRID_AUTH=on)")
        if who.via not in SESSION_FROM:
            raise PermissionDenied(f"a session is opened with a password or an OIDC token, not with a {who.via}")
        if not 0 < request.expires_in_seconds <= MAX_SESSION_SECONDS:
            raise InvalidArgument(f"expires_in_seconds must be more than 0 and at most {MAX_SESSION_SECONDS}")
        expires = now_ms() + request.expires_in_seconds * 1000
        session, secret = await self.store.create_token(who.user_id, f"{who.via} sign-in", expires, tokens.SESSION)
        return pb.CreateSessionResponse(secret=secret, expires_ms=session.expires_ms, username=who.username)

    async def EndSession(self, request, context):
        who = self._caller()
        scheme, _, secret = caller.CREDENTIALS.get().partition(" ")
        if who.via != tokens.SESSION or scheme.lower() != "bearer":
            raise InvalidArgument("EndSession ends the session it is called with: send the session's secret as Bearer")
        await self.store.end_session(secret.strip())
        return EMPTY

    # ------------------------------------------------------------ grants on one resource

    async def ListResourcePermissions(self, request, context):
        if not request.resource_id or request.resource_id == rules.WILDCARD:
            raise InvalidArgument("resource_id: name one resource (an experiment id, a model name)")
        await self._require_resource_manager(self._caller(), request.resource_type, request.resource_id)
        found = await self.store.list_resource_permissions(request.resource_type, request.resource_id)
        return pb.ListResourcePermissionsResponse(permissions=[
            pb.ResourcePermission(username=username, permission=permission) for username, permission in found
        ])

    # ------------------------------------------------------------ access checks

    async def CheckAccess(self, request, context):
        who = self._caller()
        if not request.resource_type:  # only: who is this?
            return pb.CheckAccessResponse(allowed=True, visible=True, username=who.username, is_admin=who.is_admin)
        needed = rules.parse_permission(request.permission)
        permission = await self.store.permission(who, request.resource_type, request.resource_id)
        return pb.CheckAccessResponse(allowed=permission.allows(needed), visible=permission.allows(Permission.READ),
                                      username=who.username, is_admin=who.is_admin)


def _then(method, changed: Callable[[bool], None], credentials: bool):
    async def call(request, context):
        response = await method(request, context)
        changed(credentials)
        return response

    return call
