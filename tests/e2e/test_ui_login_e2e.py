"""The web UI's sign-in over HTTP against real `mlgrid server --auth` processes: the form and its session
cookie (HttpOnly, SameSite=Lax, Secure behind HTTPS), which then works for /ajax-api, /api and the artifact
routes until sign-out revokes it; no open redirect; and the OIDC authorization code flow with PKCE against a
fake identity provider (a real aiohttp app on loopback, consenting at once) whose id_tokens the services
verify with its published keys."""
import asyncio
import base64
import hashlib
import secrets
import sys
import threading
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from aiohttp import web
from conftest import ADMIN, ADMIN_PASSWORD, _clean_env, free_port, running, unique
from conftest import AUTH_CACHE_SECONDS as CACHE_SECONDS
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

SESSION = "mlgrid_session"


def sign_in(url: str, username=ADMIN, password=ADMIN_PASSWORD, next_path="/", **headers) -> requests.Response:
    return requests.post(f"{url}/login", data={"username": username, "password": password, "next": next_path},
                         headers=headers, allow_redirects=False, timeout=10)


def set_cookie(response: requests.Response) -> str:
    return response.headers["Set-Cookie"]


def as_session(cookie: str) -> dict:
    return {"Cookie": f"{SESSION}={cookie}"}


def test_wrong_password_is_401_with_the_form_again(auth_server):
    answer = sign_in(auth_server["url"], password="not the password!", next_path="/#/models")
    assert answer.status_code == 401 and SESSION not in answer.headers.get("Set-Cookie", "")
    assert "Wrong username or password." in answer.text and '<form method="post" action="/login">' in answer.text
    assert 'name="next" value="/#/models"' in answer.text
    assert not answer.headers["WWW-Authenticate"].startswith("Basic")  # no browser password dialog
    page = requests.get(f"{auth_server['url']}/login", timeout=10)
    assert page.status_code == 200 and 'name="password"' in page.text
    assert "single sign-on" not in page.text  # no OIDC client set up


@pytest.mark.parametrize("next_path", [
    "//evil.example/x", "https://evil.example/", "/\\evil.example", "\\\\evil.example", "/\t/evil.example",
    "javascript:alert(1)", "evil.example", "",
])
def test_next_never_leaves_the_site(auth_server, next_path):
    answer = sign_in(auth_server["url"], next_path=next_path)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    page = requests.get(f"{auth_server['url']}/login", params={"next": next_path}, timeout=10)
    assert 'name="next" value="/"' in page.text


def test_the_session_cookie_signs_in_every_route_until_sign_out(auth_server):
    url = auth_server["url"]
    answer = sign_in(url, next_path="/#/experiments/0?view=charts")
    assert answer.status_code == 303 and answer.headers["Location"] == "/#/experiments/0?view=charts"
    cookie = set_cookie(answer)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie and "Secure" not in cookie
    assert f"Max-Age={12 * 3600}" in cookie  # MLGRID_AUTH_SESSION_HOURS' default
    secret = answer.cookies[SESSION]
    assert secret.startswith("mlg_")
    session = as_session(secret)
    me = requests.get(f"{url}/ajax-api/2.0/mlflow/users/current", headers=session, timeout=10).json()["user"]
    assert (me["username"], me["is_admin"]) == (ADMIN, True)
    created = requests.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": unique("cookie")},
                            headers=session, timeout=10)
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    path = f"{experiment_id}/notes.txt"
    put = requests.put(f"{url}/api/2.0/mlflow-artifacts/artifacts/{path}", data=b"hello", headers=session, timeout=10)
    assert put.status_code == 200, put.text
    got = requests.get(f"{url}/ajax-api/2.0/mlflow-artifacts/artifacts/{path}", headers=session, timeout=10)
    assert got.content == b"hello"
    # A change asked by a page of another origin is not made with the cookie.
    foreign = requests.post(f"{url}/ajax-api/2.0/mlflow/experiments/create", json={"name": unique("csrf")},
                            headers=session | {"Origin": "http://evil.example"}, timeout=10)
    assert foreign.status_code == 401
    # Signing in again from a session is refused: a session is made with a password or an OIDC token.
    again = requests.post(f"{url}/api/2.0/mlgrid/sessions/create", json={"expires_in_seconds": 60}, headers=session,
                          timeout=10)
    assert again.status_code == 403, again.text

    out = requests.post(f"{url}/logout", headers=session, allow_redirects=False, timeout=10)
    assert out.status_code == 303 and out.headers["Location"] == "/login"
    assert f'{SESSION}=""' in set_cookie(out) and "Max-Age=0" in set_cookie(out)
    time.sleep(CACHE_SECONDS + 0.5)
    for route in ("/ajax-api/2.0/mlflow/users/current", "/api/2.0/mlflow/experiments/search?max_results=1",
                  f"/api/2.0/mlflow-artifacts/artifacts/{path}"):
        assert requests.get(url + route, headers=session, timeout=10).status_code == 401, route


