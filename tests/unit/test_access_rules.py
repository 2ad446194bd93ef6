"""Every RPC of every service has an access rule, and every REST route of the gateway is one of those
RPCs or a route classified here: nothing can be added unguarded. A rule's field paths name fields that
exist in the request."""
import pytest
from google.protobuf import descriptor_pool

from mlgrid.inference.v2 import grpc_predict_v2_pb2  # noqa: F401 - loads the descriptors
from mlgrid.v1 import artifacts_pb2, identity_pb2, registry_pb2, tracking_pb2  # noqa: F401
from services.artifacts.access import RULES as ARTIFACT_RULES
from services.identity.access import IDENTITY_RULES, PLUMBING, field_values
from services.registry.access import RULES as REGISTRY_RULES
from services.serving.access import RULES as SERVING_RULES
from services.tracking.access import RULES as TRACKING_RULES

TABLES = {
    "mlgrid.v1.TrackingService": TRACKING_RULES,
    "mlgrid.v1.ArtifactService": ARTIFACT_RULES,
    "mlgrid.v1.ModelRegistryService": REGISTRY_RULES,
    "inference.GRPCInferenceService": SERVING_RULES,
    "mlgrid.v1.IdentityService": IDENTITY_RULES,
}


@pytest.mark.parametrize("service", sorted(TABLES))
def test_every_rpc_has_a_rule_and_every_rule_an_rpc(service):
    methods = {m.name for m in descriptor_pool.Default().FindServiceByName(service).methods}
    rules = set(TABLES[service])
    assert methods - rules == set(), f"{service}: RPCs without an access rule (add them to its access.py)"
    assert rules - methods == set(), f"{service}: rules for RPCs that do not exist"


def test_the_plumbing_of_every_server_is_classified():
    assert set(PLUMBING) >= {"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"}
    assert all(rule.public for rule in PLUMBING.values())


@pytest.mark.parametrize("service", sorted(TABLES))
def test_rules_read_fields_that_exist(service):
    pool = descriptor_pool.Default()
    for method in pool.FindServiceByName(service).methods:
        rule = TABLES[service][method.name]
        for path in rule.fields:
            message = method.input_type
            for name in path.split("."):
                field = message.fields_by_name.get(name)
                assert field is not None, f"{service}/{method.name}: its rule reads {path}, which the request lacks"
                message = field.message_type


@pytest.mark.parametrize("service", sorted(TABLES))
def test_rules_that_check_nothing_per_resource_say_why(service):
    for name, rule in TABLES[service].items():
        if rule.resources is None and not rule.admin_only:
            assert rule.why, f"{service}/{name} checks no resource: its rule must say why (public/signed_in/creating)"


def test_field_values_reads_scalars_repeated_and_nested_fields():
    request = tracking_pb2.GetMetricHistoryBulkRequest(run_ids=["a" * 32, "b" * 32])
    assert field_values("run_ids")(request) == ["a" * 32, "b" * 32]
    response = registry_pb2.RegisteredModelResponse(registered_model=registry_pb2.RegisteredModel(name="m"))
    assert field_values("registered_model.name")(response) == ["m"]
    assert field_values("registered_model.name")(registry_pb2.RegisteredModelResponse()) == []


# The gateway's routes that are not an annotated RPC's: each is public, or calls the named RPCs (whose rules
# apply, the caller's credentials forwarded). A route missing here fails the test below.
HAND_WRITTEN_ROUTES = {
    ("GET", "/health"): "public",
    ("GET", "/metrics"): "public",
    ("GET", "/"): "public",  # the UI's page; its data comes over /ajax-api, whose routes are RPCs
    ("GET", "/static/{path}"): "public",
    ("GET", "/login"): "public",  # the sign-in page
    ("POST", "/login"): "/mlgrid.v1.IdentityService/CreateSession",
    ("POST", "/logout"): "/mlgrid.v1.IdentityService/EndSession",
    ("GET", "/oidc/login"): "public",  # a redirect to the identity provider
    ("GET", "/oidc/callback"): "/mlgrid.v1.IdentityService/CreateSession",
    ("GET", "/get-artifact"): "/mlgrid.v1.ArtifactService/Download",
    ("GET", "/ajax-api/2.0/mlflow/get-artifact"): "/mlgrid.v1.ArtifactService/Download",
    **{(verb, f"{prefix}/artifacts{suffix}"): f"/mlgrid.v1.ArtifactService/{rpc}"
       for prefix in ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
       for verb, suffix, rpc in (("GET", "", "ListArtifacts"), ("GET", "/{path}", "Download"),
                                 ("PUT", "/{path}", "Upload"), ("DELETE", "/{path}", "DeleteArtifact"))},
}


