from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class User(_message.Message):
    __slots__ = ("id", "username", "is_admin", "roles")
    ID_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    IS_ADMIN_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    id: int
    username: str
    is_admin: bool
    roles: _containers.RepeatedCompositeFieldContainer[Role]
    def __init__(self, id: _Optional[int] = ..., username: _Optional[str] = ..., is_admin: _Optional[bool] = ..., roles: _Optional[_Iterable[_Union[Role, _Mapping]]] = ...) -> None: ...

class RolePermission(_message.Message):
    __slots__ = ("id", "role_id", "resource_type", "resource_pattern", "permission")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_PATTERN_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    id: int
    role_id: int
    resource_type: str
    resource_pattern: str
    permission: str
    def __init__(self, id: _Optional[int] = ..., role_id: _Optional[int] = ..., resource_type: _Optional[str] = ..., resource_pattern: _Optional[str] = ..., permission: _Optional[str] = ...) -> None: ...

class Role(_message.Message):
    __slots__ = ("id", "name", "workspace", "description", "permissions")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    workspace: str
    description: str
    permissions: _containers.RepeatedCompositeFieldContainer[RolePermission]
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., workspace: _Optional[str] = ..., description: _Optional[str] = ..., permissions: _Optional[_Iterable[_Union[RolePermission, _Mapping]]] = ...) -> None: ...

