"""The permission matrix (issue 15): every route of the gateway's HTTP app and every RPC of tracking, the
registry and artifacts, tried by six callers against a real `mlgrid server --auth` (default permission
NO_PERMISSIONS): anonymous, `none` (no grant), `denied` (DENY, over a role's READ on everything), `reader`,
`editor` and `manager` (READ, EDIT, MANAGE on the shared experiment and registered model).

The routes are read from the app the server builds (services.gateway.rest.RestGateway), so a route added
later is tried, and fails until permission_cases.py has a request for it. The outcome each case must have is
derived from the rule tables of services/*/access.py (what the rule reads from the request, the permission it
needs): allowed → 2xx; a caller who may not read the resource → 404 RESOURCE_DOES_NOT_EXIST, as if it were
absent; one who may read but not do it → 403 PERMISSION_DENIED naming the permission; no credentials → 401
with a challenge (UNAUTHENTICATED over gRPC). A 5xx anywhere fails.
"""
import collections
import string

import grpc
import pytest
import requests
from google.protobuf import descriptor_pool, message_factory
from permission_cases import (
    ANONYMOUS,
    ARTIFACTS,
    BODIES,
    DENIED,
    GRPC_OK_CODES,
    GRPC_REQUESTS,
    HAND_WRITTEN,
    HIDDEN,
    IDENTITY,
    LEVELS,
    LOGGED_MODEL_ARTIFACTS,
    OK,
    REGISTRY,
    REST_OWN_ERRORS,
    RULES,
    SHOWS,
    TRACKING,
    UNAUTHENTICATED,
    USERS,
    Admin,
    Case,
    expected,
    make_world,
)

from services.common.config import GatewayConfig
from services.gateway.mlflow_json import Codecs, endpoint
from services.gateway.rest import RestGateway
from services.gateway.rest_routes import routes
from services.gateway.service import backends
from services.identity.model import Permission

pytestmark = pytest.mark.xdist_group("permission-matrix")

CODECS = Codecs()
SERVER_ERRORS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS,
                 grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED}
TRIED = collections.Counter()  # (side, outcome) -> cases tried
SERVER_FAILURES = []


def app_routes() -> dict:
    """(verb, canonical path) -> the annotated Route it serves (None for a hand-written one), as the server's
    HTTP app has them (built with no backend addresses: nothing is called)."""
    config = GatewayConfig()
    gateway = RestGateway(backends(config), config)
    derived = {(r.verb, r.path): r for r in routes(list(gateway.backends))}
    return {(r.method, r.resource.canonical): derived.get((r.method, r.resource.canonical))
            for r in gateway.app.router.routes() if r.method != "HEAD"}


ROUTES = app_routes()
# One REST route per RPC, for decoding its JSON request into the message the gRPC cases send.
ROUTE_OF = {route.rpc: route for route in ROUTES.values() if route is not None}
GRPC_SERVICES = (TRACKING, REGISTRY, ARTIFACTS)
METHODS = [(service, method) for service in GRPC_SERVICES
           for method in descriptor_pool.Default().FindServiceByName(service).methods]


@pytest.fixture(scope="module")
def admin(auth_server):
    return Admin(auth_server["url"])


@pytest.fixture(scope="module")
def world(admin):
    return make_world(admin)


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def channel(auth_server):
    with grpc.insecure_channel(auth_server["grpc"].removeprefix("grpc://")) as channel:
        yield channel


def decoded(route, body: dict):
    """The request message the gateway makes of `body` on this route."""
    return endpoint(route.annotated_path, route.method, CODECS).decode(dict(body))[0]


def check_visibility(user: str, rpc: str, service: str, text: str, world) -> None:
    """A 2xx answer shows `none` and `denied` nothing of the shared resources; a search shows them to readers."""
    if service == IDENTITY:
        return  # the caller's own grants name what they were granted (or denied)
    if LEVELS.get(user, Permission.NO_PERMISSIONS).allows(Permission.READ):
        if rpc in SHOWS:
            assert getattr(world, SHOWS[rpc]) in text, f"{user} may read it, yet {rpc} left it out: {text[:300]}"
    else:
        leaked = [secret for secret in world.secrets if secret in text]
        assert not leaked, f"{user} may not read {leaked}, yet {rpc} answered them: {text[:300]}"


@pytest.mark.parametrize(("verb", "path", "user"), [(verb, path, user) for verb, path in ROUTES for user in USERS],
                         ids=lambda value: value)
