"""The mlgrid Deployments: the module each runs, ports, probes, security, scheduling, and the environment
compared with what each service reads (services/common/config.py)."""
import ast
import importlib
import json
import os

import pytest
import yaml

import services.common.config as config
from chartlib import (  # noqa: F401 (objects: a fixture)
    component_of, container_env, FULLNAME, objects, of_kind, one, pod_spec, rendered, REPO, requires_helm, SERVING_MODELS, template,
    VALUE_SETS,
)
from services.serving.service import parse_models

pytestmark = requires_helm

COMPONENTS = ["tracking", "artifacts", "registry", "serving", "gateway"]

# The grpc.health.v1 name each service registers (its SERVICE_NAME); the gateway's readiness is its own ("").
HEALTH_SERVICE = {
    "tracking": "services.tracking.service",
    "artifacts": "services.artifacts.servicer",
    "registry": "services.registry.servicer",
    "serving": "services.serving.grpc_servicer",
}

# What a service can't do without in a cluster (its defaults are for one machine).
REQUIRED = {
    "tracking": {"MLGRID_GRPC_PORT", "MLGRID_METRICS_PORT", "MLGRID_BACKEND_STORE_URI"},
    "registry": {"MLGRID_GRPC_PORT", "MLGRID_METRICS_PORT", "MLGRID_BACKEND_STORE_URI"},
    "artifacts": {"MLGRID_GRPC_PORT", "MLGRID_METRICS_PORT", "MLGRID_ARTIFACTS_DESTINATION", "MLGRID_TRACKING_TARGET"},
    "serving": {"MLGRID_GRPC_PORT", "MLGRID_SERVING_HTTP_PORT", "MLGRID_SERVING_MODELS", "MLGRID_TRACKING_URI"},
    "gateway": {"MLGRID_GRPC_PORT", "MLGRID_METRICS_PORT", "MLGRID_GATEWAY_TRACKING_TARGET",
                "MLGRID_GATEWAY_ARTIFACTS_TARGET", "MLGRID_GATEWAY_REGISTRY_TARGET"},
}

# The settings the chart leaves at their defaults on purpose, by variable, with the components that read it
# without being given it, and why. A setting added to services/common/config.py must be set by the chart for
# the components that read it, or be listed here.
LEFT_AT_DEFAULT = {
    "MLGRID_HOST": "every component: 0.0.0.0, every address of the pod",
    "MLGRID_ARTIFACT_ROOTS": "tracking: local folders an experiment may name as its artifact location; no pod shares one, "
                             "so experiments use MLGRID_DEFAULT_ARTIFACT_ROOT (mlgrid-artifacts:/, the artifact service) "
                             "or s3://. registry: a tracking setting of StoreConfig, unused by the registry",
    "MLGRID_DEFAULT_ARTIFACT_ROOT": "registry: a tracking setting of StoreConfig, unused by the registry (tracking is given it)",
    "MLGRID_METRICS_SYNCHRONOUS_COMMIT": "registry: a tracking setting of StoreConfig, unused by the registry (tracking is given it)",
    "MLGRID_INGEST_DEDUP_HOURS": "registry: a tracking setting of StoreConfig, unused by the registry (tracking is given it)",
    "MLGRID_S3_SECURE": "artifacts: follows the scheme of MLGRID_S3_ENDPOINT_URL, which the chart sets (http:// for its MinIO)",
    "MLGRID_METRICS_PORT": "serving: serves /metrics on its REST port (MLGRID_SERVING_HTTP_PORT), not on a port of its own",
    "MLGRID_STARTUP_WAIT_SECONDS": "serving and gateway: only tracking, artifacts and registry wait for a dependency at start; "
                                   "serving loads its models, and the gateway follows its backends' health, once started",
    "MLGRID_SERVING_FOLLOWER": "serving: empty is $HOSTNAME, the pod's name: one follow lease per replica",
    "MLGRID_GATEWAY_MAX_BODY_MB": "gateway: 64, the gRPC message size the backends accept anyway",
    "MLGRID_GATEWAY_REST_TIMEOUT_SECONDS": "gateway: 60 s per REST call to a backend, nothing cluster-specific",
    "MLGRID_GATEWAY_NGINX": "gateway: auto, which is on: the image installs nginx-light",
    "MLGRID_ADMIN_USERNAME": "artifacts, registry, serving, gateway: only tracking creates the first admin (users live in the database)",
    "MLGRID_ADMIN_PASSWORD": "artifacts, registry, serving, gateway: only tracking creates the first admin (users live in the database)",
    "MLGRID_AUTH_IDENTITY_TARGET": "tracking and registry: they read users, tokens and grants from the database themselves",
    "MLGRID_AUTH_OIDC_CLIENT_SECRET": "all but the gateway: the secret of the UI's OIDC client, which only the gateway (serving the UI) uses",
}
# Variables a component is given for the mlgrid client it runs, not read by services/common/config.py: serving loads
# models through the gateway and signs in with a token, or a username and password (serving.auth).
CLIENT_VARIABLES = {"serving": {"MLGRID_TRACKING_TOKEN", "MLGRID_TRACKING_USERNAME", "MLGRID_TRACKING_PASSWORD"}}


