"""The gate: per call, who the caller is and whether the rule of the method lets them through.

The interceptor chain (services.common.interceptors.AuthInterceptor) asks the gate for each method's
guard once, and the guard per call: `first` with the request (or the first message of a streamed one),
which verifies the caller's credentials (the `authorization` metadata: HTTP Basic, an mlgrid access
token, an OIDC JWT, a UI session) and records them as the call's caller (services.identity.caller);
`each` with every later message of a streamed request (an ingest stream names a run per batch); `done`
with a unary response, which grants MANAGE to the creator of what it created.

What the caller may not read does not exist for them: without READ the answer is the NOT_FOUND the
store gives for an absent resource; with READ but without the permission needed, PERMISSION_DENIED
naming it. The authority (local: the database; remote: IdentityService) keeps what it verified and
looked up for MLGRID_AUTH_CACHE_SECONDS, so a hot path costs dictionary look-ups.
"""
from typing import Protocol

from services.common.errors import NotFound, PermissionDenied, Unauthenticated
from services.identity import caller
from services.identity.access import ADMIN_ONLY, HIDDEN, Rule, RuleBook, field_values
from services.identity.model import Identity, Permission

SIGN_IN = (
    "sign in: send HTTP Basic credentials (the mlflow client: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD) "
    "or a bearer access token (MLFLOW_TRACKING_TOKEN; the mlgrid client: MLGRID_TRACKING_TOKEN)"
)


class Authority(Protocol):
    async def identify(self, credentials: str) -> Identity:
        """The verified identity of an `authorization` value; Unauthenticated when it does not verify."""

    async def decide(self, credentials: str, identity: Identity, resource_type: str, resource_id: str,
                     needed: Permission) -> tuple[bool, bool]:
        """(may do it, may read it) for this caller on this resource."""

    async def grant_creator(self, identity: Identity, resource_type: str, resource_id: str) -> None:
        """MANAGE on a resource the identity just created."""


def credentials_of(context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value
    return ""


class Guard:
    """The checks of one method under its rule."""

    def __init__(self, method: str, rule: Rule | None, authority: Authority):
        self.method = method
        self.rule = rule
        self.authority = authority
        self.done = None
        if rule is not None and rule.creates:
            self.done = self._grant_creator
            self._created = field_values(rule.creates_field)

    async def first(self, message, context) -> tuple[str, Identity | None]:
        rule = self.rule
        if rule is None:
            raise PermissionDenied(f"{self.method} has no access rule; it is refused to everyone")
        if rule.public:
            return "", None
        credentials = credentials_of(context)
        if not credentials:
            raise Unauthenticated(f"{self.method} needs a signed-in caller: {SIGN_IN}")
        identity = await self.authority.identify(credentials)
        caller.CALLER.set(identity)
        caller.CREDENTIALS.set(credentials)
        if rule.admin_only and not identity.is_admin:
            raise PermissionDenied(f"only admins may call {self.method}")
        call = (credentials, identity)
        if message is not None:
            await self.each(call, message)
        return call

    async def each(self, call: tuple[str, Identity | None], message) -> None:
        rule = self.rule
        credentials, identity = call
        if identity is None or rule.resources is None or identity.is_admin:
            return
        for resource_type, resource_id, *permission in rule.resources(message):
            needed = permission[0] if permission else rule.permission
            if resource_type == ADMIN_ONLY:
                raise PermissionDenied(f"only admins may reach {resource_id}: it is outside every experiment")
            allowed, visible = await self.authority.decide(credentials, identity, resource_type, resource_id, needed)
            if allowed:
                continue
            if not visible:
                raise NotFound(HIDDEN.get(resource_type, resource_type + " {} does not exist").format(resource_id))
            raise PermissionDenied(
                f"{identity.username} lacks {needed.name} on {resource_type} {resource_id}, "
                f"which {self.method.rsplit('/', 1)[-1]} needs; ask a user with MANAGE on it (or an admin) to grant it"
            )

    async def _grant_creator(self, call: tuple[str, Identity | None], response) -> None:
        _, identity = call
        if identity is None:
            return
        for created in self._created(response):
            await self.authority.grant_creator(identity, self.rule.creates, str(created))


class Gate:
    """The guards of the methods one server mounts."""

    def __init__(self, book: RuleBook, authority: Authority):
        self.book = book
        self.authority = authority

    def guard(self, method: str) -> Guard:
        return Guard(method, self.book.get(method), self.authority)


def gate_for(rules_by_service: dict[str, dict[str, Rule]], authority: Authority) -> Gate:
    """The gate of a server mounting these services (full service name -> its RULES)."""
    book = RuleBook()
    for service, rules in rules_by_service.items():
        book.add(service, rules)
    return Gate(book, authority)