def test_the_cookie_is_secure_behind_https_and_json_sign_in_answers_json(auth_server):
    answer = sign_in(auth_server["url"], **{"X-Forwarded-Proto": "https"})
    assert answer.status_code == 303 and "Secure" in set_cookie(answer)
    as_json = requests.post(f"{auth_server['url']}/login", json={"username": ADMIN, "password": ADMIN_PASSWORD},
                            timeout=10)
    assert as_json.status_code == 200 and as_json.json()["username"] == ADMIN and SESSION in as_json.cookies
    wrong = requests.post(f"{auth_server['url']}/login", json={"username": ADMIN, "password": "nope, not it"},
                          timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error_code"] == "UNAUTHENTICATED"
    foreign = sign_in(auth_server["url"], Origin="http://evil.example")  # login CSRF
    assert foreign.status_code == 403 and SESSION not in foreign.headers.get("Set-Cookie", "")


# ---------------------------------------------------------------- OIDC

CLIENT_ID, CLIENT_SECRET = "mlgrid-ui", "a client secret"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeIdP:
    """An OIDC identity provider on loopback: discovery, JWKS, an authorization endpoint that consents at once
    for `self.user` and a token endpoint that checks the client and the PKCE verifier; `fail_token` makes the
    token endpoint refuse, `wrong_nonce` sign an id_token of another sign-in."""

    def __init__(self):
        self.url = ""
        self.user = {"preferred_username": "alice", "groups": []}
        self.fail_token = False
        self.wrong_nonce = False
        self.codes: dict[str, dict] = {}
        self.app = web.Application()
        self.app.router.add_get("/.well-known/openid-configuration", self.discovery)
        self.app.router.add_get("/keys", self.keys)
        self.app.router.add_get("/authorize", self.authorize)
        self.app.router.add_post("/token", self.token)

    async def discovery(self, request):
        return web.json_response({
            "issuer": self.url, "authorization_endpoint": f"{self.url}/authorize", "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/keys", "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        })

    async def keys(self, request):
        return web.json_response({"keys": [RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True) | {"kid": "k1"}]})

    async def authorize(self, request):
        q = request.query
        assert (q["response_type"], q["client_id"], q["code_challenge_method"]) == ("code", CLIENT_ID, "S256")
        assert set(q["scope"].split()) >= {"openid", "profile", "email", "groups"}
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": q["code_challenge"], "nonce": q["nonce"], "redirect_uri": q["redirect_uri"],
                            "user": dict(self.user)}
        raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")

    async def token(self, request):
        form = await request.post()
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        grant = self.codes.pop(form.get("code"), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (self.fail_token or request.headers.get("Authorization") != expected or grant is None
                or form.get("client_id") != CLIENT_ID or challenge != grant["challenge"]
                or form.get("redirect_uri") != grant["redirect_uri"]):
            return web.json_response({"error": "invalid_grant", "error_description": "code or verifier refused"},
                                     status=400)
        now = int(time.time())
        claims = {"iss": self.url, "aud": CLIENT_ID, "sub": secrets.token_hex(8), "iat": now, "exp": now + 300,
                  "nonce": "another sign-in's" if self.wrong_nonce else grant["nonce"]} | grant["user"]
        return web.json_response({"access_token": "opaque", "token_type": "Bearer",
                                  "id_token": jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1"})})


@pytest.fixture(scope="module")
def idp():
    """The fake identity provider, served from its own event loop in a thread."""
    idp, loop, started = FakeIdP(), asyncio.new_event_loop(), threading.Event()
    runner = web.AppRunner(idp.app)

    async def start():
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        idp.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    started.wait(10)
    yield idp
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


@pytest.fixture(scope="module")
def oidc_server(idp, tmp_path_factory):
    """`mlgrid server --auth` with the fake IdP as its OIDC issuer and the UI's client."""
    workdir = tmp_path_factory.mktemp("oidc-server")
    grpc_port, http_port = free_port(), free_port()
    env = {**_clean_env(), "MLGRID_ADMIN_USERNAME": ADMIN, "MLGRID_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "MLGRID_AUTH_CACHE_SECONDS": str(CACHE_SECONDS), "MLGRID_AUTH_OIDC_ISSUER": idp.url,
           "MLGRID_AUTH_OIDC_AUDIENCE": CLIENT_ID, "MLGRID_AUTH_OIDC_CLIENT_ID": CLIENT_ID,
           "MLGRID_AUTH_OIDC_CLIENT_SECRET": CLIENT_SECRET, "MLGRID_AUTH_OIDC_ADMIN_GROUPS": "mlgrid-admins"}
    args = ["-m", "mlgrid.cli.main", "server", "--auth", "--host", "127.0.0.1", "--grpc-port", str(grpc_port),
            "--port", str(http_port), "--backend-store-uri", f"sqlite:///{workdir}/mlgrid.db",
            "--artifacts-destination", str(workdir / "mlartifacts")]
    with running([sys.executable, *args], http_port, workdir, env, "server"):
        yield f"http://127.0.0.1:{http_port}"


def test_oidc_sign_in_makes_a_session_for_the_oidc_user(idp, oidc_server):
    page = requests.get(f"{oidc_server}/login", params={"next": "/#/models"}, timeout=10)
    assert "Sign in with single sign-on" in page.text and "/oidc/login?next=%2F%23%2Fmodels" in page.text
    for username, groups, admin in ((unique("alice"), [], False), (unique("root"), ["mlgrid-admins"], True)):
        idp.user = {"preferred_username": username, "groups": groups}
        browser = requests.Session()
        start = browser.get(f"{oidc_server}/oidc/login", params={"next": "/#/models"}, allow_redirects=False, timeout=10)
        assert start.status_code == 302 and start.headers["Location"].startswith(f"{idp.url}/authorize?")
        sent = parse_qs(urlsplit(start.headers["Location"]).query)
        assert sent["redirect_uri"] == [f"{oidc_server}/oidc/callback"] and len(sent["code_challenge"][0]) == 43
        flow = start.headers["Set-Cookie"]
        assert "HttpOnly" in flow and "SameSite=Lax" in flow and "Path=/oidc/" in flow
        done = browser.get(start.headers["Location"], timeout=10)  # the IdP consents and sends the browser back
        assert done.status_code == 200 and done.url == f"{oidc_server}/#/models", done.text  # at next
        assert [r.status_code for r in done.history] == [302, 303]
        assert done.history[-1].headers["Location"] == "/#/models"
        me = browser.get(f"{oidc_server}/ajax-api/2.0/mlflow/users/current", timeout=10).json()
        assert (me["user"]["username"], me["user"]["is_admin"], me["is_basic_auth"]) == (username, admin, False)
        search = browser.get(f"{oidc_server}/api/2.0/mlflow/registered-models/search", timeout=10)
        assert search.status_code == 200
        admin_client = requests.get(f"{oidc_server}/api/2.0/mlflow/users/get", params={"username": username},
                                    auth=(ADMIN, ADMIN_PASSWORD), timeout=10)
        assert admin_client.json()["user"]["is_admin"] is admin  # the user exists now, an admin by their groups


def test_oidc_failures_end_on_the_sign_in_page(idp, oidc_server):
    idp.user = {"preferred_username": unique("bob"), "groups": []}
    browser = requests.Session()

    def started_state() -> str:
        start = browser.get(f"{oidc_server}/oidc/login", allow_redirects=False, timeout=10)
        return parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]

    state = started_state()
    wrong = browser.get(f"{oidc_server}/oidc/callback", params={"code": "x", "state": "not the state"}, timeout=10)
    assert wrong.status_code == 400 and "its state differs" in wrong.text and 'name="password"' in wrong.text
    no_flow = requests.get(f"{oidc_server}/oidc/callback", params={"code": "x", "state": state}, timeout=10)
    assert no_flow.status_code == 400 and "its state differs" in no_flow.text  # no cookie of a flow started here

    refused = browser.get(f"{oidc_server}/oidc/callback", timeout=10, params={
        "state": started_state(), "error": "access_denied", "error_description": "user said no"})
    assert refused.status_code == 401 and "refused the sign-in (access_denied: user said no)" in refused.text

    idp.fail_token = True
    try:
        failed = browser.get(f"{oidc_server}/oidc/login", timeout=10)  # to the IdP and back: the exchange fails
    finally:
        idp.fail_token = False
    assert failed.status_code == 502 and "token endpoint failed" in failed.text and "code or verifier refused" in failed.text
    idp.wrong_nonce = True
    try:
        replayed = browser.get(f"{oidc_server}/oidc/login", timeout=10)
    finally:
        idp.wrong_nonce = False
    assert replayed.status_code == 400 and "its nonce differs" in replayed.text
    assert SESSION not in browser.cookies
