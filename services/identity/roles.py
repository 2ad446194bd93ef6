"""Roles, their grants and their assignments to users, and per-user grants, as MLflow 3.17 keeps them: a
user's direct grants are rows of their synthetic role `__user_<id>__` in the default workspace, created on
their first grant; the `__user_` prefix is reserved. Part of IdentityStore (services/identity/store.py)."""
import re

from sqlalchemy import and_, delete, func, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.db.schema import role_permissions, roles, user_role_assignments, users
from services.identity import rules
from services.identity.model import (
    DEFAULT_WORKSPACE,
    WORKSPACE,
    Permission,
    Role,
    RoleAssignment,
    RolePermission,
    UserPermission,
)

SYNTHETIC_PREFIX = "__user_"
SYNTHETIC_NAME = re.compile(r"^__user_\d+__$")
MAX_ROLE_NAME, MAX_WORKSPACE, MAX_DESCRIPTION = 255, 63, 1024


def synthetic_role_name(user_id: int) -> str:
    return f"{SYNTHETIC_PREFIX}{user_id}__"


def no_user(username: str) -> NotFound:
    return NotFound(f"User with username={username} not found")


def no_role(role_id: int) -> NotFound:
    return NotFound(f"Role with id={role_id} not found")


def _role_permission(row) -> RolePermission:
    return RolePermission(row.id, row.role_id, row.resource_type, row.resource_pattern, row.permission)


def _check_role_name(name: str) -> None:
    if not name or not name.strip():
        raise InvalidArgument("Role name cannot be empty.")
    if len(name) > MAX_ROLE_NAME:
        raise InvalidArgument(f"Role name must be at most {MAX_ROLE_NAME} characters.")
    if name.startswith(SYNTHETIC_PREFIX):
        raise InvalidArgument(
            f"Role name {name!r} uses the reserved '__user_' prefix, which is held for the per-user permission "
            "representation. Choose a different name."
        )


def _check_description(description: str | None) -> None:
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise InvalidArgument(f"Role description must be at most {MAX_DESCRIPTION} characters.")


def _reject_workspace_type(resource_type: str) -> None:
    if resource_type == WORKSPACE:
        raise InvalidArgument(
            "resource_type 'workspace' is not supported by the per-user permission convenience APIs: "
            "grant it through a role (roles/permissions/add)."
        )


