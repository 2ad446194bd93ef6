"""The authority of a service with the database (tracking, the registry): credentials verified and
permissions resolved against the identity tables, each answer kept for MLGRID_AUTH_CACHE_SECONDS.

A password's hash is computed once per credential and cache period, never per call; a credential
that does not verify is remembered for a moment too, so that a client retrying with a wrong password
costs a look-up, not a hash each time.
"""
import base64
import binascii
import time

from services.common.config import AuthConfig
from services.common.errors import Unauthenticated
from services.identity import tokens
from services.identity.cache import Resolver, TtlCache
from services.identity.model import Identity, Permission
from services.identity.oidc import OidcVerifier, is_jwt
from services.identity.store import IdentityStore

REFUSED_SECONDS = 2.0


class LocalAuthority:
    def __init__(self, store: IdentityStore, oidc: OidcVerifier | None, cache_seconds: float,
                 resolvers: dict[str, Resolver] | None = None):
        self.store = store
        self.oidc = oidc
        self.resolvers = resolvers or {}
        self._identities = TtlCache(cache_seconds)
        self._permissions = TtlCache(cache_seconds)
        self._resolved = TtlCache(cache_seconds)

    async def identify(self, credentials: str) -> Identity:
        hit = self._identities.get(credentials)
        if hit is not None:
            if hit[0] is None:
                raise Unauthenticated(_REFUSED)
            return hit[0]
        identity, seconds = await self._verify(credentials)
        if identity is None:
            self._identities.put(credentials, None, min(REFUSED_SECONDS, self._identities.seconds))
            raise Unauthenticated(_REFUSED)
        self._identities.put(credentials, identity, seconds)
        return identity

    async def _verify(self, credentials: str) -> tuple[Identity | None, float | None]:
        scheme, _, value = credentials.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "basic":
            username, password = _basic(value)
            return await self.store.verify_password(username, password), None
        if scheme != "bearer":
            raise Unauthenticated(f"unsupported authorization scheme {scheme!r}: use Basic or Bearer")
        if value.startswith(tokens.PREFIX):
            return await self.store.verify_token(value), None
        if self.oidc is not None and is_jwt(value):
            claims = await self.oidc.verify(value)  # Unauthenticated, saying why, when it does not verify
            identity = await self.store.oidc_user(claims.username, claims.is_admin)
            return identity, max(0.0, min(self._identities.seconds, claims.expires_at - time.time()))
        return None, None

    async def decide(self, credentials: str, identity: Identity, resource_type: str, resource_id: str,
                     needed: Permission) -> tuple[bool, bool]:
        if identity.is_admin:
            return True, True
        resolve = self.resolvers.get(resource_type)
        if resolve is not None:
            resolved = await self._resolve(resolve, resource_type, resource_id)
            if resolved is None:
                return True, True  # absent: the handler says so, to everyone alike
            resource_type, resource_id = resolved
        key = (identity.user_id, resource_type, resource_id)
        hit = self._permissions.get(key)
        if hit is None:
            permission = await self.store.permission(identity, resource_type, resource_id)
            self._permissions.put(key, permission)
        else:
            permission = hit[0]
        return permission.allows(needed), permission.allows(Permission.READ)

    async def _resolve(self, resolve: Resolver, resource_type: str, resource_id: str) -> tuple[str, str] | None:
        hit = self._resolved.get((resource_type, resource_id))
        if hit is not None:
            return hit[0]
        resolved = await resolve(resource_id)
        self._resolved.put((resource_type, resource_id), resolved)
        return resolved

    async def grant_creator(self, identity: Identity, resource_type: str, resource_id: str) -> None:
        await self.store.grant_creator(identity, resource_type, resource_id)
        self._permissions.put((identity.user_id, resource_type, resource_id), Permission.MANAGE)

    def forget(self, credentials: bool = True) -> None:
        """Drop what is cached after a change made through this process: the permissions looked up (a grant
        changed), and the verified credentials too (a revoked token, a changed password): those cost a hash."""
        for cache in (self._identities, self._permissions, self._resolved) if credentials else (self._permissions, self._resolved):
            cache.clear()


_REFUSED = "the credentials given do not verify (wrong username or password, or an expired or revoked token)"


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("malformed Basic credentials: expected base64 of username:password") from None
    username, separator, password = decoded.partition(":")
    if not separator or not username:
        raise Unauthenticated("malformed Basic credentials: expected base64 of username:password")
    return username, password


def local_authority(store: IdentityStore, config: AuthConfig, resolvers: dict[str, Resolver] | None = None) -> LocalAuthority:
    """The authority of a service on the database, from the settings (OIDC when an issuer is set)."""
    oidc = OidcVerifier(config) if config.oidc_issuer else None
    return LocalAuthority(store, oidc, config.cache_seconds, resolvers)
