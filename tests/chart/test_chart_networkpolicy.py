"""NetworkPolicies, evaluated as Kubernetes does for pods of the release and pods elsewhere: only the gateway and
serving take connections from outside the release; the database only from tracking, registry and the migration Job;
MinIO only from artifacts, serving and the bucket Job; every connection the components make is allowed."""
import pytest

from chartlib import NAMESPACE, objects, of_kind, rendered, requires_helm  # noqa: F401 (objects: a fixture)

pytestmark = requires_helm

OUTSIDER = ("elsewhere", {"app": "training-job"})
PROMETHEUS = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
SAME_NAMESPACE_STRANGER = (NAMESPACE, {"app": "other"})


def pods(objects) -> dict[str, tuple[str, dict]]:
    """(namespace, labels) of each component's pods."""
    return {w["metadata"]["labels"]["app.kubernetes.io/component"]: (NAMESPACE, w["spec"]["template"]["metadata"]["labels"])
            for w in objects if w["kind"] in ("Deployment", "StatefulSet", "Job")}


def selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # the chart uses matchLabels only
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_matches(peer: dict, pod: tuple[str, dict]) -> bool:
    namespace, labels = pod
    if "ipBlock" in peer:
        return False  # addresses outside the cluster; the chart uses them for external stores only
    if "namespaceSelector" in peer:
        namespace_ok = peer["namespaceSelector"] == {}  # every namespace (the chart uses no other)
    else:
        namespace_ok = namespace == NAMESPACE
    return namespace_ok and selects(peer.get("podSelector", {}), labels)


def rule_allows(rule: dict, peers_key: str, other: tuple[str, dict], port: int) -> bool:
    ports = rule.get("ports")
    port_ok = not ports or any(p["port"] == port and p.get("protocol", "TCP") == "TCP" for p in ports)
    peers = rule.get(peers_key)
    return port_ok and (not peers or any(peer_matches(peer, other) for peer in peers))


def allowed(objects, source: tuple[str, dict], target: tuple[str, dict], port: int) -> bool:
    """A TCP connection from source to target:port, through both pods' policies (a pod no policy selects is open)."""
    policies = [p["spec"] for p in of_kind(objects, "NetworkPolicy").values()]

    def direction(pod, kind, peers_key, other):
        if pod[0] != NAMESPACE:
            return True
        applying = [p for p in policies if kind in p["policyTypes"] and selects(p["podSelector"], pod[1])]
        return not applying or any(rule_allows(rule, peers_key, other, port) for p in applying for rule in p.get(kind.lower(), []))

    return direction(source, "Egress", "to", target) and direction(target, "Ingress", "from", source)


def service_ports(objects, component):
    (service,) = [s for s in of_kind(objects, "Service").values() if s["metadata"]["labels"].get("app.kubernetes.io/component") == component
                  and s["spec"].get("clusterIP") != "None"]
    return {p["name"]: p["port"] for p in service["spec"]["ports"]}


@pytest.fixture(params=["defaults", "monitoring"])
def bundled(request):
    return rendered(request.param)


def test_every_pod_is_covered_both_ways(objects):
    policies = [p["spec"] for p in of_kind(objects, "NetworkPolicy").values()]
    for component, (_, labels) in pods(objects).items():
        types = {t for p in policies if selects(p["podSelector"], labels) for t in p["policyTypes"]}
        assert types == {"Ingress", "Egress"}, component


def test_what_each_component_calls_is_allowed(bundled):
    components = pods(bundled)
    calls = [("gateway", "tracking", "grpc"), ("gateway", "artifacts", "grpc"), ("gateway", "registry", "grpc"),
             ("artifacts", "tracking", "grpc"), ("artifacts", "minio", "s3"),
             ("tracking", "postgresql", "postgresql"), ("registry", "postgresql", "postgresql"), ("migrations", "postgresql", "postgresql")]
    if "serving" in components:
        # serving asks tracking who its callers are (MLGRID_AUTH_IDENTITY_TARGET).
        calls += [("gateway", "serving", "grpc"), ("serving", "gateway", "grpc"), ("serving", "minio", "s3"), ("serving", "tracking", "grpc")]
    for source, target, port_name in calls:
        port = service_ports(bundled, target)[port_name]
        assert allowed(bundled, components[source], components[target], port), f"{source} -> {target}:{port}"


def test_only_gateway_and_serving_take_outside_connections(bundled):
    components = pods(bundled)
    for component, pod in components.items():
        if component in ("migrations", "bucket"):
            continue
        for name, port in service_ports(bundled, component).items():
            public = component in ("gateway", "serving") and name in ("grpc", "http")
            for outsider in (OUTSIDER, SAME_NAMESPACE_STRANGER):
                assert allowed(bundled, outsider, pod, port) == public, (component, name, outsider)
            # Prometheus scrapes the metrics ports (serving's are on http).
            if name == "metrics":
                assert allowed(bundled, PROMETHEUS, pod, port), component
    assert not any(allowed(bundled, OUTSIDER, components["migrations"], port) for port in (80, 5432, 9000, 50051))


def test_the_stores_only_from_their_users(bundled):
    components = pods(bundled)
    for store, port_name, users in (("postgresql", "postgresql", {"tracking", "registry", "migrations"}),
                                    ("minio", "s3", {"artifacts", "serving"})):
        port = service_ports(bundled, store)[port_name]
        for component, pod in components.items():
            if component != store:
                assert allowed(bundled, pod, components[store], port) == (component in users), (component, store)


def test_external_stores_are_reached_on_their_ports():
    objects = rendered("external")
    egress = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p["spec"]["egress"] for p in of_kind(objects, "NetworkPolicy").values()}
    external = {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}]}
    for component, port in (("tracking", 6432), ("registry", 6432), ("migrations", 6432), ("artifacts", 9000), ("bucket", 9000)):
        assert {**external, "ports": [{"port": port, "protocol": "TCP"}]} in egress[component], component
    assert not any("minio" in name or "postgresql" in name for name in of_kind(objects, "NetworkPolicy"))


def test_dns_is_allowed_to_every_client(objects):
    dns = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    for policy in of_kind(objects, "NetworkPolicy").values():
        component = policy["metadata"]["labels"]["app.kubernetes.io/component"]
        assert (dns in policy["spec"]["egress"]) == (component not in ("postgresql", "minio")), component
