"""What the chart tests share: rendering deploy/helm/mlgrid with a real helm binary, and reading what comes out.

helm is $HELM, else the one on PATH, else .tools/helm (`make .tools/helm` fetches it; `make test` and
`make chart-test` do so first). Without one, these tests are skipped, saying so."""
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "mlgrid"
RELEASE = "t"
NAMESPACE = "ml"
FULLNAME = f"{RELEASE}-mlgrid"

SERVING_MODELS = [{"name": "fraud", "uri": "models:/fraud@champion", "workers": 2}, {"name": "iris", "uri": "models:/iris/3"}]

# OIDC settings: every auth.oidc value set (keys by URL, the UI's client secret in values).
OIDC = {"issuer": "https://dex.example.com", "audience": "mlgrid", "jwksUrl": "https://dex.example.com/keys", "jwksRefreshSeconds": 600,
        "usernameClaim": "email", "groupsClaim": "roles", "adminGroups": ["ml-admins", "platform"], "clockSkewSeconds": 30,
        "clientId": "mlgrid-ui", "clientSecret": "oidc-s3cret-pw"}

# The value sets of the issue, by name: helm template is run once per set.
VALUE_SETS = {
    "defaults": {},
    "external": {
        "postgresql": {"enabled": False},
        "externalDatabase": {"existingSecret": "team-db", "existingSecretKey": "url", "port": 6432},
        "minio": {"enabled": False},
        "s3": {"endpoint": "https://s3.storage.example:9000", "bucket": "ml-artifacts", "prefix": "mlgrid/", "region": "eu-west-1",
               "existingSecret": "team-s3", "createBucket": True, "port": 9000, "presignEndpointUrl": "https://s3.example.com"},
        "networkPolicy": {"externalCIDRs": ["10.20.0.0/16"]},
        "auth": {"existingSecret": "team-auth", "existingSecretUsernameKey": "user", "existingSecretPasswordKey": "password"},
    },
    "external-literal": {
        "postgresql": {"enabled": False},
        "externalDatabase": {"url": "postgresql://ml:db-s3cret-pw@db.example:5432/ml"},
        "minio": {"enabled": False},
        "s3": {"bucket": "ml-artifacts", "accessKeyId": "AKIAEXAMPLEKEYID", "secretAccessKey": "s3-s3cret-access-key"},
    },
    "ingress-tls": {
        "ingress": {"enabled": True, "tls": [{"secretName": "mlgrid-tls", "hosts": ["mlgrid.example.com", "grpc.mlgrid.example.com"]}]},
        "postgresql": {"auth": {"password": "pg-s3cret-pw"}},
        "minio": {"auth": {"rootPassword": "minio-s3cret-pw"}},
        "auth": {"admin": {"username": "root", "password": "admin-s3cret-pw"}, "oidc": OIDC},
    },
    "monitoring": {
        "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                       "dashboard": {"enabled": True}},
        "serving": {"enabled": True, "models": SERVING_MODELS},
    },
    "serving-fixed": {"serving": {"enabled": True, "models": SERVING_MODELS, "autoscaling": {"enabled": False}, "replicaCount": 3},
                      "auth": {"oidc": OIDC}},
    "oidc-keys-from-configmap": {
        "auth": {"defaultPermission": "NO_PERMISSIONS", "cacheSeconds": 2.5,
                 "oidc": {**OIDC, "jwksUrl": "", "jwksConfigMap": "dex-jwks", "clientSecret": "", "existingSecret": "dex-client"}},
        "serving": {"enabled": True, "models": SERVING_MODELS, "auth": {"existingSecret": "serving-token"}},
    },
}


def find_helm() -> str | None:
    for candidate in (os.environ.get("HELM"), shutil.which("helm"), str(REPO / ".tools" / "helm")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


HELM = find_helm()
# Every chart test module: `pytestmark = requires_helm`.
requires_helm = pytest.mark.skipif(
    HELM is None, reason="no helm binary: set HELM, put helm on PATH, or run `make .tools/helm` (make test does)")


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60)


def with_values(command: str, values: dict, *args: str) -> subprocess.CompletedProcess:
    """`helm <command>` of the chart with these values (as JSON, which is YAML)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        json.dump(values, file)
        file.flush()
        return helm(command, *args, str(CHART), "--namespace", NAMESPACE, "--values", file.name)


def template(values: dict) -> subprocess.CompletedProcess:
    return with_values("template", values, RELEASE)


@functools.cache
def rendered(value_set: str) -> tuple[dict, ...]:
    result = template(VALUE_SETS[value_set])
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(params=list(VALUE_SETS))
def objects(request) -> tuple[dict, ...]:
    """The chart rendered with each value set in turn (import it into a test module to use it)."""
    return rendered(request.param)


def of_kind(objects, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def one(objects, kind: str, name: str) -> dict:
    return of_kind(objects, kind)[name]


def component_of(obj: dict) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def container_env(objects, container: dict) -> dict[str, dict]:
    """Every variable a container gets: {name: the env entry, or {"configMap": name} for envFrom}."""
    env = {}
    for source in container.get("envFrom", []):
        config_map = one(objects, "ConfigMap", source["configMapRef"]["name"])
        env.update({key: {"value": value, "configMap": config_map["metadata"]["name"]} for key, value in config_map["data"].items()})
    env.update({entry["name"]: entry for entry in container.get("env", [])})
    return env


def hook_events(obj: dict) -> set[str]:
    annotations = obj["metadata"].get("annotations") or {}
    return set(filter(None, annotations.get("helm.sh/hook", "").split(",")))


def hook_weight(obj: dict) -> int:
    return int(obj["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
