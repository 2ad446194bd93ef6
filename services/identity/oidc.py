"""Bearer JWTs from an OIDC issuer (Dex, Keycloak, oauth2-proxy...): verified against the issuer's
published signing keys, then turned into Claims (username, groups, admin).

PyJWT does the signature and the registered claims: its exceptions name each failed check (expired, not
yet valid, audience, issuer, missing claim, signature), which become messages that say what is wrong, and
it checks `exp`/`nbf`/`iat` with a leeway, `aud` as a string or a list. The rest is ours, before PyJWT
sees the token: only asymmetric algorithms (`alg: none` and HS* refused outright, so a public key can never
be used as an HMAC secret), and the key chosen by the token's `kid` among the issuer's keys, whose type and
`alg` must fit the token's algorithm.

Keys come from MLGRID_AUTH_OIDC_JWKS_FILE, else MLGRID_AUTH_OIDC_JWKS_URL, else the `jwks_uri` of the
issuer's discovery document. They are read again every MLGRID_AUTH_OIDC_JWKS_REFRESH_SECONDS, and at once
(at most every UNKNOWN_KID_REFETCH_SECONDS) for a `kid` not seen yet: the issuer rotated its keys. Reads
run in a thread (urllib; gRPC-only services never load aiohttp), never on the event loop.

The username is the MLGRID_AUTH_OIDC_USERNAME_CLAIM claim and nothing else: a token without it is refused
rather than falling back to `sub`, since an opaque `sub` could equal another user's name (set the claim
to `sub` to use it). Groups are MLGRID_AUTH_OIDC_GROUPS_CLAIM: a list, or a string of names separated by
spaces or commas; a dotted name (`realm_access.roles`, Keycloak's) reaches into nested objects.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone

import jwt

from services.common.config import AuthConfig
from services.common.errors import Unauthenticated, Unavailable

log = logging.getLogger("mlgrid.identity")

ALGORITHMS = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
})
# The key types each algorithm family signs with (a JWK's `kty`).
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
UNKNOWN_KID_REFETCH_SECONDS = 10.0
# After a failed read of the keys, the next try comes this soon (not a whole refresh period later).
RETRY_AFTER_FAILURE_SECONDS = 10.0
FETCH_TIMEOUT_SECONDS = 10.0
MAX_DOCUMENT_BYTES = 1 << 20
MAX_CACHED_TOKENS = 10_000

_JWT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


def is_jwt(token: str) -> bool:
    """Whether `token` has a JWS's shape (three base64url segments, the last one empty for `alg: none`), as
    opposed to an mlgrid access token (`mlg_...`)."""
    return _JWT.fullmatch(token) is not None


@dataclass(frozen=True)
class Claims:
    """What a verified JWT says of its bearer; `expires_at` is its `exp` (seconds since the epoch)."""

    username: str
    groups: tuple[str, ...]
    is_admin: bool
    expires_at: float


def _when(seconds) -> str:
    try:
        return datetime.fromtimestamp(float(seconds), timezone.utc).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(seconds)


def _fetch_json(url: str) -> dict:
    """GET a JSON object, {} for any other JSON (blocking: run it in a thread)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
        document = json.loads(response.read(MAX_DOCUMENT_BYTES))
    return document if isinstance(document, dict) else {}


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as file:
        document = json.load(file)
    return document if isinstance(document, dict) else {}


@dataclass(frozen=True)
class _Key:
    jwk: jwt.PyJWK
    algorithm: str | None  # the JWK's `alg`: the only algorithm it may verify, when it has one


def _signing_keys(jwks: dict, source: str) -> dict[str | None, _Key]:
    """The signature keys of a JWKS by `kid` (None for a key without one); keys PyJWT cannot use (an
    unknown `kty`, an encryption key) are left out."""
    keys: dict[str | None, _Key] = {}
    entries = jwks.get("keys")
    for data in entries if isinstance(entries, list) else ():
        if not isinstance(data, dict) or data.get("use", "sig") != "sig" or data.get("kty") == "oct":
            continue
        try:
            keys[data.get("kid")] = _Key(jwt.PyJWK(data), data.get("alg"))
        except (jwt.PyJWKError, jwt.InvalidKeyError) as error:
            log.warning("skipping key %r of %s: %s", data.get("kid"), source, error)
    if not keys:
        raise ValueError(f"{source} holds no signature key")
    return keys


