"""Identity and permissions in the chart: on by default in every component, the first admin's credentials in a
Secret generated once and kept (or an existing one), OIDC from values, serving's client credentials, and a
warning when auth is off. The kept password is checked against a fake Kubernetes API, as `lookup` needs one."""
import base64
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import yaml

from services.common import config
from chartlib import (
    CHART, component_of, container_env, FULLNAME, HELM, NAMESPACE, OIDC, of_kind, one, pod_spec, RELEASE, rendered, requires_helm,
    template, with_values,
)

pytestmark = requires_helm

AUTH_SECRET = f"{FULLNAME}-auth"
TRACKING_TARGET = f"{FULLNAME}-tracking:50051"
SERVED = {"name": "m", "uri": "models:/m/1"}


def envs(objects) -> dict[str, dict[str, dict]]:
    """{component: its container's variables} of every mlgrid Deployment."""
    result = {}
    for deployment in of_kind(objects, "Deployment").values():
        (container,) = pod_spec(deployment)["containers"]
        result[component_of(deployment)] = container_env(objects, container)
    return result


def values(env: dict[str, dict]) -> dict[str, str]:
    return {name: entry["value"] for name, entry in env.items() if "value" in entry}


def secret_refs(env: dict[str, dict]) -> dict[str, tuple[str, str]]:
    return {name: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for name, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})}


def decoded(secret: dict) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def auth_settings(env: dict[str, dict]) -> config.AuthConfig:
    """What AuthConfig reads from these variables (a Secret's value as "from-a-secret")."""
    given = {name: entry.get("value", "from-a-secret") for name, entry in env.items()}
    return config.AuthConfig(**{field: given[name] for name, field in config.AuthConfig.variables().items() if name in given})


def test_auth_is_on_in_every_component_by_default():
    env = envs(rendered("monitoring"))  # every component, serving included
    assert env.keys() == {"tracking", "artifacts", "registry", "serving", "gateway"}
    for component, variables in env.items():
        settings = auth_settings(variables)
        assert settings.enabled is True and settings.default_permission == "READ" and settings.cache_seconds == 10, component
        assert settings.oidc_issuer == "", component  # no OIDC unless configured
        # The services without a database ask tracking who a caller is.
        assert values(variables).get("MLGRID_AUTH_IDENTITY_TARGET") == (
            TRACKING_TARGET if component in ("artifacts", "serving", "gateway") else None), component


def test_the_admin_secret_is_generated_and_only_tracking_creates_the_admin():
    objects = rendered("defaults")
    secret = one(objects, "Secret", AUTH_SECRET)
    data = decoded(secret)
    assert data["admin-username"] == "admin"
    assert len(data["admin-password"]) == 24 and data["admin-password"].isalnum()
    # Kept on uninstall: the admin it made stays in the database.
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    env = envs(objects)
    assert secret_refs(env["tracking"]) == {
        "MLGRID_BACKEND_STORE_URI": (FULLNAME, "database-url"),
        "MLGRID_ADMIN_USERNAME": (AUTH_SECRET, "admin-username"), "MLGRID_ADMIN_PASSWORD": (AUTH_SECRET, "admin-password")}
    for component in ("artifacts", "registry", "gateway"):
        assert not {"MLGRID_ADMIN_USERNAME", "MLGRID_ADMIN_PASSWORD"} & env[component].keys(), component
    # Two installs get two passwords.
    assert decoded(one(yaml.safe_load_all(template({}).stdout), "Secret", AUTH_SECRET))["admin-password"] != data["admin-password"]


def test_a_given_admin_password_is_used():
    data = decoded(one(rendered("ingress-tls"), "Secret", AUTH_SECRET))
    assert data == {"admin-username": "root", "admin-password": "admin-s3cret-pw"}


def test_an_existing_admin_secret_is_referenced_not_made():
    objects = rendered("external")
    assert AUTH_SECRET not in of_kind(objects, "Secret")
    assert secret_refs(envs(objects)["tracking"])["MLGRID_ADMIN_PASSWORD"] == ("team-auth", "password")
    result = template({"auth": {"existingSecret": "team-auth"}, "serving": {"enabled": True, "models": [SERVED]}})
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    assert AUTH_SECRET not in of_kind(objects, "Secret")
    env = envs(objects)
    assert secret_refs(env["tracking"])["MLGRID_ADMIN_USERNAME"] == ("team-auth", "admin-username")
    # Serving signs in as the admin by default...
    assert secret_refs(env["serving"]) == {
        "MLGRID_TRACKING_USERNAME": ("team-auth", "admin-username"), "MLGRID_TRACKING_PASSWORD": ("team-auth", "admin-password")}


