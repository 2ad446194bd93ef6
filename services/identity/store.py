"""IdentityStore: users, passwords, access tokens and UI sessions, grants and roles (roles.py), and what a
caller may do, resolved as MLflow 3.17 resolves it (the rules are in rules.py):

- an admin (users.is_admin, or a workspace-admin grant: ("workspace", "*", MANAGE)) may do everything;
- otherwise the grants of all the user's roles in the default workspace that match the resource (its id
  or "*") are folded: DENY wins, else the highest, floored at the default permission; no grant at all is
  the default permission;
- a run and a logged model follow their experiment, a registered model version its registered model,
  with MLflow's tier override: a grant on the tier ("run", "*") decides past READ on the parent.

Simplifications against MLflow 3.17: one workspace ("default"; roles may name others, but only the
default workspace's roles count); NO_PERMISSIONS is never stored (MLflow rejects it as a grant too); a run,
logged model or version that does not exist resolves to NO_PERMISSIONS, as MLflow denies it.
The search filter (readable_clause) is the same rules in SQL; the tests hold it to permission().
"""
import asyncio
import logging

from sqlalchemy import String, and_, cast, exists, false, not_, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.db.clock import now_ms
from services.db.schema import access_tokens, logged_models, role_permissions, roles, runs, user_role_assignments, users
from services.identity import passwords, rules, tokens
from services.identity.model import (
    DEFAULT_WORKSPACE,
    EXPERIMENT,
    LOGGED_MODEL,
    REGISTERED_MODEL,
    RUN,
    WORKSPACE,
    Identity,
    Permission,
    User,
)
from services.identity.roles import RoleStore, no_user, synthetic_role_name
from services.identity.tokens import TokenInfo

log = logging.getLogger("mlgrid.identity")

MAX_USERNAME = 255
LAST_USED_EVERY_MS = 60_000  # last_used_ms is written at most this often per token
# Verified against for an unknown user, so that a sign-in takes as long whether the user exists or not.
_NO_USER_HASH = passwords.hash_password("no such user: a hash to spend the same time on")


def validate_username(username: str) -> None:
    if not username:
        raise InvalidArgument("Username cannot be empty.")
    if len(username) > MAX_USERNAME:
        raise InvalidArgument(f"Username must be at most {MAX_USERNAME} characters.")
    if ":" in username or not username.isprintable() or username != username.strip():
        raise InvalidArgument("Username must not contain ':', control characters, or leading or trailing spaces.")


def _user(row) -> User:
    return User(row.id, row.username, row.is_admin, row.password_hash is not None, row.created_ms)


def _token(row) -> TokenInfo:
    return TokenInfo(row.id, row.user_id, row.name, row.kind, row.created_ms, row.expires_ms, row.last_used_ms,
                     row.revoked)


