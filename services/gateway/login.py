"""The web UI's sign-in on the gateway's HTTP port: a session cookie made from a password or an OIDC sign-in.

    GET  /login?next=<path>     the sign-in page (a form; "Sign in with single sign-on" when OIDC is set up)
    POST /login                 username, password, next (a form or JSON) -> CreateSession -> the cookie, 303 to next
    POST /logout                EndSession, the cookie cleared, 303 to /login
    GET  /oidc/login?next=      to the issuer's authorization endpoint (authorization code with PKCE S256)
    GET  /oidc/callback         code -> the issuer's token endpoint -> id_token -> CreateSession -> the cookie

The session is an mlgrid access token of kind session (IdentityService.CreateSession, made with the user's
own credentials: Basic, or the OIDC id_token as Bearer, which the services verify themselves); the cookie
(rest.SESSION_COOKIE) holds its secret, HttpOnly, SameSite=Lax, Secure when the request came over HTTPS,
and rest.credentials() sends it to the backends as `Bearer <secret>`. What the OIDC flow must remember
between the redirect and the callback (PKCE verifier, state, nonce, next) waits in a short-lived cookie
on /oidc/. `next` is only ever a path of this site (no open redirect). Every failure ends on the sign-in
page with a message.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import logging
import secrets
import time
from urllib.parse import urlencode, urlsplit

import aiohttp
import grpc
import jwt
from aiohttp import web

from mlgrid.v1 import identity_pb2 as pb
from mlgrid.v1 import identity_pb2_grpc
from services.common.config import AuthConfig
from services.gateway.rest import SESSION_COOKIE, RestGateway, foreign_origin

log = logging.getLogger("mlgrid.gateway.login")

IDENTITY = "mlgrid.v1.IdentityService"
FLOW_COOKIE = "mlgrid_oidc"
FLOW_SECONDS = 600  # how long a sign-in at the identity provider may take
SCOPE = "openid profile email groups"
DISCOVERY_SECONDS = 3600
IDP_TIMEOUT = aiohttp.ClientTimeout(total=10)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · mlgrid</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/app.css">
</head>
<body>
<header><a class="brand" href="/">mlgrid</a></header>
<main>
<section class="card sign-in">
<h2>Sign in</h2>
{message}
<form method="post" action="/login">
<input type="hidden" name="next" value="{next}">
<label>Username <input name="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
{sso}
</section>
</main>
</body>
</html>
"""


