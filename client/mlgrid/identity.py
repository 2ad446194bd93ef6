"""IdentityClient: users, per-user grants, roles and access tokens over IdentityService, with the names and
arguments of MLflow 3.17's AuthServiceClient (`mlflow.server.get_app_client("basic-auth", ...)`).

Reached as `MlgridClient(...).identity`, on the client's channel and credentials:

    identity = mlgrid.MlgridClient("grpc://mlgrid:50051", username="admin", password="...").identity
    identity.create_user("alice", "a long password")
    identity.grant_user_permission("alice", "experiment", "3", "EDIT")
    token = identity.create_access_token("ci", expires="30d")   # token.secret: shown this once

Permissions are MLflow's names: READ, USE, EDIT, MANAGE, DENY (and NO_PERMISSIONS, what is left without
a grant). Every method raises MlgridException when the call fails, as MlgridClient's do.
"""
from __future__ import annotations

import datetime
import re
from collections.abc import Callable

import grpc

from mlgrid.entities import (
    AccessToken,
    GetUserPermissionResult,
    Role,
    RoleAssignment,
    RolePermission,
    User,
    UserPermission,
    UserPermissions,
)
from mlgrid.exceptions import MlgridException
from mlgrid.v1 import identity_pb2 as pb
from mlgrid.v1 import identity_pb2_grpc

DEFAULT_WORKSPACE = "default"
# What a grant may name: experiments and registered models by id (or "*"), the rest by "*" only.
RESOURCE_TYPES = ("experiment", "registered_model", "run", "logged_model", "registered_model_version", "workspace")
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "DENY")
NEVER = "never"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(expires: str | datetime.timedelta | None) -> int:
    """A token's lifetime in seconds, 0 for one that never expires: "30d", "12h", "90m", "45s", "2w",
    "never" (or None), or a timedelta."""
    if expires is None:
        return 0
    if isinstance(expires, datetime.timedelta):
        seconds = int(expires.total_seconds())
    elif expires.strip().lower() == NEVER:
        return 0
    else:
        match = _DURATION.match(expires)
        if match is None:
            raise MlgridException(
                f"expires: {expires!r} is not a duration: give a number and a unit (s, m, h, d or w), e.g. 30d, "
                f"12h or 90m, or {NEVER!r}", grpc.StatusCode.INVALID_ARGUMENT,
            )
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if seconds <= 0:
        raise MlgridException(f"expires: the lifetime must be positive, or {NEVER!r}", grpc.StatusCode.INVALID_ARGUMENT)
    return seconds