def test_every_rest_route_of_the_gateway_is_an_rpc_with_a_rule_or_classified():
    from services.common.config import GatewayConfig
    from services.gateway.rest import RestGateway
    from services.gateway.rest_routes import routes
    from services.gateway.service import backends

    config = GatewayConfig(tracking_target="127.0.0.1:1", artifacts_target="127.0.0.1:1", registry_target="127.0.0.1:1")
    gateway = RestGateway(backends(config), config)
    derived = {(r.verb, r.path): r.rpc for r in routes(list(gateway.backends))}
    rules = {f"/{service}/{name}": rule for service, table in TABLES.items() for name, rule in table.items()}
    unclassified, unruled = [], []
    for route in gateway.app.router.routes():
        if route.method == "HEAD":
            continue
        key = (route.method, route.resource.canonical)
        rpc = derived.get(key) or HAND_WRITTEN_ROUTES.get(key)
        if rpc is None:
            unclassified.append(key)
        elif rpc != "public" and rpc not in rules:
            unruled.append((key, rpc))
    assert not unclassified, f"gateway routes neither derived from an RPC nor classified in HAND_WRITTEN_ROUTES: {unclassified}"
    assert not unruled, f"gateway routes calling RPCs without an access rule: {unruled}"
    assert len(derived) > 100  # the walk sees the derived routes


def test_a_proxied_target_follows_the_run_or_experiment_its_whole_key_names():
    from services.artifacts.access import target_resources

    def named(root_uri, path):
        return list(target_resources(artifacts_pb2.ListArtifactsRequest(
            target=artifacts_pb2.ArtifactTarget(root_uri=root_uri, path=path))))

    run = "a" * 32
    # The gateway's proxy names the bare root; the path says where (a logged model's folder is outside every run).
    assert named("mlgrid-artifacts:/", f"7/{run}/artifacts/x.txt") == [("run", run)]
    assert named("mlgrid-artifacts:/", "7/models/m-1/artifacts/MLmodel") == [("experiment", "7")]
    assert named("mlgrid-artifacts:/7/models", "m-1/artifacts") == [("experiment", "7")]
    assert named("mlgrid-artifacts:/", "elsewhere/x") == [("admin_only", "elsewhere/x")]
    assert named("mlgrid-artifacts:/", "") == [("admin_only", "the artifact root")]


# Serving's HTTP routes that are not one of its RPCs (services/serving/access.py HTTP_RPCS): probes, the
# server's metadata and /metrics, public as their gRPC twins are.
SERVING_PUBLIC_HANDLERS = {"live", "ready", "server_metadata", "model_ready", "ping", "version", "metrics"}


def test_every_http_route_of_serving_is_an_rpc_with_a_rule_or_public():
    from services.serving.access import HTTP_RPCS
    from services.serving.rest import RestApi

    app = RestApi(plane=None, default_model=None, max_body_bytes=1024).app
    handlers = {route.handler.__name__ for route in app.router.routes() if route.method != "HEAD"}
    assert handlers - HTTP_RPCS.keys() - SERVING_PUBLIC_HANDLERS == set(), "unclassified serving routes"
    assert {HTTP_RPCS[h] for h in handlers & HTTP_RPCS.keys()} <= SERVING_RULES.keys()
    assert all(not SERVING_RULES[rpc].public for rpc in HTTP_RPCS.values())