def test_rest_route(verb, path, user, world, admin, http, auth_server):
    route = ROUTES[(verb, path)]
    case = Case(world, admin, user)
    if route is not None:
        rpc, service = route.method.name, route.service
        assert rpc in BODIES, f"{verb} {path} serves {rpc}: add a request for it to permission_cases.BODIES"
        body = BODIES[rpc](case)
        message = decoded(route, body)
        names = [name for _, name, _, _ in string.Formatter().parse(path) if name]
        url = path.format(**{name: body.pop(name) for name in names})
        kwargs = {"params": body} if verb == "GET" else {"json": body}
        rule = RULES[service][rpc]
    else:
        assert (verb, path) in HAND_WRITTEN, f"{verb} {path} is a new route: classify it in permission_cases.HAND_WRITTEN"
        rpc, build = HAND_WRITTEN[(verb, path)]
        request = build(case)
        service, message, url = ARTIFACTS, request.message, request.path
        kwargs = {"params": request.params, "data": request.data, "json": request.json}
        rule = RULES[ARTIFACTS][rpc] if rpc else None
        if rpc is None:  # a public route, or one that takes its credentials from the form or the cookie
            answer = http.request(verb, auth_server["url"] + url, headers=case.headers(), timeout=30, **kwargs)
            TRIED["rest", "public"] += 1
            said = f"{verb} {url} as {user}: {answer.status_code} {answer.text[:300]}"
            if answer.status_code >= 500:
                SERVER_FAILURES.append(said)
            assert answer.status_code in request.statuses, said
            if answer.status_code == 401:
                assert answer.headers.get("WWW-Authenticate"), f"a 401 without a challenge; {said}"
            return
    outcome, need = expected(rpc, rule, message, user, service)
    answer = http.request(verb, auth_server["url"] + url, headers=case.headers(), timeout=30, **kwargs)
    check_answer(answer, f"{verb} {url} as {user}", outcome, need, user, rpc, service, world)


@pytest.mark.parametrize(("verb", "rpc", "user"), [(verb, rpc, user) for verb, rpc in LOGGED_MODEL_ARTIFACTS
                                                   for user in USERS], ids=lambda value: value)
def test_proxied_artifacts_of_a_logged_model(verb, rpc, user, world, admin, http, auth_server):
    """The proxy's routes on a folder of the experiment outside every run (a logged model's) follow the
    experiment, as inside a run's folder."""
    request = LOGGED_MODEL_ARTIFACTS[verb, rpc](Case(world, admin, user))
    outcome, need = expected(rpc, RULES[ARTIFACTS][rpc], request.message, user, ARTIFACTS)
    answer = http.request(verb, auth_server["url"] + request.path, params=request.params, data=request.data,
                          headers=Case(world, admin, user).headers(), timeout=30)
    check_answer(answer, f"{verb} {request.path} as {user}", outcome, need, user, rpc, ARTIFACTS, world)


def check_answer(answer, what: str, outcome: str, need, user: str, rpc: str, service: str, world) -> None:
    """An HTTP answer is the outcome the rule requires, and never a 5xx."""
    TRIED["rest", outcome] += 1
    said = f"{what}: {answer.status_code} {answer.text[:300]}"
    if answer.status_code >= 500:
        SERVER_FAILURES.append(said)
    assert answer.status_code < 500, said

    error = answer.json() if outcome != OK and answer.headers.get("Content-Type", "").startswith("application/json") else {}
    if outcome == OK:
        assert 200 <= answer.status_code < 300 or answer.status_code == REST_OWN_ERRORS.get(rpc), f"expected success; {said}"
        check_visibility(user, rpc, service, answer.text, world)
    elif outcome == HIDDEN:
        assert (answer.status_code, error.get("error_code")) == (404, "RESOURCE_DOES_NOT_EXIST"), said
    elif outcome == DENIED:
        assert (answer.status_code, error.get("error_code")) == (403, "PERMISSION_DENIED"), said
        assert need is None or need.name in error["message"], f"a refusal must name {need.name}; {said}"
    else:
        assert outcome == UNAUTHENTICATED
        assert (answer.status_code, error.get("error_code")) == (401, "UNAUTHENTICATED"), said
        assert answer.headers.get("WWW-Authenticate"), f"a 401 without a challenge; {said}"