def config_classes(component: str) -> list[type]:
    """The config classes `python -m services.<component>` reads: those its __main__ imports, ServerConfig
    (serve_alone reads it for every service) and AuthConfig (every service enforces identity and permissions)."""
    tree = ast.parse((REPO / "services" / component / "__main__.py").read_text())
    names = {"ServerConfig", "AuthConfig"} | {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                                and node.module == "services.common.config" for alias in node.names}
    return [getattr(config, name) for name in sorted(names)]


def variables_read(component: str) -> set[str]:
    return {name for cls in config_classes(component) for name in cls.variables() if name.startswith("MLGRID_")}


def settings_read(component: str) -> dict[str, tuple[str, ...]]:
    """{each setting's variable: every variable that sets it} of the fields of the component's config classes."""
    return {cls.env_names(field)[0]: cls.env_names(field) for cls in config_classes(component) for field in cls.model_fields}


def deployments(objects) -> dict[str, dict]:
    return {component_of(d): d for d in of_kind(objects, "Deployment").values()}


def test_each_component_runs_its_own_module(objects):
    for component, deployment in deployments(objects).items():
        (container,) = pod_spec(deployment)["containers"]
        assert container["args"] == [f"services.{component}"]
        assert "command" not in container  # the image's ENTRYPOINT: python -m
        assert (REPO / "services" / component / "__main__.py").is_file()


def test_serving_and_its_autoscaler_follow_the_values():
    assert "serving" not in deployments(rendered("defaults"))
    monitoring, fixed = rendered("monitoring"), rendered("serving-fixed")
    assert "replicas" not in deployments(monitoring)["serving"]["spec"]
    assert {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(monitoring, "HorizontalPodAutoscaler").values()} == {
        f"{FULLNAME}-serving", f"{FULLNAME}-gateway"}
    assert deployments(fixed)["serving"]["spec"]["replicas"] == 3
    assert {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(fixed, "HorizontalPodAutoscaler").values()} == {f"{FULLNAME}-gateway"}


def test_ports_and_services(objects):
    for component, deployment in deployments(objects).items():
        (container,) = pod_spec(deployment)["containers"]
        env = container_env(objects, container)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == int(env["MLGRID_GRPC_PORT"]["value"])
        if component == "serving":  # /metrics is on its REST port
            assert ports.keys() == {"grpc", "http"} and ports["http"] == int(env["MLGRID_SERVING_HTTP_PORT"]["value"])
        else:
            assert ports["metrics"] == int(env["MLGRID_METRICS_PORT"]["value"])
        service = one(objects, "Service", deployment["metadata"]["name"])
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        by_name = {p["name"]: p for p in service["spec"]["ports"]}
        assert by_name.keys() == ports.keys()
        assert by_name["grpc"]["appProtocol"] == "grpc" and by_name["grpc"]["port"] == ports["grpc"]


def test_grpc_probes_ask_each_service_by_its_health_name(objects):
    for component, deployment in deployments(objects).items():
        (container,) = pod_spec(deployment)["containers"]
        port = {p["name"]: p["containerPort"] for p in container["ports"]}["grpc"]
        expected = importlib.import_module(HEALTH_SERVICE[component]).SERVICE_NAME if component in HEALTH_SERVICE else ""
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["grpc"] == {"port": port, "service": expected}, (component, probe)
        assert container["livenessProbe"]["grpc"] == {"port": port, "service": ""}


