"""The settings (services/common/config.py): read from the environment by from_env() only, malformed values
refused naming their variable, and the README documenting every MLGRID_* variable the code reads."""
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.common import config
from services.common.config import ArtifactsConfig, GatewayConfig, RegistryConfig, ServerConfig, ServingConfig, StoreConfig

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# Where variables are read: the services and the client (its generated code aside).
SOURCES = [*(REPO / "services").rglob("*.py"), *(p for p in (REPO / "client" / "mlgrid").rglob("*.py") if not p.name.endswith("_pb2.py"))]


@pytest.fixture
def env(monkeypatch):
    """The process's environment without MLGRID_* and AWS_* variables; set more with env(NAME=value)."""
    for name in [n for n in os.environ if n.startswith(("MLGRID_", "AWS_"))]:
        monkeypatch.delenv(name)

    def set_env(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return set_env


def test_constructing_ignores_the_environment(env):
    env(MLGRID_GRPC_PORT="1", MLGRID_BACKEND_STORE_URI="postgresql://x/y", AWS_REGION="eu-west-1", MLGRID_SERVING_WORKERS="4")
    assert ServerConfig().grpc_port == 50051
    assert StoreConfig(db_auto_init=False) == StoreConfig(backend_store_uri="sqlite:///mlgrid.db", db_auto_init=False)
    assert ArtifactsConfig().s3_region == "us-east-1"
    assert ServingConfig(max_batch_size=8).workers == 1
    assert ServerConfig.from_env().grpc_port == 1  # ...which from_env() reads


def test_from_env_reads_each_class_and_its_own_names(env):
    env(MLGRID_HOST="127.0.0.1", MLGRID_SHUTDOWN_GRACE_SECONDS="0.5", MLGRID_DB_AUTO_INIT="off", MLGRID_REGISTRY_EVENT_POLL_MS="50",
        MLGRID_TRACKING_URI="grpc://gw:50051", MLGRID_SERVING_MAX_BATCH_WAIT_MS="2.5", MLGRID_TRACKING_TARGET="tracking:50051",
        MLGRID_S3_PRESIGN_EXPIRY_SECONDS="60", MLGRID_GATEWAY_NGINX="off", MLGRID_GATEWAY_REST_TIMEOUT_SECONDS="")
    server = ServerConfig.from_env()
    assert (server.host, server.shutdown_grace_seconds) == ("127.0.0.1", 0.5)
    assert StoreConfig.from_env().db_auto_init is False
    assert RegistryConfig.from_env().event_poll_ms == 50
    assert (ServingConfig.from_env().tracking_uri, ServingConfig.from_env().max_batch_wait_ms) == ("grpc://gw:50051", 2.5)
    artifacts = ArtifactsConfig.from_env()
    assert (artifacts.tracking_target, artifacts.presign_expiry_seconds) == ("tracking:50051", 60)
    gateway = GatewayConfig.from_env()
    assert (gateway.nginx, gateway.rest_timeout_seconds) == ("off", 60)  # an empty variable is an unset one


def test_a_service_default_port_yields_to_the_variable(env):
    assert ServerConfig.from_env(grpc_port=50052).grpc_port == 50052
    env(MLGRID_GRPC_PORT="6000")
    assert ServerConfig.from_env(grpc_port=50052).grpc_port == 6000


def test_fallbacks_and_derived_defaults(env):
    env(AWS_ACCESS_KEY_ID="aws-key", AWS_SECRET_ACCESS_KEY="aws-secret", AWS_REGION="eu-west-1", MLGRID_S3_ACCESS_KEY_ID="",
        MLGRID_S3_ENDPOINT_URL="http://minio:9000", MLGRID_ARTIFACTS_DESTINATION="/srv/artifacts")
    artifacts = ArtifactsConfig.from_env()
    assert (artifacts.s3_access_key_id, artifacts.s3_secret_access_key, artifacts.s3_region) == ("aws-key", "aws-secret", "eu-west-1")
    assert artifacts.s3_secure is False  # an http:// endpoint
    assert StoreConfig.from_env().artifact_roots == ["/srv/artifacts"]
    env(MLGRID_S3_ACCESS_KEY_ID="own-key", MLGRID_S3_REGION="us-west-2", MLGRID_S3_SECURE="true", MLGRID_ARTIFACT_ROOTS=" /a, /b ,")
    artifacts = ArtifactsConfig.from_env()
    assert (artifacts.s3_access_key_id, artifacts.s3_region, artifacts.s3_secure) == ("own-key", "us-west-2", True)
    assert StoreConfig.from_env().artifact_roots == ["/a", "/b"]
    assert ArtifactsConfig(s3_endpoint_url="https://s3.example").s3_secure is True


@pytest.mark.parametrize("variable, value, cls, message", [
    ("MLGRID_GRPC_PORT", "abc", ServerConfig, "MLGRID_GRPC_PORT='abc' is not an integer"),
    ("MLGRID_DB_POOL_SIZE", "2.5", StoreConfig, "MLGRID_DB_POOL_SIZE='2.5' is not an integer"),
    ("MLGRID_SHUTDOWN_GRACE_SECONDS", "soon", ServerConfig, "MLGRID_SHUTDOWN_GRACE_SECONDS='soon' is not a number"),
    ("MLGRID_GATEWAY_HEALTH_INTERVAL_MS", "inf", GatewayConfig, "MLGRID_GATEWAY_HEALTH_INTERVAL_MS='inf' is not a finite number"),
    ("MLGRID_S3_CREATE_BUCKET", "maybe", ArtifactsConfig, "MLGRID_S3_CREATE_BUCKET='maybe' is not one of 1/true/yes/on/0/false/no/off"),
    ("MLGRID_ARTIFACTS_RUN_CACHE_SECONDS", "2s", ArtifactsConfig, "MLGRID_ARTIFACTS_RUN_CACHE_SECONDS='2s' is not a number"),
])
def test_a_malformed_value_stops_the_service_naming_its_variable(env, variable, value, cls, message):
    env(**{variable: value})
    with pytest.raises(SystemExit, match=f"^{re.escape(message)}$"):
        cls.from_env()


def test_readme_table_is_the_declaration():
    readme = README.read_text()
    assert config.with_table(readme) == readme, (
        "README.md's settings table differs from services/common/config.py: "
        "run `python -m services.common.config --update README.md`")


def variables_in_code() -> set[str]:
    """Every MLGRID_* name the code reads: the settings' variables, and each string constant that is one
    (what os.environ / getenv are asked for, directly or through a constant)."""
    names = {name for cls in config.SETTINGS for name in cls.variables() if name.startswith("MLGRID_")}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"MLGRID(_[A-Z0-9]+)+", node.value):
                names.add(node.value)
    return names


def test_every_variable_the_code_reads_is_in_the_readme():
    names = variables_in_code()
    assert {"MLGRID_GRPC_PORT", "MLGRID_TRACKING_URI", "MLGRID_DOWNLOAD_DIRECT_IO", "MLGRID_ENV_ROOT"} <= names
    readme = README.read_text()
    missing = sorted(name for name in names if not re.search(rf"`\$?{name}\b", readme))
    assert not missing, f"read by the code but not documented in README.md: {missing}"


def test_the_client_does_not_import_pydantic():
    """The client's base install is grpcio and protobuf: it reads its own few variables."""
    code = "import sys, mlgrid, mlgrid.cli.main; print(sorted(m for m in sys.modules if m.startswith('pydantic')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
