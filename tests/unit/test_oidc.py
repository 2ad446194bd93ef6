"""OidcVerifier against tokens signed here with RSA, EC and Ed25519 keys, the issuer's discovery document
and JWKS served by a real HTTP server on loopback (or a JWKS file)."""
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from services.common.config import AuthConfig
from services.common.errors import Unauthenticated, Unavailable
from services.identity.oidc import OidcVerifier, is_jwt

AUDIENCE = "mlgrid"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def jwk(private_key, kid: str, alg: str | None = None) -> dict:
    to_jwk = {rsa.RSAPrivateKey: RSAAlgorithm, ec.EllipticCurvePrivateKey: ECAlgorithm,
              ed25519.Ed25519PrivateKey: OKPAlgorithm}
    kind = next(cls for base, cls in to_jwk.items() if isinstance(private_key, base))
    data = kind.to_jwk(private_key.public_key(), as_dict=True) | {"kid": kid, "use": "sig"}
    return data | ({"alg": alg} if alg else {})


class Issuer:
    """An OIDC issuer on loopback: discovery document and JWKS, counting the JWKS reads."""

    def __init__(self):
        self.keys = [jwk(RSA_KEY, "rsa-1", "RS256"), jwk(EC_KEY, "ec-1")]
        self.jwks_reads = 0
        self.url = ""

    async def discovery(self, request):
        return web.json_response({"issuer": self.url, "jwks_uri": f"{self.url}/keys"})

    async def jwks(self, request):
        self.jwks_reads += 1
        return web.json_response({"keys": self.keys})

    def sign(self, private_key=RSA_KEY, kid="rsa-1", algorithm="RS256", **claims) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "aud": AUDIENCE, "sub": "u-123", "preferred_username": "alice",
                   "iat": now, "exp": now + 300} | claims
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, private_key, algorithm=algorithm,
                          headers={"kid": kid} if kid else None)

    def verifier(self, **settings) -> OidcVerifier:
        return OidcVerifier(AuthConfig(**({"oidc_issuer": self.url, "oidc_audience": AUDIENCE} | settings)))


