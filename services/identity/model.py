"""The vocabulary of identity, shared by the store, the checks and the API: permissions, resource
types, and the identity of a caller."""
from dataclasses import dataclass
from enum import IntEnum


class Permission(IntEnum):
    """MLflow's permissions, ordered by what they allow; DENY is an explicit refusal that wins over any
    grant it is folded with, NO_PERMISSIONS merely the absence of one."""

    DENY = -1
    NO_PERMISSIONS = 0
    READ = 1
    USE = 2
    EDIT = 3
    MANAGE = 4

    @classmethod
    def parse(cls, name: str) -> "Permission":
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"'{name}' is not a permission: use one of {', '.join(p.name for p in cls)}") from None

    def allows(self, needed: "Permission") -> bool:
        return self >= needed and self > Permission.NO_PERMISSIONS


# Resource types, as MLflow names them (grants on experiments and registered models by id or "*";
# runs, logged models and model versions follow their parent).
EXPERIMENT = "experiment"
EXPERIMENT_NAME = "experiment_name"  # an experiment named rather than by id (resolved by tracking)
REGISTERED_MODEL = "registered_model"
RUN = "run"
LOGGED_MODEL = "logged_model"
REGISTERED_MODEL_VERSION = "registered_model_version"
WORKSPACE = "workspace"
DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class Identity:
    """A verified caller. `user_id` is None only for a caller the store has no row for (never, today)."""

    username: str
    user_id: int | None
    is_admin: bool = False
    via: str = "password"  # how it was verified: password, token, oidc, session


# What the store answers with (MLflow's auth entities, less the password hash).
@dataclass(frozen=True)
class User:
    id: int
    username: str
    is_admin: bool
    has_password: bool  # False for a user who signs in only by OIDC
    created_ms: int


@dataclass(frozen=True)
class RolePermission:
    """One grant of a role: `permission` (a Permission name) on resources of `resource_type` matching
    `resource_pattern` (an id, or "*")."""

    id: int
    role_id: int
    resource_type: str
    resource_pattern: str
    permission: str


@dataclass(frozen=True)
class Role:
    id: int
    name: str
    workspace: str
    description: str | None
    permissions: tuple[RolePermission, ...] = ()


@dataclass(frozen=True)
class RoleAssignment:
    id: int
    user_id: int
    role_id: int


@dataclass(frozen=True)
class UserPermission:
    """A grant a user holds through one of their roles (their own `__user_<id>__` role for direct grants)."""

    role_id: int
    role_name: str
    workspace: str
    resource_type: str
    resource_pattern: str
    permission: str
