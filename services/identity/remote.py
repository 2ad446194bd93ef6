"""The authority of a service without the database (artifacts run alone, serving): it asks
`mlgrid.v1.IdentityService/CheckAccess` (served by tracking) with the caller's own credentials, and
keeps each answer for MLGRID_AUTH_CACHE_SECONDS. No identity is taken on trust: the identity service
verifies the credentials the caller sent, as it would for a call made to it directly."""
import grpc

from mlgrid.v1 import identity_pb2 as pb
from mlgrid.v1 import identity_pb2_grpc
from services.common.errors import Unavailable, from_status
from services.common.server import CHANNEL_OPTIONS
from services.identity.cache import Resolver, TtlCache
from services.identity.model import Identity, Permission

CHECK_TIMEOUT_S = 5.0


class RemoteAuthority:
    def __init__(self, target: str, cache_seconds: float, resolvers: dict[str, Resolver] | None = None):
        if not target:
            raise ValueError("auth is on but no identity service is named: set MLGRID_AUTH_IDENTITY_TARGET (tracking's host:port)")
        self.target = target
        self.resolvers = resolvers or {}
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = identity_pb2_grpc.IdentityServiceStub(self._channel)
        self._identities = TtlCache(cache_seconds)
        self._decisions = TtlCache(cache_seconds)

    async def _check(self, credentials: str, resource_type: str = "", resource_id: str = "",
                     needed: Permission = Permission.READ) -> pb.CheckAccessResponse:
        request = pb.CheckAccessRequest(resource_type=resource_type, resource_id=resource_id, permission=needed.name)
        try:
            return await self._stub.CheckAccess(request, metadata=(("authorization", credentials),), timeout=CHECK_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise Unavailable(f"cannot check the caller's credentials: the identity service at {self.target} "
                                  f"does not answer ({error.code().name}); try again") from None
            raise from_status(error.code(), error.details()) from None

    async def identify(self, credentials: str) -> Identity:
        hit = self._identities.get(credentials)
        if hit is not None:
            return hit[0]
        answer = await self._check(credentials)  # Unauthenticated, as the identity service says, when it does not verify
        identity = Identity(answer.username, None, answer.is_admin, via="remote")  # decisions are asked by credentials
        self._identities.put(credentials, identity)
        return identity

    async def decide(self, credentials: str, identity: Identity, resource_type: str, resource_id: str,
                     needed: Permission) -> tuple[bool, bool]:
        if identity.is_admin:
            return True, True
        resolve = self.resolvers.get(resource_type)
        if resolve is not None:
            resolved = await resolve(resource_id)
            if resolved is None:
                return True, True  # nothing in the registry or tracking stands behind it: signed in is enough
            resource_type, resource_id = resolved
        key = (credentials, resource_type, resource_id, needed)
        hit = self._decisions.get(key)
        if hit is not None:
            return hit[0]
        answer = await self._check(credentials, resource_type, resource_id, needed)
        decision = (answer.allowed, answer.visible)
        self._decisions.put(key, decision)
        return decision

    async def grant_creator(self, identity: Identity, resource_type: str, resource_id: str) -> None:
        raise NotImplementedError("services without the database create no experiments or models")

    async def close(self) -> None:
        await self._channel.close()