def test_serving_signs_in_with_a_token_from_its_secret():
    env = envs(rendered("oidc-keys-from-configmap"))["serving"]
    assert secret_refs(env) == {"MLGRID_TRACKING_TOKEN": ("serving-token", "token")}
    assert values(env)["MLGRID_TRACKING_URI"] == f"grpc://{FULLNAME}-gateway:50051"


def test_oidc_values_reach_every_component():
    objects = rendered("ingress-tls")
    for component, env in envs(objects).items():
        settings = auth_settings(env)
        assert (settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url, settings.oidc_jwks_file) == (
            OIDC["issuer"], OIDC["audience"], OIDC["jwksUrl"], ""), component
        assert (settings.oidc_username_claim, settings.oidc_groups_claim, settings.oidc_admin_groups) == (
            "email", "roles", ["ml-admins", "platform"]), component
        assert (settings.oidc_clock_skew_seconds, settings.oidc_jwks_refresh_seconds, settings.oidc_client_id) == (30, 600, "mlgrid-ui")
        # The UI's client secret: the gateway's only, from the release Secret.
        assert ("MLGRID_AUTH_OIDC_CLIENT_SECRET" in env) == (component == "gateway"), component
    assert secret_refs(envs(objects)["gateway"])["MLGRID_AUTH_OIDC_CLIENT_SECRET"] == (FULLNAME, "oidc-client-secret")
    assert decoded(one(objects, "Secret", FULLNAME))["oidc-client-secret"] == OIDC["clientSecret"]


def test_oidc_keys_from_a_configmap_are_mounted_in_every_pod():
    objects = rendered("oidc-keys-from-configmap")
    for deployment in of_kind(objects, "Deployment").values():
        component = component_of(deployment)
        spec = pod_spec(deployment)
        (container,) = spec["containers"]
        env = container_env(objects, container)
        settings = auth_settings(env)
        assert (settings.oidc_jwks_file, settings.oidc_jwks_url) == ("/etc/mlgrid/oidc/jwks.json", ""), component
        assert (settings.default_permission, settings.cache_seconds) == ("NO_PERMISSIONS", 2.5), component
        assert {"name": "oidc-jwks", "mountPath": "/etc/mlgrid/oidc", "readOnly": True} in container["volumeMounts"]
        assert {"name": "oidc-jwks", "configMap": {"name": "dex-jwks"}} in spec["volumes"]
        if component == "gateway":
            assert secret_refs(env)["MLGRID_AUTH_OIDC_CLIENT_SECRET"] == ("dex-client", "client-secret")
    assert "oidc-client-secret" not in decoded(one(objects, "Secret", FULLNAME))


def issuer_egress(objects) -> dict[str, bool]:
    """{component: whether its NetworkPolicy lets it reach the issuer's port at the external CIDRs}."""
    rule = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}
    return {p["metadata"]["labels"]["app.kubernetes.io/component"]: rule in p["spec"]["egress"]
            for p in of_kind(objects, "NetworkPolicy").values()}


def test_the_pods_that_fetch_from_the_issuer_may_reach_it():
    mlgrid = {"tracking", "artifacts", "registry", "serving", "gateway"}
    by_url = issuer_egress(rendered("serving-fixed"))
    assert {c for c, allowed in by_url.items() if allowed} == mlgrid
    # Keys from a ConfigMap: only the gateway, for the UI's sign-in.
    from_configmap = issuer_egress(rendered("oidc-keys-from-configmap"))
    assert {c for c, allowed in from_configmap.items() if allowed} == {"gateway"}
    assert not any(issuer_egress(rendered("defaults")).values())


def test_auth_off_says_so_everywhere():
    off = {"auth": {"enabled": False, "oidc": OIDC}, "serving": {"enabled": True, "models": [SERVED]}}
    result = template(off)
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    assert AUTH_SECRET not in of_kind(objects, "Secret")
    for component, env in envs(objects).items():
        assert values(env)["MLGRID_AUTH"] == "false" and auth_settings(env).enabled is False, component
        given = [n for n in env if n.startswith(("MLGRID_AUTH_", "MLGRID_ADMIN_", "MLGRID_TRACKING_TOKEN", "MLGRID_TRACKING_USER"))]
        assert not given, component
    notes = with_values("install", off, RELEASE, "--dry-run=client")
    assert notes.returncode == 0, notes.stderr
    assert "WARNING: identity and permissions are OFF (auth.enabled=false)" in notes.stdout
    assert "--set auth.enabled=true" in notes.stdout and "admin-password" not in notes.stdout