def test_pods_run_locked_down(objects):
    for workload in [*of_kind(objects, "Deployment").values(), *of_kind(objects, "StatefulSet").values(), *of_kind(objects, "Job").values()]:
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        mounts_tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"] and "tmp" in mounts_tmp
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_replicas_spread_over_nodes_and_zones(objects):
    for component, deployment in deployments(objects).items():
        spec = pod_spec(deployment)
        selector = deployment["spec"]["selector"]["matchLabels"]
        (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert term["podAffinityTerm"] == {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}
        (spread,) = spec["topologySpreadConstraints"]
        assert spread["labelSelector"]["matchLabels"] == selector and spread["whenUnsatisfiable"] == "ScheduleAnyway"
        pdb = one(objects, "PodDisruptionBudget", deployment["metadata"]["name"])
        assert pdb["spec"]["selector"]["matchLabels"] == selector


def test_env_is_what_the_service_reads(objects):
    assert deployments(objects).keys() >= set(COMPONENTS) - {"serving"}
    for component, deployment in deployments(objects).items():
        (container,) = pod_spec(deployment)["containers"]
        set_here = {name for name in container_env(objects, container) if name.startswith("MLGRID_")}
        unknown = set_here - variables_read(component) - CLIENT_VARIABLES.get(component, set())
        assert not unknown, f"{component} is given variables it does not read: {sorted(unknown)}"
        missing = REQUIRED[component] - set_here
        assert not missing, f"{component} lacks {sorted(missing)}"


def test_every_setting_is_set_or_left_at_its_default_on_purpose():
    """Over every value set, each setting a component reads is given to it by the chart, or in LEFT_AT_DEFAULT."""
    given = {component: set() for component in COMPONENTS}
    for value_set in VALUE_SETS:
        objects = rendered(value_set)
        for component, deployment in deployments(objects).items():
            (container,) = pod_spec(deployment)["containers"]
            given[component] |= set(container_env(objects, container))
    left = {component: {name for name, names in settings_read(component).items() if not given[component] & set(names)}
            for component in COMPONENTS}
    for component, names in left.items():
        unexplained = sorted(names - LEFT_AT_DEFAULT.keys())
        assert not unexplained, f"{component} reads {unexplained}: set them in _env.tpl, or list them in LEFT_AT_DEFAULT with why"
    stale = sorted(LEFT_AT_DEFAULT.keys() - set().union(*left.values()))
    assert not stale, f"LEFT_AT_DEFAULT lists {stale}, which the chart gives every component that reads them"


def test_services_parse_the_env_they_are_given(objects, monkeypatch):
    """Each service's config classes read the rendered values (a wrong type would stop the service at start)."""
    for component, deployment in deployments(objects).items():
        (container,) = pod_spec(deployment)["containers"]
        env = {name: entry.get("value", "from-a-secret") for name, entry in container_env(objects, container).items()}
        with monkeypatch.context() as patched:
            for name in [n for n in os.environ if n.startswith(("MLGRID_", "AWS_"))]:
                patched.delenv(name)
            for name, value in env.items():
                patched.setenv(name, value)
            server = config.ServerConfig.from_env()
            assert server.grpc_port == int(env["MLGRID_GRPC_PORT"]) and server.shutdown_grace_seconds == 30
            for cls in config_classes(component):
                cls.from_env()


def test_targets_name_the_services_and_ports(objects):
    """Every host:port a component is told to call is a rendered Service's gRPC port."""
    grpc_ports = {(name, p["port"]) for name, s in of_kind(objects, "Service").items() for p in s["spec"]["ports"] if p["name"] == "grpc"}
    targets = 0
    for deployment in deployments(objects).values():
        (container,) = pod_spec(deployment)["containers"]
        for name, entry in container_env(objects, container).items():
            if name.endswith("_TARGET") or name == "MLGRID_TRACKING_URI":
                host, _, port = entry["value"].removeprefix("grpc://").rpartition(":")
                assert (host, int(port)) in grpc_ports, f"{name}={entry['value']}"
                targets += 1
    assert targets >= 4


def test_serving_models_are_the_values_as_json():
    objects = rendered("monitoring")
    (container,) = pod_spec(deployments(objects)["serving"])["containers"]
    models = container_env(objects, container)["MLGRID_SERVING_MODELS"]["value"]
    assert json.loads(models) == SERVING_MODELS
    # ...and serving parses them: per-model settings, the rest from MLGRID_SERVING_*.
    specs = parse_models(models, config.ServingConfig(workers=1))
    assert [(s.name, s.uri, s.workers) for s in specs] == [("fraud", "models:/fraud@champion", 2), ("iris", "models:/iris/3", 1)]


@pytest.mark.parametrize("values, expected", [
    ({}, 2 * 3 * 10 + 2 * 2 * 10 + 1 + 10),
    ({"tracking": {"replicaCount": 4}, "registry": {"replicaCount": 1}, "database": {"poolSize": 20}}, 4 * 3 * 20 + 1 * 2 * 20 + 1 + 10),
    ({"postgresql": {"maxConnections": 500}}, 500),
])
def test_postgresql_max_connections_covers_every_pool(values, expected):
    """A tracking replica holds up to 3 x MLGRID_DB_POOL_SIZE connections, a registry replica 2 x."""
    result = template(values)
    assert result.returncode == 0, result.stderr
    statefulset = next(o for o in yaml.safe_load_all(result.stdout) if o and o["kind"] == "StatefulSet" and component_of(o) == "postgresql")
    (container,) = pod_spec(statefulset)["containers"]
    assert f"max_connections={expected}" in container["args"]