def _claim(claims: dict, name: str):
    """The claim `name`, or for a dotted name absent as such, the value at that path in nested objects."""
    if name in claims:
        return claims[name]
    value = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _groups(value) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(g for g in re.split(r"[\s,]+", value) if g)
    if isinstance(value, list):
        return tuple(g for g in value if isinstance(g, str) and g)
    return ()


class OidcVerifier:
    """Verifies bearer JWTs of the configured issuer: `await verify(token)` gives its Claims or raises
    Unauthenticated saying what is wrong with it (never the token itself). Verified tokens are kept until
    their expiry or MLGRID_AUTH_CACHE_SECONDS, whichever comes first, so a token seen again costs a dict
    look-up."""

    def __init__(self, config: AuthConfig):
        if not config.oidc_issuer:
            raise ValueError("OIDC needs an issuer: set MLGRID_AUTH_OIDC_ISSUER")
        self._config = config
        self._admin_groups = frozenset(config.oidc_admin_groups)
        self._keys: dict[str | None, _Key] = {}
        self._jwks_uri = config.oidc_jwks_url  # empty: from the discovery document, on the first read
        self._next_refresh = -math.inf  # time.monotonic() when the keys are read again
        self._next_unknown_kid_read = -math.inf
        self._lock = asyncio.Lock()
        self._verified: dict[str, tuple[Claims, float]] = {}  # token -> (claims, kept until, epoch seconds)

    async def verify(self, token: str) -> Claims:
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and now < cached[1]:
            return cached[0]
        claims = await self._verify(token)
        if len(self._verified) >= MAX_CACHED_TOKENS:
            self._verified = {t: c for t, c in self._verified.items() if now < c[1]}
            if len(self._verified) >= MAX_CACHED_TOKENS:
                self._verified.clear()
        self._verified[token] = (claims, min(claims.expires_at, now + self._config.cache_seconds))
        return claims

    async def _verify(self, token: str) -> Claims:
        if not is_jwt(token):
            raise Unauthenticated("the bearer token is not a well-formed JWT")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise Unauthenticated("the bearer token is not a well-formed JWT (its header does not decode)") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm.lower() == "none":
            raise Unauthenticated("the JWT is unsigned (alg: none): only signed tokens are accepted")
        if algorithm not in ALGORITHMS:
            raise Unauthenticated(
                f"the JWT is signed with {algorithm}, which is not accepted: only the asymmetric algorithms "
                f"{', '.join(sorted(ALGORITHMS))} are"
            )
        kid = header.get("kid")
        key = await self._key(kid if isinstance(kid, str) else None, algorithm)
        config = self._config
        try:
            claims = jwt.decode(
                token, key.jwk.key, algorithms=[algorithm], audience=config.oidc_audience or None,
                issuer=config.oidc_issuer, leeway=config.oidc_clock_skew_seconds,
                options={"require": ["exp", "iss"], "verify_aud": bool(config.oidc_audience)},
            )
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(self._explain(token, error)) from None
        return self._claims(claims)

    def _explain(self, token: str, error: jwt.InvalidTokenError) -> str:
        """What is wrong with a token PyJWT refused. Its claims are read only when its signature verified
        (PyJWT checks the signature before the claims), to name the offending value."""
        if isinstance(error, jwt.InvalidSignatureError):
            return "the JWT's signature does not verify with the issuer's key: it was not signed by the issuer"
        if isinstance(error, jwt.MissingRequiredClaimError):
            return f"the JWT has no '{error.claim}' claim"
        if not isinstance(error, jwt.ExpiredSignatureError | jwt.ImmatureSignatureError | jwt.InvalidAudienceError
                          | jwt.InvalidIssuerError):
            return f"the JWT is not valid: {error}"
        claims = jwt.decode(token, options={"verify_signature": False})
        if isinstance(error, jwt.ExpiredSignatureError):
            return f"the JWT expired at {_when(claims.get('exp'))}: sign in again for a new one"
        if isinstance(error, jwt.ImmatureSignatureError):
            nbf = claims.get("nbf")
            if isinstance(nbf, int | float) and nbf > time.time():
                return f"the JWT is not valid before {_when(nbf)} (check the clocks)"
            return f"the JWT was issued in the future, at {_when(claims.get('iat'))} (check the clocks)"
        if isinstance(error, jwt.InvalidAudienceError):
            return f"the JWT is for audience {claims.get('aud')!r}, not {self._config.oidc_audience!r}"
        return f"the JWT was issued by {claims.get('iss')!r}, not by {self._config.oidc_issuer!r}"

    def _claims(self, claims: dict) -> Claims:
        name = self._config.oidc_username_claim
        username = _claim(claims, name)
        if not isinstance(username, str) or not username:
            raise Unauthenticated(
                f"the JWT has no '{name}' claim to take the username from (the issuer may need the scope that "
                f"adds it, or set MLGRID_AUTH_OIDC_USERNAME_CLAIM to a claim it carries, such as 'sub' or 'email')"
            )
        groups = _groups(_claim(claims, self._config.oidc_groups_claim))
        return Claims(username, groups, any(g in self._admin_groups for g in groups), float(claims["exp"]))

    async def _key(self, kid: str | None, algorithm: str) -> _Key:
        """The issuer's key named `kid`, read again when it is unknown (rotation), fitting `algorithm`."""
        now = time.monotonic()
        if now >= self._next_refresh:
            await self._refresh(lambda: time.monotonic() >= self._next_refresh)
        key = self._lookup(kid)
        if key is None and now >= self._next_unknown_kid_read:
            self._next_unknown_kid_read = now + UNKNOWN_KID_REFETCH_SECONDS
            await self._refresh(lambda: self._lookup(kid) is None)
            key = self._lookup(kid)
        if key is None:
            if kid is None:
                raise Unauthenticated(
                    "the JWT names no key id (kid) and the issuer has several keys: cannot tell which signed it"
                )
            raise Unauthenticated(f"the JWT is signed with key id {kid!r}, which the issuer does not publish")
        kty = key.jwk.key_type
        if kty != KEY_TYPES[algorithm[:2]] or (key.algorithm or algorithm) != algorithm:
            raise Unauthenticated(
                f"the JWT says {algorithm}, but the issuer's key {kid!r} is a {kty} key for "
                f"{key.algorithm or 'other algorithms'}"
            )
        return key

    def _lookup(self, kid: str | None) -> _Key | None:
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self, still_needed) -> None:
        """Read the keys again, unless another task did while this one waited (`still_needed()` is false).
        A failed read keeps the keys there were; with none, the caller is told the issuer cannot be reached."""
        async with self._lock:
            if not still_needed():
                return
            try:
                keys = await asyncio.to_thread(self._read_keys)
            except (OSError, ValueError) as error:
                self._next_refresh = time.monotonic() + min(RETRY_AFTER_FAILURE_SECONDS,
                                                            self._config.oidc_jwks_refresh_seconds)
                log.warning("cannot read the OIDC signing keys: %s", error)
                if not self._keys:
                    raise Unavailable(f"cannot read the OIDC issuer's signing keys: {error}") from None
                return
            self._keys = keys
            self._next_refresh = time.monotonic() + self._config.oidc_jwks_refresh_seconds

    def _read_keys(self) -> dict[str | None, _Key]:
        """The keys, from the file, the URL, or the URL the discovery document names (blocking)."""
        config = self._config
        if config.oidc_jwks_file:
            return _signing_keys(_read_json(config.oidc_jwks_file), config.oidc_jwks_file)
        if not self._jwks_uri:
            url = config.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
            discovery = _fetch_json(url)
            if str(discovery.get("issuer", "")).rstrip("/") != config.oidc_issuer.rstrip("/"):
                raise ValueError(f"{url} is the discovery document of issuer {discovery.get('issuer')!r}")
            if not isinstance(discovery.get("jwks_uri"), str):
                raise ValueError(f"{url} names no jwks_uri")
            self._jwks_uri = discovery["jwks_uri"]
        return _signing_keys(_fetch_json(self._jwks_uri), self._jwks_uri)
