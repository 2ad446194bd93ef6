"""MLflow 3.17's permission rules, pure (grant rows in, permissions out), so that the store, the search
filter and the tests share one statement of them:

- which resource types a grant may name, and at which grain: experiments and registered models by id (an
  experiment id, a model name) or "*"; the sub-resource tiers (runs, logged models, model versions) and
  the workspace slot only by "*";
- which permissions are grantable: READ, USE, EDIT, MANAGE or DENY on a resource; USE or MANAGE on the
  workspace (MANAGE there makes a workspace admin, who may do everything);
- the fold within one key: among the grants of all of a user's roles that match it, DENY wins, otherwise
  the highest; no grant is silence, and then the default permission speaks;
- a positive grant never resolves below the default permission (MLflow's floor); DENY is never floored;
- a sub-resource (a run, a logged model: their experiment; a model version: its registered model) needs
  READ on its parent; past that, a grant on its own tier ("run", "*") decides if there is one (tier
  override: it may raise or lower what the parent gives), otherwise the parent's permission does.
  The permission of a sub-resource is therefore one value: the parent's when that is not readable, else
  the tier's or the parent's, which answers every action exactly as MLflow's requirement pair does.
"""
from collections.abc import Iterable
from typing import NamedTuple

from services.common.errors import InvalidArgument
from services.identity.model import (
    EXPERIMENT,
    LOGGED_MODEL,
    REGISTERED_MODEL,
    REGISTERED_MODEL_VERSION,
    RUN,
    WORKSPACE,
    Permission,
)

WILDCARD = "*"
# Resource type -> whether a grant may name one resource (an id) as well as "*".
BY_ID = {EXPERIMENT: True, REGISTERED_MODEL: True, RUN: False, LOGGED_MODEL: False,
         REGISTERED_MODEL_VERSION: False, WORKSPACE: False}
RESOURCE_TYPES = tuple(sorted(BY_ID))
# A sub-resource's tier -> its parent's type.
PARENT = {RUN: EXPERIMENT, LOGGED_MODEL: EXPERIMENT, REGISTERED_MODEL_VERSION: REGISTERED_MODEL}
RESOURCE_GRANTABLE = frozenset({Permission.READ, Permission.USE, Permission.EDIT, Permission.MANAGE, Permission.DENY})
WORKSPACE_GRANTABLE = frozenset({Permission.USE, Permission.MANAGE})
POSITIVE = tuple(p.name for p in Permission if p > Permission.NO_PERMISSIONS)


class Grant(NamedTuple):
    """A grant row as the fold sees it (Permission names, as stored)."""

    resource_type: str
    resource_pattern: str
    permission: str


def parse_permission(permission: "Permission | str") -> Permission:
    if isinstance(permission, Permission):
        return permission
    try:
        return Permission[permission]
    except KeyError:
        valid = tuple(p.name for p in Permission)
        raise InvalidArgument(f"Invalid permission '{permission}'. Valid permissions are: {valid}") from None


def validate_resource_type(resource_type: str) -> None:
    if resource_type not in BY_ID:
        raise InvalidArgument(f"Invalid resource type '{resource_type}'. Valid resource types are: {RESOURCE_TYPES}")


def validate_pattern(resource_type: str, resource_pattern: str) -> None:
    validate_resource_type(resource_type)
    if not resource_pattern:
        raise InvalidArgument("resource_pattern (resource_id) cannot be empty: give an id or '*'")
    if len(resource_pattern) > 255:
        raise InvalidArgument("resource_pattern (resource_id) must be at most 255 characters")
    if resource_pattern != WILDCARD and not BY_ID[resource_type]:
        raise InvalidArgument(
            f"Invalid resource_pattern '{resource_pattern}' for resource_type='{resource_type}'. "
            "This resource type supports only wildcard ('*') grants."
        )


def validate_grantable(resource_type: str, permission: "Permission | str") -> Permission:
    """The permission, if it may be granted on `resource_type`; InvalidArgument saying what may."""
    validate_resource_type(resource_type)
    parsed = parse_permission(permission)
    allowed = WORKSPACE_GRANTABLE if resource_type == WORKSPACE else RESOURCE_GRANTABLE
    if parsed not in allowed:
        kind = "Workspace-wide grants" if resource_type == WORKSPACE else "Resource-level grants"
        names = tuple(sorted(p.name for p in allowed))
        raise InvalidArgument(
            f"Invalid permission '{parsed.name}' for resource_type='{resource_type}'. {kind} accept only: {names}."
        )
    return parsed


def matches(grant: Grant, resource_type: str, resource_id: str) -> bool:
    if grant.resource_type != resource_type:
        return False
    return grant.resource_pattern == WILDCARD or (BY_ID[resource_type] and grant.resource_pattern == resource_id)


def is_workspace_admin(grants: Iterable[Grant]) -> bool:
    return any(g.resource_type == WORKSPACE and g.resource_pattern == WILDCARD and g.permission == "MANAGE"
               for g in grants)


def fold(grants: Iterable[Grant], resource_type: str, resource_id: str) -> Permission | None:
    """The grants on one key: DENY if any is DENY, else the highest; None when none matches."""
    best = None
    for grant in grants:
        if not matches(grant, resource_type, resource_id):
            continue
        permission = Permission[grant.permission]
        if permission is Permission.DENY:
            return Permission.DENY
        best = permission if best is None else max(best, permission)
    return best


def decide(folded: Permission | None, default: Permission) -> Permission:
    """What a key's fold resolves to: the default when silent, a positive grant floored at the default."""
    if folded is None:
        return default
    if folded <= Permission.NO_PERMISSIONS:
        return folded
    return max(folded, default)


def resolve(grants: list[Grant], default: Permission, resource_type: str, parent_id: str) -> Permission:
    """The effective permission on a resource of `resource_type`; for a sub-resource, `parent_id` is its
    parent's id (the run's experiment id, the version's model name), otherwise the resource's own id."""
    if is_workspace_admin(grants):
        return Permission.MANAGE
    parent_type = PARENT.get(resource_type, resource_type)
    parent = decide(fold(grants, parent_type, parent_id), default)
    if parent_type == resource_type or not parent.allows(Permission.READ):
        return parent
    tier = fold(grants, resource_type, WILDCARD)
    return parent if tier is None else decide(tier, default)


def resolve_tier(grants: list[Grant], default: Permission, resource_type: str) -> Permission:
    """The permission at `resource_type`'s "*" key alone (MLflow's get-permission with resource_id "*")."""
    if is_workspace_admin(grants):
        return Permission.MANAGE
    return decide(fold(grants, resource_type, WILDCARD), default)