def call(channel, service: str, method, request, metadata) -> tuple[grpc.StatusCode, str, str]:
    """(status, details, the text of what was answered) of one call, streamed either way as the method is."""
    request_cls = type(request[0] if isinstance(request, list) else request)
    output_cls = message_factory.GetMessageClass(method.output_type)
    path = f"/{service}/{method.name}"
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary, (True, True): channel.stream_stream}
    stub = kind[method.client_streaming, method.server_streaming](
        path, request_serializer=request_cls.SerializeToString, response_deserializer=output_cls.FromString)
    argument = iter(request) if method.client_streaming else request
    # WatchEvents streams for as long as the caller listens: its first events, or a quiet second, will do.
    timeout = 1.0 if method.name == "WatchEvents" else 30
    answers = []
    try:
        if method.server_streaming:
            for answer in stub(argument, metadata=metadata, timeout=timeout):
                answers.append(answer)
                if method.name == "WatchEvents" and len(answers) >= 20:
                    break
        else:
            answers.append(stub(argument, metadata=metadata, timeout=timeout))
    except grpc.RpcError as error:
        if not (method.name == "WatchEvents" and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED):
            return error.code(), error.details() or "", ""
    return grpc.StatusCode.OK, "", "\n".join(str(answer) for answer in answers)


@pytest.mark.parametrize(("service", "rpc", "user"), [(service, method.name, user) for service, method in METHODS
                                                      for user in USERS], ids=lambda value: value.rsplit(".", 1)[-1])
def test_grpc_method(service, rpc, user, world, admin, channel):
    method = descriptor_pool.Default().FindServiceByName(service).methods_by_name[rpc]
    case = Case(world, admin, user)
    if rpc in GRPC_REQUESTS:
        request = GRPC_REQUESTS[rpc](case)
    else:
        full = f"/{service}/{rpc}"
        assert full in ROUTE_OF and rpc in BODIES, f"{full}: add a request for it to permission_cases.GRPC_REQUESTS"
        request = decoded(ROUTE_OF[full], BODIES[rpc](case))
    first = request[0] if isinstance(request, list) else request
    outcome, need = expected(rpc, RULES[service][rpc], first, user, service)
    metadata = (("authorization", case.headers()["Authorization"]),) if user != ANONYMOUS else ()
    code, details, text = call(channel, service, method, request, metadata)
    TRIED["grpc", outcome] += 1
    said = f"{rpc} as {user}: {code.name} {details[:300]}"
    if code in SERVER_ERRORS:
        SERVER_FAILURES.append(said)
    assert code not in SERVER_ERRORS, said

    if outcome == OK:
        assert code in GRPC_OK_CODES.get(rpc, {grpc.StatusCode.OK}), f"expected success; {said}"
        check_visibility(user, rpc, service, text, world)
    elif outcome == HIDDEN:
        assert code == grpc.StatusCode.NOT_FOUND, said
    elif outcome == DENIED:
        assert code == grpc.StatusCode.PERMISSION_DENIED, said
        assert need is None or need.name in details, f"a refusal must name {need.name}; {said}"
    else:
        assert code == grpc.StatusCode.UNAUTHENTICATED, said


def test_the_matrix_covered_every_route_and_method(request):
    """Runs after the matrix (last in this module): every case was tried, none answered 5xx."""
    matrix = ("test_rest_route", "test_proxied_artifacts_of_a_logged_model", "test_grpc_method")
    selected = sum(1 for item in request.session.items if item.module is request.module and item.originalname in matrix)
    rest_cases = (len(ROUTES) + len(LOGGED_MODEL_ARTIFACTS)) * len(USERS)
    rest, grpc_ = (sum(n for (side, _), n in TRIED.items() if side == kind) for kind in ("rest", "grpc"))
    print(f"\npermission matrix: ({len(ROUTES)} routes + {len(LOGGED_MODEL_ARTIFACTS)} on a logged model's "
          f"artifacts) x {len(USERS)} callers = {rest} REST cases, "
          f"{len(METHODS)} RPCs x {len(USERS)} callers = {grpc_} gRPC cases; outcomes {dict(TRIED)}; "
          f"{len(SERVER_FAILURES)} 5xx")
    assert not SERVER_FAILURES, SERVER_FAILURES
    if selected == rest_cases + len(METHODS) * len(USERS):  # the whole matrix ran
        assert rest == rest_cases and grpc_ == len(METHODS) * len(USERS)