def test_notes_say_how_to_sign_in():
    notes = with_values("install", {}, RELEASE, "--dry-run=client")
    assert notes.returncode == 0, notes.stderr
    assert "WARNING" not in notes.stdout
    assert (f'kubectl --namespace {NAMESPACE} get secret {AUTH_SECRET} -o jsonpath="{{.data.admin-password}}" | base64 -d'
            in notes.stdout)
    for line in ("MLFLOW_TRACKING_USERNAME=$ADMIN_USER MLFLOW_TRACKING_PASSWORD=$ADMIN_PASSWORD",
                 "mlgrid tokens create --name ci --expires 30d", "export MLGRID_TRACKING_TOKEN="):
        assert line in notes.stdout
    existing = with_values("install", {"auth": {"existingSecret": "team-auth", "existingSecretPasswordKey": "pass.word"}},
                           RELEASE, "--dry-run=client")
    assert 'get secret team-auth -o jsonpath="{.data.pass\\.word}"' in existing.stdout


class FakeKubernetes(BaseHTTPRequestHandler):
    """The part of a Kubernetes API `helm template --dry-run=server` uses: discovery, and reading objects (the
    Secrets in `secrets`, as a previous release left them; nothing else exists)."""

    kinds: ClassVar[dict[str, list[str]]] = {
        "v1": ["Secret", "ConfigMap", "Service", "ServiceAccount"], "apps/v1": ["Deployment", "StatefulSet"], "batch/v1": ["Job"],
        "policy/v1": ["PodDisruptionBudget"], "autoscaling/v2": ["HorizontalPodAutoscaler"],
        "networking.k8s.io/v1": ["NetworkPolicy", "Ingress"]}
    secrets: ClassVar[dict[str, dict[str, str]]] = {}

    def do_GET(self):
        path = self.path.split("?")[0]
        groups = [gv for gv in self.kinds if "/" in gv]
        if path == "/version":
            return self.send(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0"})
        if path == "/api":
            return self.send(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            return self.send(200, {"kind": "APIGroupList", "groups": [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                 "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}} for gv in groups]})
        for gv, kinds in self.kinds.items():
            if path == ("/api/v1" if gv == "v1" else f"/apis/{gv}"):
                return self.send(200, {"kind": "APIResourceList", "groupVersion": gv, "resources": [
                    {"name": kind.lower() + "s", "singularName": kind.lower(), "namespaced": True, "kind": kind, "verbs": ["get"]}
                    for kind in kinds]})
        name = path.removeprefix(f"/api/v1/namespaces/{NAMESPACE}/secrets/")
        if name in self.secrets:
            return self.send(200, {"apiVersion": "v1", "kind": "Secret", "metadata": {
                "name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE}},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in self.secrets[name].items()}})
        return self.send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def send(self, code: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def cluster(tmp_path):
    """A kubeconfig for a fake cluster holding the given Secrets: cluster(secrets) -> KUBECONFIG path."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (FakeKubernetes,), {}))
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def with_secrets(secrets: dict[str, dict[str, str]]) -> str:
        server.RequestHandlerClass.secrets = secrets
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NAMESPACE}}]}))
        return str(kubeconfig)

    yield with_secrets
    server.shutdown()


def upgrade_render(kubeconfig: str, *args: str) -> list[dict]:
    """The chart as `helm upgrade` renders it against that cluster (lookup answers; nothing is written)."""
    result = subprocess.run([HELM, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=server",
                             "--disable-openapi-validation", *args],
                            check=False, capture_output=True, text=True, timeout=60, env={**os.environ, "KUBECONFIG": kubeconfig})
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def test_generated_passwords_are_kept_across_upgrades(cluster):
    kubeconfig = cluster({AUTH_SECRET: {"admin-username": "admin", "admin-password": "kept-admin-pw"},
                          FULLNAME: {"postgresql-password": "kept-pg-pw", "s3-secret-access-key": "kept-minio-pw"}})
    objects = upgrade_render(kubeconfig, "--set", "auth.admin.username=root")
    assert decoded(one(objects, "Secret", AUTH_SECRET)) == {"admin-username": "root", "admin-password": "kept-admin-pw"}
    release = decoded(one(objects, "Secret", FULLNAME))
    assert release["postgresql-password"] == "kept-pg-pw" and release["s3-secret-access-key"] == "kept-minio-pw"
    # A password given in values wins over the kept one.
    objects = upgrade_render(kubeconfig, "--set", "auth.admin.password=new-admin-pw")
    assert decoded(one(objects, "Secret", AUTH_SECRET))["admin-password"] == "new-admin-pw"


def test_a_first_install_against_a_cluster_generates_the_password(cluster):
    objects = upgrade_render(cluster({}))
    password = decoded(one(objects, "Secret", AUTH_SECRET))["admin-password"]
    assert len(password) == 24 and password != "kept-admin-pw"