@pytest.fixture
async def issuer():
    issuer = Issuer()
    app = web.Application()
    app.router.add_get("/realm/.well-known/openid-configuration", issuer.discovery)
    app.router.add_get("/realm/keys", issuer.jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    issuer.url = f"http://127.0.0.1:{runner.addresses[0][1]}/realm"
    yield issuer
    await runner.cleanup()


async def refused(verifier: OidcVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    assert token not in caught.value.message
    return caught.value.message


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_a_good_token_gives_its_claims_through_the_discovery_document(issuer):
    token = issuer.sign(groups=["ml", "dev"])
    claims = await issuer.verifier(oidc_admin_groups=["platform"]).verify(token)
    assert (claims.username, claims.groups, claims.is_admin) == ("alice", ("ml", "dev"), False)
    assert claims.expires_at == jwt.decode(token, options={"verify_signature": False})["exp"]
    assert issuer.jwks_reads == 1


async def test_an_audience_in_a_list_is_accepted_and_none_configured_accepts_any(issuer):
    assert (await issuer.verifier().verify(issuer.sign(aud=["other", AUDIENCE]))).username == "alice"
    assert (await issuer.verifier(oidc_audience="").verify(issuer.sign(aud="other"))).username == "alice"


async def test_expired_and_not_yet_valid_tokens_are_refused_beyond_the_clock_skew(issuer):
    verifier, now = issuer.verifier(oidc_clock_skew_seconds=60), int(time.time())
    assert "expired at" in await refused(verifier, issuer.sign(exp=now - 120))
    assert "not valid before" in await refused(verifier, issuer.sign(nbf=now + 300))
    assert "issued in the future" in await refused(verifier, issuer.sign(iat=now + 300))
    within = issuer.sign(exp=now - 30, nbf=now + 30, iat=now + 30)
    assert (await verifier.verify(within)).username == "alice"


async def test_a_token_without_exp_or_for_another_audience_or_issuer_is_refused(issuer):
    verifier = issuer.verifier()
    assert "no 'exp' claim" in await refused(verifier, issuer.sign(exp=None))
    message = await refused(verifier, issuer.sign(aud="someone-else"))
    assert "audience 'someone-else'" in message and "'mlgrid'" in message
    message = await refused(verifier, issuer.sign(iss="https://evil.example"))
    assert "issued by 'https://evil.example'" in message


async def test_a_token_signed_by_another_key_is_refused(issuer):
    message = await refused(issuer.verifier(), issuer.sign(private_key=OTHER_RSA_KEY))
    assert "signature does not verify" in message


async def test_unsigned_and_symmetric_tokens_are_refused(issuer):
    verifier = issuer.verifier()
    unsigned = jwt.encode({"iss": issuer.url, "aud": AUDIENCE, "preferred_username": "alice",
                           "exp": int(time.time()) + 300}, None, algorithm="none")
    assert unsigned.endswith(".") and is_jwt(unsigned)
    assert "alg: none" in await refused(verifier, unsigned)
    # Key confusion: HS256 with the issuer's public key (which anyone has) as the HMAC secret.
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    payload = b64(json.dumps({"iss": issuer.url, "aud": AUDIENCE, "preferred_username": "admin",
                              "exp": int(time.time()) + 300}).encode())
    signature = b64(hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert "signed with HS256, which is not accepted" in await refused(verifier, f"{header}.{payload}.{signature}")


async def test_a_key_is_used_only_for_its_own_kind_of_algorithm(issuer):
    verifier = issuer.verifier()
    # An ES256 token naming the RSA key, and an RS384 token naming the RSA key that is RS256 only.
    assert "is a RSA key" in await refused(verifier, issuer.sign(private_key=EC_KEY, algorithm="ES256"))
    assert "for RS256" in await refused(verifier, issuer.sign(algorithm="RS384"))
    assert (await verifier.verify(issuer.sign(private_key=EC_KEY, kid="ec-1", algorithm="ES256"))).username == "alice"


async def test_key_rotation_fetches_an_unknown_kid_at_once_but_not_more_often_than_every_ten_seconds(issuer):
    verifier = issuer.verifier()
    await verifier.verify(issuer.sign())
    assert issuer.jwks_reads == 1
    issuer.keys = [jwk(OTHER_RSA_KEY, "rsa-2", "RS256")]  # the issuer rotated its key
    claims = await verifier.verify(issuer.sign(private_key=OTHER_RSA_KEY, kid="rsa-2"))
    assert claims.username == "alice" and issuer.jwks_reads == 2
    message = await refused(verifier, issuer.sign(private_key=OTHER_RSA_KEY, kid="rsa-3"))
    assert "key id 'rsa-3', which the issuer does not publish" in message
    assert issuer.jwks_reads == 2  # the previous read was less than ten seconds ago
    assert "key id 'rsa-1'" in await refused(verifier, issuer.sign(groups=["x"]))  # the old key is gone


async def test_a_verified_token_is_kept_and_keys_are_read_again_after_the_refresh_period(issuer):
    verifier = issuer.verifier(oidc_jwks_refresh_seconds=0)
    token = issuer.sign()
    await verifier.verify(token)
    assert (await verifier.verify(token)).username == "alice"
    assert issuer.jwks_reads == 1  # the second verify was a look-up
    await verifier.verify(issuer.sign(sub="other"))
    assert issuer.jwks_reads == 2  # a new token, and the refresh period (0 s) is over


async def test_a_jwks_url_is_used_without_discovery(issuer):
    verifier = issuer.verifier(oidc_issuer="https://idp.example", oidc_jwks_url=f"{issuer.url}/keys")
    claims = await verifier.verify(issuer.sign(iss="https://idp.example"))
    assert claims.username == "alice" and issuer.jwks_reads == 1


async def test_the_username_claim_is_required_and_groups_make_admins(tmp_path, issuer):
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk(EC_KEY, "ec-1"), jwk(ED_KEY, "ed-1")]}))
    verifier = issuer.verifier(oidc_jwks_file=str(jwks_file), oidc_admin_groups=["mlgrid-admins"],
                               oidc_username_claim="email", oidc_groups_claim="realm_access.roles")

    def sign(**claims):
        return issuer.sign(private_key=EC_KEY, kid="ec-1", algorithm="ES256", **({"email": "bob@example.com"} | claims))

    message = await refused(verifier, sign(email=None))
    assert "no 'email' claim" in message and "MLGRID_AUTH_OIDC_USERNAME_CLAIM" in message
    admin = await verifier.verify(sign(realm_access={"roles": ["dev", "mlgrid-admins"]}))
    assert (admin.username, admin.groups, admin.is_admin) == ("bob@example.com", ("dev", "mlgrid-admins"), True)
    spaced = await verifier.verify(sign(realm_access={"roles": "dev, mlgrid-admins ops"}))
    assert spaced.groups == ("dev", "mlgrid-admins", "ops") and spaced.is_admin
    ed = issuer.sign(private_key=ED_KEY, kid="ed-1", algorithm="EdDSA", email="eve@example.com")
    assert (await verifier.verify(ed)).is_admin is False
    assert issuer.jwks_reads == 0


async def test_an_unreachable_issuer_is_unavailable_and_garbage_is_unauthenticated(issuer):
    verifier = issuer.verifier(oidc_jwks_url="http://127.0.0.1:9/keys")
    with pytest.raises(Unavailable, match="cannot read the OIDC issuer's signing keys"):
        await verifier.verify(issuer.sign())
    assert "not a well-formed JWT" in await refused(verifier, "mlg_abcdef")
    assert "header does not decode" in await refused(verifier, "abc.def.ghi")


def test_is_jwt_tells_a_jwt_from_an_access_token():
    assert is_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    assert not is_jwt("mlg_0123456789abcdef")
    assert not is_jwt("a.b")
    assert not is_jwt("a.b.c.d")
    assert not is_jwt("a+b.c.d")