class IdentityStore(RoleStore):
    """`default_permission`: what a signed-in user may do where they hold no grant (AuthConfig)."""

    def __init__(self, engine: AsyncEngine, default_permission: Permission):
        super().__init__(engine)
        if default_permission is Permission.DENY:
            raise ValueError("the default permission cannot be DENY: use NO_PERMISSIONS")
        self.default_permission = default_permission

    # ------------------------------------------------------------ authentication

    async def verify_password(self, username: str, password: str) -> Identity | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
        stored = row.password_hash if row is not None else None
        if not await asyncio.to_thread(passwords.verify, stored or _NO_USER_HASH, password) or stored is None:
            return None
        if passwords.needs_rehash(stored):
            new_hash = await asyncio.to_thread(passwords.hash_password, password)
            async with self.engine.begin() as conn:
                await conn.execute(update(users).where(users.c.id == row.id).values(password_hash=new_hash))
        return Identity(row.username, row.id, row.is_admin, "password")

    async def verify_token(self, secret: str) -> Identity | None:
        """The owner of an access token or UI session; None when unknown, expired or revoked."""
        if not secret.startswith(tokens.PREFIX):
            return None
        now = now_ms()
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(access_tokens.c.id, access_tokens.c.kind, access_tokens.c.expires_ms, access_tokens.c.revoked,
                       access_tokens.c.last_used_ms, users.c.id.label("user_id"), users.c.username, users.c.is_admin)
                .join(users, users.c.id == access_tokens.c.user_id)
                .where(access_tokens.c.token_hash == tokens.digest(secret))
            )).first()
        if row is None or row.revoked or (row.expires_ms is not None and row.expires_ms <= now):
            return None
        if row.last_used_ms is None or now - row.last_used_ms >= LAST_USED_EVERY_MS:
            async with self.engine.begin() as conn:
                await conn.execute(update(access_tokens).where(access_tokens.c.id == row.id).values(last_used_ms=now))
        return Identity(row.username, row.user_id, row.is_admin, row.kind)

    async def oidc_user(self, username: str, is_admin: bool) -> Identity:
        """The user an OIDC token names: created without a password on first sight; is_admin follows the
        token's groups each time."""
        validate_username(username)
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(users.c.id, users.c.is_admin).where(users.c.username == username))).first()
            if row is None:
                try:
                    async with conn.begin_nested():
                        user_id = (await conn.execute(users.insert().values(
                            username=username, password_hash=None, is_admin=is_admin, created_ms=now_ms()
                        ))).inserted_primary_key[0]
                    log.info("created user %r at their first OIDC sign-in", username)
                    return Identity(username, user_id, is_admin, "oidc")
                except IntegrityError:  # a concurrent first sign-in
                    row = (await conn.execute(select(users.c.id, users.c.is_admin)
                                              .where(users.c.username == username))).one()
            if row.is_admin != is_admin:
                await conn.execute(update(users).where(users.c.id == row.id).values(is_admin=is_admin))
        return Identity(username, row.id, is_admin, "oidc")

    async def ensure_admin(self, username: str, password: str) -> None:
        """Create the first admin (MLGRID_ADMIN_USERNAME / _PASSWORD) unless a user of that name exists."""
        async with self.engine.connect() as conn:
            exists_ = (await conn.execute(select(users.c.id).where(users.c.username == username))).first()
        if exists_ is not None:
            return
        try:
            await self.create_user(username, password, is_admin=True)
            log.info("created the admin user %r", username)
        except AlreadyExists:  # another replica created it first
            pass

    # ------------------------------------------------------------ users

    async def create_user(self, username: str, password: str, is_admin: bool = False) -> User:
        validate_username(username)
        passwords.validate(password)
        password_hash = await asyncio.to_thread(passwords.hash_password, password)
        created = now_ms()
        try:
            async with self.engine.begin() as conn:
                user_id = (await conn.execute(users.insert().values(
                    username=username, password_hash=password_hash, is_admin=is_admin, created_ms=created
                ))).inserted_primary_key[0]
        except IntegrityError:
            raise AlreadyExists(f"User (username={username}) already exists.") from None
        return User(user_id, username, is_admin, True, created)

    async def get_user(self, username: str) -> User:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(users).where(users.c.username == username))).first()
        if row is None:
            raise no_user(username)
        return _user(row)

    async def list_users(self) -> list[User]:
        async with self.engine.connect() as conn:
            return [_user(row) for row in await conn.execute(select(users).order_by(users.c.id))]

    async def update_password(self, username: str, password: str) -> None:
        passwords.validate(password)
        password_hash = await asyncio.to_thread(passwords.hash_password, password)
        async with self.engine.begin() as conn:
            if (await conn.execute(update(users).where(users.c.username == username)
                                   .values(password_hash=password_hash))).rowcount == 0:
                raise no_user(username)

    async def update_admin(self, username: str, is_admin: bool) -> None:
        async with self.engine.begin() as conn:
            if (await conn.execute(update(users).where(users.c.username == username)
                                   .values(is_admin=is_admin))).rowcount == 0:
                raise no_user(username)

    async def delete_user(self, username: str) -> None:
        """The user, their tokens and sessions, their role assignments and their own role with its grants."""
        async with self.engine.begin() as conn:
            user_id = await self._user_id(conn, username)
            await conn.execute(roles.delete().where(roles.c.workspace == DEFAULT_WORKSPACE,
                                                    roles.c.name == synthetic_role_name(user_id)))
            await conn.execute(access_tokens.delete().where(access_tokens.c.user_id == user_id))
            await conn.execute(user_role_assignments.delete().where(user_role_assignments.c.user_id == user_id))
            await conn.execute(users.delete().where(users.c.id == user_id))

    # ------------------------------------------------------------ tokens

    async def create_token(self, user_id: int, name: str, expires_ms: int | None,
                           kind: str = tokens.TOKEN) -> tuple[TokenInfo, str]:
        """A new token (or UI session) of the user, valid until `expires_ms` (ms since the epoch; None: never);
        the secret is returned here once and never stored."""
        if kind not in tokens.KINDS:
            raise InvalidArgument(f"kind must be one of {tokens.KINDS}, not {kind!r}")
        if not name or len(name) > 255 or not name.isprintable():
            raise InvalidArgument("Token name cannot be empty, and must be at most 255 printable characters.")
        now = now_ms()
        if expires_ms is not None and expires_ms <= now:
            raise InvalidArgument("expires: the expiry must be in the future")
        secret = tokens.new_secret()
        async with self.engine.begin() as conn:
            if (await conn.execute(select(users.c.id).where(users.c.id == user_id))).first() is None:
                raise NotFound(f"User with id={user_id} not found")
            if kind == tokens.TOKEN and (await conn.execute(select(access_tokens.c.id).where(
                access_tokens.c.user_id == user_id, access_tokens.c.kind == kind, access_tokens.c.name == name,
                access_tokens.c.revoked == false(),
            ))).first() is not None:
                raise AlreadyExists(f"Access token {name!r} already exists: revoke it first, or choose another name")
            token_id = (await conn.execute(access_tokens.insert().values(
                user_id=user_id, name=name, kind=kind, token_hash=tokens.digest(secret), created_ms=now,
                expires_ms=expires_ms, last_used_ms=None, revoked=False,
            ))).inserted_primary_key[0]
        return TokenInfo(token_id, user_id, name, kind, now, expires_ms, None, False), secret

    async def list_tokens(self, user_id: int, kind: str = tokens.TOKEN) -> list[TokenInfo]:
        """The user's tokens that are not revoked (expired ones included, to be seen and revoked)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(access_tokens).where(
                access_tokens.c.user_id == user_id, access_tokens.c.kind == kind, access_tokens.c.revoked == false()
            ).order_by(access_tokens.c.id))
            return [_token(row) for row in rows]

    async def revoke_token(self, user_id: int, name_or_id: "str | int") -> None:
        """Revoke one of the user's access tokens (not their UI sessions), by id (an int) or by name."""
        which = access_tokens.c.id == name_or_id if isinstance(name_or_id, int) else access_tokens.c.name == name_or_id
        async with self.engine.begin() as conn:
            done = await conn.execute(update(access_tokens).where(
                access_tokens.c.user_id == user_id, access_tokens.c.kind == tokens.TOKEN,
                access_tokens.c.revoked == false(), which,
            ).values(revoked=True))
        if done.rowcount == 0:
            raise NotFound(f"Access token {name_or_id!r} not found")

    async def end_session(self, secret: str) -> None:
        """Revoke the UI session of this secret; NotFound when there is none that has not ended already."""
        async with self.engine.begin() as conn:
            done = await conn.execute(update(access_tokens).where(
                access_tokens.c.token_hash == tokens.digest(secret), access_tokens.c.kind == tokens.SESSION,
                access_tokens.c.revoked == false(),
            ).values(revoked=True))
        if done.rowcount == 0:
            raise NotFound("the session has ended already")

    # ------------------------------------------------------------ permissions

    def _grants_query(self, user_id: int, resource_types):
        return (
            select(role_permissions.c.resource_type, role_permissions.c.resource_pattern, role_permissions.c.permission)
            .join(user_role_assignments, user_role_assignments.c.role_id == role_permissions.c.role_id)
            .join(roles, roles.c.id == role_permissions.c.role_id)
            .where(user_role_assignments.c.user_id == user_id, roles.c.workspace == DEFAULT_WORKSPACE,
                   role_permissions.c.resource_type.in_(resource_types))
        )

    async def _grants(self, conn, user_id: int | None, *resource_types: str) -> list[rules.Grant]:
        if user_id is None:
            return []
        rows = await conn.execute(self._grants_query(user_id, {*resource_types, WORKSPACE}))
        return [rules.Grant(*row) for row in rows]

    async def is_workspace_admin(self, identity: Identity) -> bool:
        """Whether one of the identity's roles holds ("workspace", "*", MANAGE) in the default workspace."""
        if identity.user_id is None:
            return False
        async with self.engine.connect() as conn:
            return rules.is_workspace_admin(await self._grants(conn, identity.user_id))

    async def permission(self, identity: Identity, resource_type: str, resource_id: str) -> Permission:
        """The identity's effective permission on one resource (see the module docstring). A run is named by
        its run id, a logged model by its model id, a registered model version by its model's name;
        resource_id "*" asks for the permission at the type's wildcard key alone."""
        rules.validate_resource_type(resource_type)
        if resource_type == WORKSPACE:
            raise InvalidArgument("resource_type 'workspace' is not a resource: ask about an experiment or a model")
        if identity.is_admin:
            return Permission.MANAGE
        parent_type = rules.PARENT.get(resource_type, resource_type)
        async with self.engine.connect() as conn:
            grants = await self._grants(conn, identity.user_id, resource_type, parent_type)
            if resource_id == rules.WILDCARD:
                return rules.resolve_tier(grants, self.default_permission, resource_type)
            parent_id = resource_id
            if resource_type in (RUN, LOGGED_MODEL):
                table, key = (runs, runs.c.run_uuid) if resource_type == RUN else (logged_models, logged_models.c.model_id)
                found = (await conn.execute(select(table.c.experiment_id).where(key == resource_id))).scalar()
                if found is None:
                    return Permission.NO_PERMISSIONS
                parent_id = str(found)
        return rules.resolve(grants, self.default_permission, resource_type, parent_id)

    async def grant_creator(self, identity: Identity, resource_type: str, resource_id: str) -> None:
        """MANAGE to whoever created an experiment or a registered model (replacing a grant they had on it)."""
        if identity.user_id is None:
            return
        if resource_type not in (EXPERIMENT, REGISTERED_MODEL):
            raise InvalidArgument(f"the creator's grant is on an experiment or a registered model, not {resource_type!r}")
        rules.validate_pattern(resource_type, resource_id)
        async with self.engine.begin() as conn:
            await self._upsert_user_grant(conn, identity.user_id, resource_type, resource_id, Permission.MANAGE,
                                          replace=True)

    def readable_clause(self, identity: Identity, resource_type: str, id_column) -> ColumnElement | None:
        """A condition on `id_column` keeping the rows the identity may READ, for a search's WHERE (before
        paging); None when there is nothing to filter (an admin). `id_column` is the parent's id column for a
        sub-resource: experiments' experiment_id (or runs.experiment_id) for experiment, run and logged_model;
        registered_models.name for registered_model and registered_model_version."""
        rules.validate_resource_type(resource_type)
        if identity.is_admin:
            return None
        parent_type = rules.PARENT.get(resource_type, resource_type)
        key = id_column if isinstance(id_column.type, String) else cast(id_column, String)
        if identity.user_id is None:  # no grants: the default permission decides every row
            return true() if self.default_permission.allows(Permission.READ) else false()

        def grants(resource: str, permissions, on_key: bool):
            patterns = self._grants_query(identity.user_id, (resource,)).where(
                role_permissions.c.permission.in_(permissions)
            ).with_only_columns(role_permissions.c.resource_pattern)
            wildcard = exists(patterns.where(role_permissions.c.resource_pattern == rules.WILDCARD))
            return or_(wildcard, key.in_(patterns)) if on_key else wildcard

        denied = grants(parent_type, ("DENY",), True)
        if self.default_permission.allows(Permission.READ):
            parent = not_(denied)
        else:
            parent = and_(grants(parent_type, rules.POSITIVE, True), not_(denied))
        clause = parent
        if parent_type != resource_type:  # a DENY on the tier hides every row of it
            clause = and_(parent, not_(grants(resource_type, ("DENY",), False)))
        admin = exists(self._grants_query(identity.user_id, (WORKSPACE,)).where(
            role_permissions.c.resource_pattern == rules.WILDCARD, role_permissions.c.permission == "MANAGE"
        ))
        return or_(admin, clause)

