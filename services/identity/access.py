"""Access rules: for every RPC of every service, what a caller needs to make it.

Each service declares a `RULES` table (its `access.py`), method name -> Rule; the gate
(services/identity/gate.py) refuses a method without one, and a test walks every RPC of every proto
and every REST route to find one. A rule says either that the method is public (health,
reflection), or what permission the caller needs on which resources of the request (an experiment,
a run, a registered model...), found by reading named fields of the request message; or that any
signed-in caller may call it because the handler narrows what it returns to what the caller may read
(searches) or checks the caller itself (the identity API); or that only admins may call it.
"""
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.identity.model import EXPERIMENT, EXPERIMENT_NAME, LOGGED_MODEL, REGISTERED_MODEL, RUN, Permission

# (resource type, id), or (resource type, id, permission) where one request needs several permissions.
Resources = Callable[[object], Iterable[tuple]]

# A resource only admins reach (e.g. artifacts outside every experiment's folder).
ADMIN_ONLY = "admin_only"

# What a caller without READ is told: the store's own words for a resource that does not exist.
HIDDEN = {
    EXPERIMENT: "experiment {} does not exist",
    EXPERIMENT_NAME: "no experiment named {!r}",
    RUN: "run {} does not exist",
    LOGGED_MODEL: "logged model {} does not exist",
    REGISTERED_MODEL: "registered model {!r} not found",
}


@dataclass(frozen=True)
class Rule:
    """`public`: no credentials needed. Otherwise the caller must be signed in, and: an admin when
    `admin_only`; else hold `permission` on every (resource type, id) `resources` reads from each request
    message (none read: signed in is enough). `creates`: the resource type whose id the response's
    field `creates_field` names, granted MANAGE to its creator. `why` documents a rule that checks
    nothing per resource (the handler filters or checks)."""

    public: bool = False
    admin_only: bool = False
    permission: Permission = Permission.READ
    resources: Resources | None = None
    creates: str | None = None
    creates_field: str = ""
    why: str = ""
    fields: tuple[str, ...] = ()  # the request's field paths `resources` reads, where it reads named fields


def public(why: str) -> Rule:
    return Rule(public=True, why=why)


def signed_in(why: str) -> Rule:
    """Any signed-in caller: the handler narrows the answer to the caller (searches) or checks them itself."""
    return Rule(why=why)


def admin_only() -> Rule:
    return Rule(admin_only=True)


def creating(resource_type: str, response_field: str, why: str) -> Rule:
    """Any signed-in caller may create; the creator gets MANAGE on what the response names."""
    return Rule(creates=resource_type, creates_field=response_field, why=why)


def needs(permission: Permission, resource_type: str, *paths: str) -> Rule:
    """`permission` on the resource each dotted field path names (a repeated field names several; an
    empty value names none)."""
    getters = [field_values(path) for path in paths]

    def resources(message) -> Iterable[tuple[str, str]]:
        for get in getters:
            for value in get(message):
                if value:
                    yield resource_type, str(value)

    return Rule(permission=permission, resources=resources, fields=paths)


def custom(permission: Permission, resources: Resources) -> Rule:
    """`permission` on the resources a function of the request names (e.g. a run inside an artifact path)."""
    return Rule(permission=permission, resources=resources)


def field_values(path: str) -> Callable[[object], list]:
    """The values at a dotted field path of a message: a list (one value, several for a repeated field, none
    for a message field that is not set)."""
    names = path.split(".")

    def get(message) -> list:
        values = [message]
        for name in names:
            found = []
            for value in values:
                item = getattr(value, name)
                if isinstance(item, (str, int)):
                    found.append(item)
                elif hasattr(item, "DESCRIPTOR"):  # a message field: only when set
                    if value.HasField(name):
                        found.append(item)
                else:
                    found.extend(item)  # a repeated field
            values = found
        return values

    return get


# Every server's own methods: its health (probes, the gateway's mirror) and reflection (grpcurl,
# debugging) answer anyone, as /health and /metrics do over HTTP.
PLUMBING: dict[str, Rule] = {
    "/grpc.health.v1.Health/Check": public("a probe"),
    "/grpc.health.v1.Health/Watch": public("a probe"),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": public("the protos are public"),
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": public("the protos are public"),
}


@dataclass
class RuleBook:
    """The rules of the services one server mounts, by full method path (/package.Service/Method)."""

    rules: dict[str, Rule] = field(default_factory=lambda: dict(PLUMBING))

    def add(self, service: str, rules: dict[str, Rule]) -> None:
        for method, rule in rules.items():
            self.rules[f"/{service}/{method}"] = rule

    def get(self, method: str) -> Rule | None:
        return self.rules.get(method)


# The identity service decides who may call what itself, per method and caller (servicer.py: MLflow's rules
# for users, grants, roles and tokens); the gate makes sure the caller is signed in.
_SELF_CHECKED = "the identity service checks the caller itself (services/identity/servicer.py)"
IDENTITY_RULES: dict[str, Rule] = {name: signed_in(_SELF_CHECKED) for name in (
    "CreateUser", "GetUser", "ListUsers", "GetCurrentUser", "UpdateUserPassword", "UpdateUserAdmin", "DeleteUser",
    "GrantUserPermission", "RevokeUserPermission", "GetUserPermission", "ListUserPermissions",
    "ListCurrentUserPermissions", "CreateRole", "GetRole", "ListRoles", "UpdateRole", "DeleteRole",
    "AddRolePermission", "RemoveRolePermission", "ListRolePermissions", "UpdateRolePermission", "AssignRole",
    "UnassignRole", "ListUserRoles", "ListRoleUsers", "CreateAccessToken", "ListAccessTokens",
    "RevokeAccessToken", "CreateSession", "EndSession", "ListResourcePermissions", "CheckAccess",
)}