def safe_next(value: str | None) -> str:
    """`value` if it is a path of this site (`/...`), else `/`: never `//host`, `https://...`, a backslash
    (browsers read `/\\host` as `//host`) or a control character (they drop tabs and newlines)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return "/"
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else "/"


def is_https(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https"


def origin(request: web.Request) -> str:
    """This gateway's origin as the browser sees it (through a proxy: X-Forwarded-Proto and -Host)."""
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
    return f"{'https' if is_https(request) else request.scheme}://{host}"


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SignIn:
    def __init__(self, rest: RestGateway):
        self.auth: AuthConfig = rest.auth
        self.timeout = rest.timeout
        backend = rest.backends.get(IDENTITY)
        self.identity = identity_pb2_grpc.IdentityServiceStub(backend.channel) if backend and backend.channel else None
        self.sso = bool(self.auth.oidc_issuer and self.auth.oidc_client_id)
        self._client: aiohttp.ClientSession | None = None
        self._discovery: tuple[float, dict] | None = None

    # ------------------------------------------------------------ the page and the form

    def page(self, next_path: str = "/", message: str = "", status: int = 200) -> web.Response:
        sso = ""
        if self.sso:
            href = "/oidc/login?" + urlencode({"next": next_path})
            sso = f'<p class="or">or</p><a class="button sso" href="{html.escape(href)}">Sign in with single sign-on</a>'
        body = PAGE.format(
            message=f'<div class="error">{html.escape(message)}</div>' if message else "",
            next=html.escape(next_path), sso=sso,
        )
        return web.Response(text=body, status=status, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def show(self, request: web.Request) -> web.Response:
        return self.page(safe_next(request.query.get("next")))

    async def sign_in(self, request: web.Request) -> web.Response:
        as_json = request.content_type == "application/json"
        try:
            fields = await request.json() if as_json else dict(await request.post())
        except ValueError:
            fields = None
        if not isinstance(fields, dict):
            return self.refuse(as_json, "/", "Send a username and a password.", 400)
        next_path = safe_next(str(fields.get("next") or "/"))
        username, password = str(fields.get("username") or ""), str(fields.get("password") or "")
        if foreign_origin(request):
            return self.refuse(as_json, next_path, "Sign in from this site's own sign-in page.", 403)
        if not username or not password:
            return self.refuse(as_json, next_path, "Enter your username and password.", 400)
        basic = base64.b64encode(f"{username}:{password}".encode()).decode()
        return await self.open_session(request, f"Basic {basic}", next_path, "Wrong username or password.", as_json)

    def refuse(self, as_json: bool, next_path: str, message: str, status: int) -> web.Response:
        if as_json:
            return web.json_response({"error_code": "UNAUTHENTICATED" if status == 401 else "INVALID_PARAMETER_VALUE",
                                      "message": message}, status=status)
        return self.page(next_path, message, status)

    async def open_session(self, request: web.Request, authorization: str, next_path: str, refused: str,
                           as_json: bool = False) -> web.Response:
        """CreateSession with these credentials; the cookie and a 303 to next, or the page saying why not
        (`refused` when the credentials do not verify)."""
        if self.identity is None:
            return self.refuse(as_json, next_path, "The identity service has no address: sign-in is unavailable.", 503)
        seconds = max(1, int(self.auth.session_hours * 3600))
        try:
            session = await self.identity.CreateSession(
                pb.CreateSessionRequest(expires_in_seconds=seconds),
                metadata=(("authorization", authorization),), timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                return self.refuse(as_json, next_path, refused.format(error.details()), 401)
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                return self.refuse(as_json, next_path, "Sign-in is not needed: authentication is off.", 400)
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return self.refuse(as_json, next_path, "The identity service does not answer; try again.", 503)
            log.warning("CreateSession: %s %s", code.name, error.details())
            return self.refuse(as_json, next_path, f"Sign-in refused: {error.details()}", 401 if as_json else 403)
        response = (web.json_response({"username": session.username, "expires_ms": session.expires_ms}) if as_json
                    else see_other(next_path))
        response.set_cookie(SESSION_COOKIE, session.secret, max_age=seconds, path="/", httponly=True,
                            samesite="Lax", secure=is_https(request) or None)
        return response

    async def sign_out(self, request: web.Request) -> web.Response:
        secret = request.cookies.get(SESSION_COOKIE)
        if secret and self.identity is not None and not foreign_origin(request):
            try:
                await self.identity.EndSession(pb.EndSessionRequest(), metadata=(("authorization", f"Bearer {secret}"),),
                                               timeout=self.timeout)
            except grpc.aio.AioRpcError as error:  # ended or expired already: signed out all the same
                log.info("EndSession: %s %s", error.code().name, error.details())
        response = see_other("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # ------------------------------------------------------------ OIDC: authorization code with PKCE

    async def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=IDP_TIMEOUT)
        return self._client

    async def discovery(self) -> dict:
        """The issuer's discovery document, fetched once an hour."""
        if self._discovery is not None and time.monotonic() - self._discovery[0] < DISCOVERY_SECONDS:
            return self._discovery[1]
        url = self.auth.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
        async with (await self.client()).get(url, headers={"Accept": "application/json"}) as answer:
            answer.raise_for_status()
            document = await answer.json(content_type=None)
        if not isinstance(document, dict) or not {"authorization_endpoint", "token_endpoint"} <= document.keys():
            raise ValueError(f"{url} names no authorization_endpoint and token_endpoint")
        self._discovery = (time.monotonic(), document)
        return document

    def redirect_uri(self, request: web.Request) -> str:
        return origin(request) + "/oidc/callback"

    async def oidc_login(self, request: web.Request) -> web.Response:
        next_path = safe_next(request.query.get("next"))
        if not self.sso:
            return self.page(next_path, "Single sign-on is not set up on this server.", 404)
        try:
            document = await self.discovery()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("OIDC discovery of %s: %s", self.auth.oidc_issuer, error)
            return self.page(next_path, "The identity provider does not answer; try again later.", 503)
        verifier, state, nonce = secrets.token_urlsafe(48), secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        query = urlencode({
            "response_type": "code", "client_id": self.auth.oidc_client_id, "redirect_uri": self.redirect_uri(request),
            "scope": SCOPE, "state": state, "nonce": nonce,
            "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256",
        })
        endpoint = document["authorization_endpoint"]
        response = web.Response(status=302, headers={"Location": f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"})
        flow = _b64(json.dumps({"verifier": verifier, "state": state, "nonce": nonce, "next": next_path}).encode())
        response.set_cookie(FLOW_COOKIE, flow, max_age=FLOW_SECONDS, path="/oidc/", httponly=True, samesite="Lax",
                            secure=is_https(request) or None)
        return response

    async def oidc_callback(self, request: web.Request) -> web.Response:
        flow = _flow(request.cookies.get(FLOW_COOKIE, ""))
        response = await self._callback(request, flow)
        response.del_cookie(FLOW_COOKIE, path="/oidc/")
        return response

    async def _callback(self, request: web.Request, flow: dict | None) -> web.Response:
        next_path = safe_next(flow.get("next")) if flow else "/"
        query = request.query
        if not self.sso:
            return self.page(next_path, "Single sign-on is not set up on this server.", 404)
        if flow is None or not query.get("state") or not secrets.compare_digest(query["state"], flow["state"]):
            return self.page(next_path, "The sign-in could not be matched to one started here (its state differs, "
                                        "or it took too long): sign in again.", 400)
        if "error" in query:
            said = ": ".join(filter(None, (query.get("error"), query.get("error_description"))))
            return self.page(next_path, f"The identity provider refused the sign-in ({said}).", 401)
        if not query.get("code"):
            return self.page(next_path, "The identity provider sent no authorization code.", 400)
        try:
            id_token = await self._exchange(request, query["code"], flow["verifier"])
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning("OIDC token exchange at %s: %s", self.auth.oidc_issuer, error)
            return self.page(next_path, f"The identity provider's token endpoint failed: {error}", 502)
        try:  # the id_token came straight from the token endpoint; the services verify its signature and claims
            claims = jwt.decode(id_token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return self.page(next_path, "The identity provider sent an id_token that is no JWT.", 502)
        if not secrets.compare_digest(str(claims.get("nonce", "")), flow["nonce"]):
            return self.page(next_path, "The id_token is not the one this sign-in asked for (its nonce differs).", 400)
        return await self.open_session(request, f"Bearer {id_token}", next_path,
                                       "The identity provider's id_token was refused: {}")

    async def _exchange(self, request: web.Request, code: str, verifier: str) -> str:
        """The id_token for an authorization code (ValueError or aiohttp.ClientError saying why not)."""
        document = await self.discovery()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri(request),
                "client_id": self.auth.oidc_client_id, "code_verifier": verifier}
        auth = None
        if self.auth.oidc_client_secret:  # a confidential client: HTTP Basic (the spec's default), else in the form
            if "client_secret_basic" in document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"]):
                auth = aiohttp.BasicAuth(self.auth.oidc_client_id, self.auth.oidc_client_secret)
            else:
                form["client_secret"] = self.auth.oidc_client_secret
        async with (await self.client()).post(document["token_endpoint"], data=form, auth=auth,
                                              headers={"Accept": "application/json"}) as answer:
            try:
                body = await answer.json(content_type=None)
            except ValueError:
                body = {}
            if answer.status != 200:
                said = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
                raise ValueError(f"HTTP {answer.status}" + (f" ({said})" if said else ""))
        id_token = body.get("id_token") if isinstance(body, dict) else None
        if not id_token or not isinstance(id_token, str):
            raise ValueError("its answer holds no id_token")
        return id_token

    async def close(self, app: web.Application) -> None:
        if self._client is not None:
            await self._client.close()


def _flow(cookie: str) -> dict | None:
    try:
        flow = json.loads(_unb64(cookie))
    except (ValueError, binascii.Error):
        return None
    keys = ("verifier", "state", "nonce", "next")
    return flow if isinstance(flow, dict) and all(isinstance(flow.get(k), str) for k in keys) else None


def add_routes(app: web.Application, rest: RestGateway) -> None:
    sign_in = SignIn(rest)
    app.router.add_get("/login", sign_in.show)
    app.router.add_post("/login", sign_in.sign_in)
    app.router.add_post("/logout", sign_in.sign_out)
    app.router.add_get("/oidc/login", sign_in.oidc_login)
    app.router.add_get("/oidc/callback", sign_in.oidc_callback)
    app.on_cleanup.append(sign_in.close)