class RoleStore:
    """Roles, grants and assignments on the engine (IdentityStore's base)."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine

    # ------------------------------------------------------------ lookups

    @staticmethod
    async def _user_id(conn: AsyncConnection, username: str) -> int:
        user_id = (await conn.execute(select(users.c.id).where(users.c.username == username))).scalar()
        if user_id is None:
            raise no_user(username)
        return user_id

    @staticmethod
    async def _role_row(conn: AsyncConnection, role_id: int):
        row = (await conn.execute(select(roles).where(roles.c.id == role_id))).first()
        if row is None:
            raise no_role(role_id)
        return row

    @staticmethod
    async def _roles(conn: AsyncConnection, where) -> list[Role]:
        """The roles selected by `where` (a condition on roles, possibly through assignments), with their grants."""
        rows = (await conn.execute(select(roles).where(where).order_by(roles.c.id))).all()
        if not rows:
            return []
        grants: dict[int, list[RolePermission]] = {}
        found = await conn.execute(
            select(role_permissions).where(role_permissions.c.role_id.in_([r.id for r in rows]))
            .order_by(role_permissions.c.id)
        )
        for grant in found:
            grants.setdefault(grant.role_id, []).append(_role_permission(grant))
        return [Role(r.id, r.name, r.workspace, r.description, tuple(grants.get(r.id, ()))) for r in rows]

    @staticmethod
    def _assigned_to(user_id: int):
        return roles.c.id.in_(select(user_role_assignments.c.role_id).where(user_role_assignments.c.user_id == user_id))

    # ------------------------------------------------------------ roles

    async def create_role(self, name: str, workspace: str = DEFAULT_WORKSPACE, description: str | None = None) -> Role:
        _check_role_name(name)
        if not workspace or not workspace.strip() or len(workspace) > MAX_WORKSPACE:
            raise InvalidArgument(f"Workspace cannot be empty and must be at most {MAX_WORKSPACE} characters.")
        _check_description(description)
        try:
            async with self.engine.begin() as conn:
                role_id = (await conn.execute(
                    roles.insert().values(name=name, workspace=workspace, description=description)
                )).inserted_primary_key[0]
        except IntegrityError:
            raise AlreadyExists(f"Role (name={name}, workspace={workspace}) already exists.") from None
        return Role(role_id, name, workspace, description)

    async def get_role(self, role_id: int) -> Role:
        async with self.engine.connect() as conn:
            found = await self._roles(conn, roles.c.id == role_id)
        if not found:
            raise no_role(role_id)
        return found[0]

    async def list_roles(self, workspaces: list[str] | None = None) -> list[Role]:
        """Every role (None), or those of these workspaces."""
        async with self.engine.connect() as conn:
            return await self._roles(conn, true() if workspaces is None else roles.c.workspace.in_(workspaces))

    async def update_role(self, role_id: int, name: str | None = None, description: str | None = None) -> Role:
        if name is None and description is None:
            raise InvalidArgument("At least one of 'name' or 'description' must be provided to update a role.")
        if name is not None:
            _check_role_name(name)
        _check_description(description)
        values = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
        async with self.engine.begin() as conn:
            role = await self._role_row(conn, role_id)
            if name is not None and (await conn.execute(select(roles.c.id).where(
                roles.c.workspace == role.workspace, roles.c.name == name, roles.c.id != role_id
            ))).first() is not None:
                raise AlreadyExists(f"Role with name={name} already exists in workspace={role.workspace}")
            await conn.execute(update(roles).where(roles.c.id == role_id).values(**values))
        return await self.get_role(role_id)

    async def delete_role(self, role_id: int) -> None:
        """The role, its grants and its assignments (cascade)."""
        async with self.engine.begin() as conn:
            if (await conn.execute(delete(roles).where(roles.c.id == role_id))).rowcount == 0:
                raise no_role(role_id)

    # ------------------------------------------------------------ role permissions

    async def add_role_permission(
        self, role_id: int, resource_type: str, resource_pattern: str, permission: "Permission | str"
    ) -> RolePermission:
        parsed = rules.validate_grantable(resource_type, permission)
        rules.validate_pattern(resource_type, resource_pattern)
        try:
            async with self.engine.begin() as conn:
                await self._role_row(conn, role_id)
                grant_id = (await conn.execute(role_permissions.insert().values(
                    role_id=role_id, resource_type=resource_type, resource_pattern=resource_pattern,
                    permission=parsed.name,
                ))).inserted_primary_key[0]
        except IntegrityError:
            raise AlreadyExists(
                f"Role permission (role_id={role_id}, resource_type={resource_type}, "
                f"resource_pattern={resource_pattern}) already exists."
            ) from None
        return RolePermission(grant_id, role_id, resource_type, resource_pattern, parsed.name)

    async def get_role_permission(self, role_permission_id: int) -> RolePermission:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(role_permissions).where(role_permissions.c.id == role_permission_id))).first()
        if row is None:
            raise NotFound(f"Role permission with id={role_permission_id} not found")
        return _role_permission(row)

    async def remove_role_permission(self, role_permission_id: int) -> None:
        async with self.engine.begin() as conn:
            if (await conn.execute(delete(role_permissions).where(role_permissions.c.id == role_permission_id))).rowcount == 0:
                raise NotFound(f"Role permission with id={role_permission_id} not found")

    async def update_role_permission(self, role_permission_id: int, permission: "Permission | str") -> RolePermission:
        current = await self.get_role_permission(role_permission_id)
        parsed = rules.validate_grantable(current.resource_type, permission)
        async with self.engine.begin() as conn:
            await conn.execute(update(role_permissions).where(role_permissions.c.id == role_permission_id)
                               .values(permission=parsed.name))
        return await self.get_role_permission(role_permission_id)

    async def list_role_permissions(self, role_id: int) -> list[RolePermission]:
        return list((await self.get_role(role_id)).permissions)

    # ------------------------------------------------------------ assignments

    async def assign_role(self, username: str, role_id: int) -> RoleAssignment:
        try:
            async with self.engine.begin() as conn:
                user_id = await self._user_id(conn, username)
                await self._role_row(conn, role_id)
                assignment_id = (await conn.execute(
                    user_role_assignments.insert().values(user_id=user_id, role_id=role_id)
                )).inserted_primary_key[0]
        except IntegrityError:
            raise AlreadyExists(f"User role assignment (user_id={user_id}, role_id={role_id}) already exists") from None
        return RoleAssignment(assignment_id, user_id, role_id)

    async def unassign_role(self, username: str, role_id: int) -> None:
        async with self.engine.begin() as conn:
            user_id = await self._user_id(conn, username)
            gone = await conn.execute(delete(user_role_assignments).where(
                user_role_assignments.c.user_id == user_id, user_role_assignments.c.role_id == role_id
            ))
            if gone.rowcount == 0:
                raise NotFound(f"User role assignment (user_id={user_id}, role_id={role_id}) not found")

    async def list_user_roles(self, username: str) -> list[Role]:
        async with self.engine.connect() as conn:
            return await self._roles(conn, self._assigned_to(await self._user_id(conn, username)))

    async def list_role_users(self, role_id: int) -> list[RoleAssignment]:
        async with self.engine.connect() as conn:
            await self._role_row(conn, role_id)
            rows = await conn.execute(select(user_role_assignments).where(user_role_assignments.c.role_id == role_id)
                                      .order_by(user_role_assignments.c.id))
            return [RoleAssignment(r.id, r.user_id, r.role_id) for r in rows]

    async def list_users_roles(self) -> dict[int, list[Role]]:
        """Every user's roles, by user id, in two queries (for the list of users)."""
        async with self.engine.connect() as conn:
            assigned = (await conn.execute(select(user_role_assignments.c.user_id, user_role_assignments.c.role_id))).all()
            by_id = {role.id: role for role in await self._roles(conn, roles.c.id.in_({r.role_id for r in assigned}))}
        found: dict[int, list[Role]] = {}
        for user_id, role_id in assigned:
            found.setdefault(user_id, []).append(by_id[role_id])
        return found

    # ------------------------------------------------------------ per-user grants

    async def _synthetic_role(self, conn: AsyncConnection, user_id: int) -> int:
        """The id of the user's own role in the default workspace, created (and assigned) on first use."""
        name = synthetic_role_name(user_id)
        where = and_(roles.c.workspace == DEFAULT_WORKSPACE, roles.c.name == name)
        role_id = (await conn.execute(select(roles.c.id).where(where))).scalar()
        if role_id is None:
            try:
                async with conn.begin_nested():
                    role_id = (await conn.execute(
                        roles.insert().values(name=name, workspace=DEFAULT_WORKSPACE)
                    )).inserted_primary_key[0]
            except IntegrityError:  # created by a concurrent grant
                role_id = (await conn.execute(select(roles.c.id).where(where))).scalar_one()
        assigned = select(user_role_assignments.c.id).where(
            user_role_assignments.c.user_id == user_id, user_role_assignments.c.role_id == role_id)
        if (await conn.execute(assigned)).first() is None:
            try:
                async with conn.begin_nested():
                    await conn.execute(user_role_assignments.insert().values(user_id=user_id, role_id=role_id))
            except IntegrityError:
                pass
        return role_id

    async def _upsert_user_grant(self, conn: AsyncConnection, user_id: int, resource_type: str, resource_id: str,
                                 permission: Permission, replace: bool) -> None:
        role_id = await self._synthetic_role(conn, user_id)
        key = and_(role_permissions.c.role_id == role_id, role_permissions.c.resource_type == resource_type,
                   role_permissions.c.resource_pattern == resource_id)
        if (await conn.execute(select(role_permissions.c.id).where(key))).first() is not None:
            if not replace:
                raise AlreadyExists(f"Permission for user_id={user_id} on resource_type={resource_type}, "
                                    f"resource_id={resource_id} already exists.")
            await conn.execute(update(role_permissions).where(key).values(permission=permission.name))
            return
        await conn.execute(role_permissions.insert().values(
            role_id=role_id, resource_type=resource_type, resource_pattern=resource_id, permission=permission.name))

    async def grant(self, username: str, resource_type: str, resource_id: str, permission: "Permission | str") -> None:
        """A direct grant (MLflow's users/permissions/grant); AlreadyExists if the user has one on that key."""
        _reject_workspace_type(resource_type)
        rules.validate_pattern(resource_type, resource_id)
        parsed = rules.validate_grantable(resource_type, permission)
        try:
            async with self.engine.begin() as conn:
                user_id = await self._user_id(conn, username)
                await self._upsert_user_grant(conn, user_id, resource_type, resource_id, parsed, replace=False)
        except (AlreadyExists, IntegrityError):
            raise AlreadyExists(f"Permission for user={username} on resource_type={resource_type}, "
                                f"resource_id={resource_id} already exists.") from None

    async def revoke(self, username: str, resource_type: str, resource_id: str) -> None:
        _reject_workspace_type(resource_type)
        rules.validate_resource_type(resource_type)
        async with self.engine.begin() as conn:
            user_id = await self._user_id(conn, username)
            own = select(roles.c.id).where(roles.c.workspace == DEFAULT_WORKSPACE,
                                           roles.c.name == synthetic_role_name(user_id)).scalar_subquery()
            gone = await conn.execute(delete(role_permissions).where(
                role_permissions.c.role_id == own, role_permissions.c.resource_type == resource_type,
                role_permissions.c.resource_pattern == resource_id,
            ))
            if gone.rowcount == 0:
                raise NotFound(f"Permission for user={username} on resource_type={resource_type}, "
                               f"resource_id={resource_id} not found.")

    async def list_user_permissions(self, username: str) -> tuple[bool, list[UserPermission]]:
        """(is_admin, every grant of every role the user holds)."""
        async with self.engine.connect() as conn:
            user = (await conn.execute(select(users.c.id, users.c.is_admin).where(users.c.username == username))).first()
            if user is None:
                raise no_user(username)
            found = await self._roles(conn, self._assigned_to(user.id))
        return user.is_admin, [
            UserPermission(role.id, role.name, role.workspace, g.resource_type, g.resource_pattern, g.permission)
            for role in found for g in role.permissions
        ]

    async def list_resource_permissions(self, resource_type: str, resource_id: str) -> list[tuple[str, str]]:
        """(username, permission) of every user's direct grant on exactly this resource (not "*", not roles')."""
        rules.validate_resource_type(resource_type)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(users.c.id, users.c.username, roles.c.name, role_permissions.c.permission)
                .join(roles, roles.c.id == role_permissions.c.role_id)
                .join(user_role_assignments, user_role_assignments.c.role_id == roles.c.id)
                .join(users, users.c.id == user_role_assignments.c.user_id)
                .where(roles.c.workspace == DEFAULT_WORKSPACE, role_permissions.c.resource_type == resource_type,
                       role_permissions.c.resource_pattern == resource_id)
                .order_by(users.c.username)
            )
            return [(row.username, row.permission) for row in rows if row.name == synthetic_role_name(row.id)]

    async def delete_grants_for_resource(self, resource_type: str, resource_id: str) -> int:
        """Drop the direct grants on a resource that is gone (a deleted registered model's name may come back)."""
        async with self.engine.begin() as conn:
            return (await conn.execute(delete(role_permissions).where(
                role_permissions.c.role_id.in_(self._synthetic_role_ids()),
                role_permissions.c.resource_type == resource_type, role_permissions.c.resource_pattern == resource_id,
            ))).rowcount

    async def rename_grants_for_resource(self, resource_type: str, old_id: str, new_id: str) -> int:
        """Move the direct grants of a renamed resource (a registered model) to its new name."""
        async with self.engine.begin() as conn:
            return (await conn.execute(update(role_permissions).where(
                role_permissions.c.role_id.in_(self._synthetic_role_ids()),
                role_permissions.c.resource_type == resource_type, role_permissions.c.resource_pattern == old_id,
            ).values(resource_pattern=new_id))).rowcount

    @staticmethod
    def _synthetic_role_ids():
        return select(roles.c.id).where(roles.c.name.like("\\_\\_user\\_%\\_\\_", escape="\\"),
                                        func.length(roles.c.name) > len(SYNTHETIC_PREFIX) + 2)