class RoleAssignment(_message.Message):
    __slots__ = ("id", "user_id", "role_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    user_id: int
    role_id: int
    def __init__(self, id: _Optional[int] = ..., user_id: _Optional[int] = ..., role_id: _Optional[int] = ...) -> None: ...

class UserPermission(_message.Message):
    __slots__ = ("role_id", "role_name", "workspace", "resource_type", "resource_pattern", "permission")
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_PATTERN_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    role_id: int
    role_name: str
    workspace: str
    resource_type: str
    resource_pattern: str
    permission: str
    def __init__(self, role_id: _Optional[int] = ..., role_name: _Optional[str] = ..., workspace: _Optional[str] = ..., resource_type: _Optional[str] = ..., resource_pattern: _Optional[str] = ..., permission: _Optional[str] = ...) -> None: ...

class AccessToken(_message.Message):
    __slots__ = ("id", "name", "created_ms", "expires_ms", "last_used_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_MS_FIELD_NUMBER: _ClassVar[int]
    id: int
    name: str
    created_ms: int
    expires_ms: int
    last_used_ms: int
    def __init__(self, id: _Optional[int] = ..., name: _Optional[str] = ..., created_ms: _Optional[int] = ..., expires_ms: _Optional[int] = ..., last_used_ms: _Optional[int] = ...) -> None: ...

class CreateUserRequest(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class UserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class GetUserRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class GetCurrentUserRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCurrentUserResponse(_message.Message):
    __slots__ = ("user", "is_basic_auth")
    USER_FIELD_NUMBER: _ClassVar[int]
    IS_BASIC_AUTH_FIELD_NUMBER: _ClassVar[int]
    user: User
    is_basic_auth: bool
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., is_basic_auth: _Optional[bool] = ...) -> None: ...

class UpdateUserPasswordRequest(_message.Message):
    __slots__ = ("username", "password", "current_password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    current_password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., current_password: _Optional[str] = ...) -> None: ...

class UpdateUserAdminRequest(_message.Message):
    __slots__ = ("username", "is_admin")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    IS_ADMIN_FIELD_NUMBER: _ClassVar[int]
    username: str
    is_admin: bool
    def __init__(self, username: _Optional[str] = ..., is_admin: _Optional[bool] = ...) -> None: ...

class DeleteUserRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class UserPermissionRequest(_message.Message):
    __slots__ = ("username", "resource_type", "resource_id", "permission")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    username: str
    resource_type: str
    resource_id: str
    permission: str
    def __init__(self, username: _Optional[str] = ..., resource_type: _Optional[str] = ..., resource_id: _Optional[str] = ..., permission: _Optional[str] = ...) -> None: ...

class GetUserPermissionResponse(_message.Message):
    __slots__ = ("allowed", "permission")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    permission: str
    def __init__(self, allowed: _Optional[bool] = ..., permission: _Optional[str] = ...) -> None: ...

class ListUserPermissionsRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class ListCurrentUserPermissionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUserPermissionsResponse(_message.Message):
    __slots__ = ("is_admin", "permissions")
    IS_ADMIN_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    is_admin: bool
    permissions: _containers.RepeatedCompositeFieldContainer[UserPermission]
    def __init__(self, is_admin: _Optional[bool] = ..., permissions: _Optional[_Iterable[_Union[UserPermission, _Mapping]]] = ...) -> None: ...

class CreateRoleRequest(_message.Message):
    __slots__ = ("workspace", "name", "description")
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    workspace: str
    name: str
    description: str
    def __init__(self, workspace: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class RoleResponse(_message.Message):
    __slots__ = ("role",)
    ROLE_FIELD_NUMBER: _ClassVar[int]
    role: Role
    def __init__(self, role: _Optional[_Union[Role, _Mapping]] = ...) -> None: ...

class RoleIdRequest(_message.Message):
    __slots__ = ("role_id",)
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    role_id: int
    def __init__(self, role_id: _Optional[int] = ...) -> None: ...

class ListRolesRequest(_message.Message):
    __slots__ = ("workspace",)
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    workspace: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, workspace: _Optional[_Iterable[str]] = ...) -> None: ...

class ListRolesResponse(_message.Message):
    __slots__ = ("roles",)
    ROLES_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedCompositeFieldContainer[Role]
    def __init__(self, roles: _Optional[_Iterable[_Union[Role, _Mapping]]] = ...) -> None: ...

class UpdateRoleRequest(_message.Message):
    __slots__ = ("role_id", "name", "description")
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    role_id: int
    name: str
    description: str
    def __init__(self, role_id: _Optional[int] = ..., name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class AddRolePermissionRequest(_message.Message):
    __slots__ = ("role_id", "resource_type", "resource_pattern", "permission")
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_PATTERN_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    role_id: int
    resource_type: str
    resource_pattern: str
    permission: str
    def __init__(self, role_id: _Optional[int] = ..., resource_type: _Optional[str] = ..., resource_pattern: _Optional[str] = ..., permission: _Optional[str] = ...) -> None: ...

class RolePermissionResponse(_message.Message):
    __slots__ = ("role_permission",)
    ROLE_PERMISSION_FIELD_NUMBER: _ClassVar[int]
    role_permission: RolePermission
    def __init__(self, role_permission: _Optional[_Union[RolePermission, _Mapping]] = ...) -> None: ...

class RemoveRolePermissionRequest(_message.Message):
    __slots__ = ("role_permission_id",)
    ROLE_PERMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    role_permission_id: int
    def __init__(self, role_permission_id: _Optional[int] = ...) -> None: ...

class UpdateRolePermissionRequest(_message.Message):
    __slots__ = ("role_permission_id", "permission")
    ROLE_PERMISSION_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    role_permission_id: int
    permission: str
    def __init__(self, role_permission_id: _Optional[int] = ..., permission: _Optional[str] = ...) -> None: ...

class ListRolePermissionsResponse(_message.Message):
    __slots__ = ("role_permissions",)
    ROLE_PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    role_permissions: _containers.RepeatedCompositeFieldContainer[RolePermission]
    def __init__(self, role_permissions: _Optional[_Iterable[_Union[RolePermission, _Mapping]]] = ...) -> None: ...

class RoleAssignmentRequest(_message.Message):
    __slots__ = ("username", "role_id")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_ID_FIELD_NUMBER: _ClassVar[int]
    username: str
    role_id: int
    def __init__(self, username: _Optional[str] = ..., role_id: _Optional[int] = ...) -> None: ...

class RoleAssignmentResponse(_message.Message):
    __slots__ = ("assignment",)
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    assignment: RoleAssignment
    def __init__(self, assignment: _Optional[_Union[RoleAssignment, _Mapping]] = ...) -> None: ...

class ListUserRolesRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class ListRoleUsersResponse(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[RoleAssignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[RoleAssignment, _Mapping]]] = ...) -> None: ...

class CreateAccessTokenRequest(_message.Message):
    __slots__ = ("name", "expires_in_seconds", "username")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    expires_in_seconds: int
    username: str
    def __init__(self, name: _Optional[str] = ..., expires_in_seconds: _Optional[int] = ..., username: _Optional[str] = ...) -> None: ...

class CreateAccessTokenResponse(_message.Message):
    __slots__ = ("token", "secret")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    token: AccessToken
    secret: str
    def __init__(self, token: _Optional[_Union[AccessToken, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListAccessTokensRequest(_message.Message):
    __slots__ = ("username",)
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    username: str
    def __init__(self, username: _Optional[str] = ...) -> None: ...

class ListAccessTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[AccessToken]
    def __init__(self, tokens: _Optional[_Iterable[_Union[AccessToken, _Mapping]]] = ...) -> None: ...

class RevokeAccessTokenRequest(_message.Message):
    __slots__ = ("name", "id", "username")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    id: int
    username: str
    def __init__(self, name: _Optional[str] = ..., id: _Optional[int] = ..., username: _Optional[str] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("expires_in_seconds",)
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    expires_in_seconds: int
    def __init__(self, expires_in_seconds: _Optional[int] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("secret", "expires_ms", "username")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    secret: str
    expires_ms: int
    username: str
    def __init__(self, secret: _Optional[str] = ..., expires_ms: _Optional[int] = ..., username: _Optional[str] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListResourcePermissionsRequest(_message.Message):
    __slots__ = ("resource_type", "resource_id")
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    resource_type: str
    resource_id: str
    def __init__(self, resource_type: _Optional[str] = ..., resource_id: _Optional[str] = ...) -> None: ...

class ResourcePermission(_message.Message):
    __slots__ = ("username", "permission")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    username: str
    permission: str
    def __init__(self, username: _Optional[str] = ..., permission: _Optional[str] = ...) -> None: ...

class ListResourcePermissionsResponse(_message.Message):
    __slots__ = ("permissions",)
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    permissions: _containers.RepeatedCompositeFieldContainer[ResourcePermission]
    def __init__(self, permissions: _Optional[_Iterable[_Union[ResourcePermission, _Mapping]]] = ...) -> None: ...

class CheckAccessRequest(_message.Message):
    __slots__ = ("resource_type", "resource_id", "permission")
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    PERMISSION_FIELD_NUMBER: _ClassVar[int]
    resource_type: str
    resource_id: str
    permission: str
    def __init__(self, resource_type: _Optional[str] = ..., resource_id: _Optional[str] = ..., permission: _Optional[str] = ...) -> None: ...

class CheckAccessResponse(_message.Message):
    __slots__ = ("allowed", "visible", "username", "is_admin")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    IS_ADMIN_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    visible: bool
    username: str
    is_admin: bool
    def __init__(self, allowed: _Optional[bool] = ..., visible: _Optional[bool] = ..., username: _Optional[str] = ..., is_admin: _Optional[bool] = ...) -> None: ...