class IdentityClient:
    """The IdentityService on a channel (the tracking client's), whose calls carry its credentials."""

    def __init__(self, channel: grpc.Channel, unary: Callable):
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)
        # MlgridClient._unary(method, request, idempotent): one call, retried while the service is UNAVAILABLE
        # when it is idempotent.
        self._unary = unary

    # users

    def create_user(self, username: str, password: str) -> User:
        """A new user (admins only); the password must be at least 12 characters."""
        request = pb.CreateUserRequest(username=username, password=password)
        return User.from_proto(self._unary(self._stub.CreateUser, request, idempotent=False).user)

    def get_user(self, username: str) -> User:
        request = pb.GetUserRequest(username=username)
        return User.from_proto(self._unary(self._stub.GetUser, request, idempotent=True).user)

    def list_users(self) -> list[User]:
        response = self._unary(self._stub.ListUsers, pb.ListUsersRequest(), idempotent=True)
        return [User.from_proto(u) for u in response.users]

    def get_current_user(self) -> User:
        """Who the credentials sign in as."""
        response = self._unary(self._stub.GetCurrentUser, pb.GetCurrentUserRequest(), idempotent=True)
        return User.from_proto(response.user)

    def update_user_password(self, username: str, password: str, current_password: str | None = None) -> None:
        """Set a user's password: admins anyone's; users their own, giving `current_password`."""
        request = pb.UpdateUserPasswordRequest(username=username, password=password,
                                               current_password=current_password or "")
        self._unary(self._stub.UpdateUserPassword, request, idempotent=False)

    def update_user_admin(self, username: str, is_admin: bool) -> None:
        request = pb.UpdateUserAdminRequest(username=username, is_admin=is_admin)
        self._unary(self._stub.UpdateUserAdmin, request, idempotent=True)

    def delete_user(self, username: str) -> None:
        self._unary(self._stub.DeleteUser, pb.DeleteUserRequest(username=username), idempotent=False)

    # per-user grants

    def grant_user_permission(self, username: str, resource_type: str, resource_id: str, permission: str) -> None:
        """Grant `permission` on one resource (an experiment id, a model name) or "*" (needs MANAGE on it)."""
        request = pb.UserPermissionRequest(username=username, resource_type=resource_type, resource_id=str(resource_id),
                                           permission=permission)
        self._unary(self._stub.GrantUserPermission, request, idempotent=True)

    def revoke_user_permission(self, username: str, resource_type: str, resource_id: str) -> None:
        request = pb.UserPermissionRequest(username=username, resource_type=resource_type, resource_id=str(resource_id))
        self._unary(self._stub.RevokeUserPermission, request, idempotent=False)

    def get_user_permission(self, username: str, resource_type: str, resource_id: str) -> GetUserPermissionResult:
        """The user's effective permission on the resource: their grants, roles and the default together."""
        request = pb.UserPermissionRequest(username=username, resource_type=resource_type, resource_id=str(resource_id))
        response = self._unary(self._stub.GetUserPermission, request, idempotent=True)
        return GetUserPermissionResult(response.allowed, response.permission)

    def list_user_permissions(self, username: str) -> UserPermissions:
        request = pb.ListUserPermissionsRequest(username=username)
        return _permissions(self._unary(self._stub.ListUserPermissions, request, idempotent=True))

    def list_current_user_permissions(self) -> UserPermissions:
        request = pb.ListCurrentUserPermissionsRequest()
        return _permissions(self._unary(self._stub.ListCurrentUserPermissions, request, idempotent=True))

    # roles

    def create_role(self, workspace: str, name: str, description: str | None = None) -> Role:
        request = pb.CreateRoleRequest(workspace=workspace, name=name, description=description)
        return Role.from_proto(self._unary(self._stub.CreateRole, request, idempotent=False).role)

    def get_role(self, role_id: int) -> Role:
        return Role.from_proto(self._unary(self._stub.GetRole, pb.RoleIdRequest(role_id=role_id), idempotent=True).role)

    def list_roles(self, workspace: str | None = None) -> list[Role]:
        """The roles of a workspace; of every workspace when None (admins only)."""
        request = pb.ListRolesRequest(workspace=[workspace] if workspace else [])
        return [Role.from_proto(r) for r in self._unary(self._stub.ListRoles, request, idempotent=True).roles]

    def update_role(self, role_id: int, name: str | None = None, description: str | None = None) -> Role:
        request = pb.UpdateRoleRequest(role_id=role_id, name=name, description=description)
        return Role.from_proto(self._unary(self._stub.UpdateRole, request, idempotent=True).role)

    def delete_role(self, role_id: int) -> None:
        self._unary(self._stub.DeleteRole, pb.RoleIdRequest(role_id=role_id), idempotent=False)

    def add_role_permission(self, role_id: int, resource_type: str, resource_pattern: str,
                            permission: str) -> RolePermission:
        request = pb.AddRolePermissionRequest(role_id=role_id, resource_type=resource_type,
                                              resource_pattern=str(resource_pattern), permission=permission)
        response = self._unary(self._stub.AddRolePermission, request, idempotent=False)
        return RolePermission.from_proto(response.role_permission)

    def remove_role_permission(self, role_permission_id: int) -> None:
        request = pb.RemoveRolePermissionRequest(role_permission_id=role_permission_id)
        self._unary(self._stub.RemoveRolePermission, request, idempotent=False)

    def update_role_permission(self, role_permission_id: int, permission: str) -> RolePermission:
        request = pb.UpdateRolePermissionRequest(role_permission_id=role_permission_id, permission=permission)
        response = self._unary(self._stub.UpdateRolePermission, request, idempotent=True)
        return RolePermission.from_proto(response.role_permission)

    def list_role_permissions(self, role_id: int) -> list[RolePermission]:
        response = self._unary(self._stub.ListRolePermissions, pb.RoleIdRequest(role_id=role_id), idempotent=True)
        return [RolePermission.from_proto(p) for p in response.role_permissions]

    def assign_role(self, username: str, role_id: int) -> RoleAssignment:
        request = pb.RoleAssignmentRequest(username=username, role_id=role_id)
        return RoleAssignment.from_proto(self._unary(self._stub.AssignRole, request, idempotent=False).assignment)

    def unassign_role(self, username: str, role_id: int) -> None:
        request = pb.RoleAssignmentRequest(username=username, role_id=role_id)
        self._unary(self._stub.UnassignRole, request, idempotent=False)

    def list_user_roles(self, username: str) -> list[Role]:
        response = self._unary(self._stub.ListUserRoles, pb.ListUserRolesRequest(username=username), idempotent=True)
        return [Role.from_proto(r) for r in response.roles]

    def list_role_users(self, role_id: int) -> list[RoleAssignment]:
        response = self._unary(self._stub.ListRoleUsers, pb.RoleIdRequest(role_id=role_id), idempotent=True)
        return [RoleAssignment.from_proto(a) for a in response.assignments]

    # access tokens

    def create_access_token(self, name: str, expires: str | datetime.timedelta | None = None,
                            username: str | None = None) -> AccessToken:
        """A new access token of the caller (of `username`: admins only) that expires after `expires` ("30d",
        "12h", "90m", a timedelta; None or "never": never). Its `secret` is in the answer this once: mlgrid
        keeps only its hash. Use it as MLGRID_TRACKING_TOKEN (or MLFLOW_TRACKING_TOKEN for the mlflow client)."""
        request = pb.CreateAccessTokenRequest(name=name, expires_in_seconds=parse_expiry(expires),
                                              username=username or "")
        response = self._unary(self._stub.CreateAccessToken, request, idempotent=False)
        return AccessToken.from_proto(response.token, response.secret)

    def list_access_tokens(self, username: str | None = None) -> list[AccessToken]:
        """The caller's tokens (`username`'s: admins only) that are not revoked, expired ones included."""
        request = pb.ListAccessTokensRequest(username=username or "")
        return [AccessToken.from_proto(t) for t in self._unary(self._stub.ListAccessTokens, request, idempotent=True).tokens]

    def revoke_access_token(self, name: str | None = None, token_id: int | None = None,
                            username: str | None = None) -> None:
        """Revoke one of the caller's tokens (`username`'s: admins only), by name or by id."""
        request = pb.RevokeAccessTokenRequest(name=name or "", id=token_id or 0, username=username or "")
        self._unary(self._stub.RevokeAccessToken, request, idempotent=False)


def _permissions(response: pb.ListUserPermissionsResponse) -> UserPermissions:
    return UserPermissions(response.is_admin, [UserPermission.from_proto(p) for p in response.permissions])
