"""Every setting of the services, declared once: its environment variable, type, default and meaning.

Each class below is read from the environment (12-factor) by `from_env()` only: constructing one directly,
`StoreConfig(backend_store_uri=...)`, never looks at the environment, so the fields not given take their
declared defaults. A field's variable is its class's prefix (MLGRID_, MLGRID_SERVING_, ...) + its name in
capitals, unless it names its own (`validation_alias`: the first name wins, the others are fallbacks). Each field's
docstring is its description. `python -m services.common.config` prints the README's table of them;
a test compares it with the README, and the Helm chart's tests with what the chart sets.
"""
import os
import sys
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from typing_extensions import Self  # typing's from Python 3.11 on

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_flag(value: Any) -> Any:
    """A boolean variable: one of TRUE or FALSE, in any case."""
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word not in TRUE + FALSE:
        raise PydanticCustomError("flag_parsing", "is not one of {words}", {"words": "/".join(TRUE + FALSE)})
    return word in TRUE


def split_list(value: Any) -> Any:
    """A comma-separated variable: its items, stripped, empty ones left out."""
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


Flag = Annotated[bool, BeforeValidator(parse_flag)]
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
# A duration or rate in the unit its name says (seconds, ms): fractions allowed, infinity and NaN refused.
Duration = Annotated[float, Field(allow_inf_nan=False)]

# What a refused value should have been, by pydantic's error type.
EXPECTED = {
    "int_parsing": "is not an integer",
    "float_parsing": "is not a number",
    "finite_number": "is not a finite number",
}


class Settings(BaseSettings):
    """The base of every settings class: frozen, read from the environment only by from_env()."""

    model_config = SettingsConfigDict(
        env_prefix="MLGRID_",
        env_ignore_empty=True,  # an empty variable is an unset one
        frozen=True,
        use_attribute_docstrings=True,
        validate_by_name=True,  # fields with their own variable names are still constructed by field name
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings,)  # construction never reads the environment: from_env() does

    @classmethod
    def from_env(cls, **defaults: Any) -> Self:
        """The settings of the environment's variables; `defaults` for the fields whose variable is not set
        (e.g. a service's own gRPC port). A malformed value stops the process, naming the variable."""
        values = EnvSettingsSource(cls)()
        try:
            return cls(**{**defaults, **values})
        except ValidationError as error:
            raise SystemExit("; ".join(cls._refusal(e) for e in error.errors())) from None

    @classmethod
    def _refusal(cls, error: dict) -> str:
        """`VARIABLE='value' is not ...`: the variable the refused value came from, and what it should be."""
        key = error["loc"][0] if error["loc"] else None
        names = next((cls.env_names(field) for field in cls.model_fields if key in (field, *cls.env_names(field))), ())
        given = {name.upper(): name for name, value in os.environ.items() if value}  # names are not case-sensitive
        variable = next((given[name] for name in names if name in given), names[0] if names else cls.__name__)
        return f"{variable}={error['input']!r} {EXPECTED.get(error['type'], error['msg'])}"

    @classmethod
    def env_names(cls, field: str) -> tuple[str, ...]:
        """The variables that set `field`, the first one first."""
        alias = cls.model_fields[field].validation_alias
        if isinstance(alias, AliasChoices):
            return tuple(str(choice) for choice in alias.choices)
        return (alias,) if isinstance(alias, str) else (f"{cls.model_config['env_prefix']}{field}".upper(),)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """{every variable this class reads: the field it sets}."""
        return {name: field for field in cls.model_fields for name in cls.env_names(field)}


def variable(*names: str) -> AliasChoices:
    """A field's own variable name(s), where it is not the class's prefix + the field's name."""
    return AliasChoices(*names)


class ServerConfig(Settings):
    """Every service: where it listens, and how it stops."""

    host: str = "0.0.0.0"
    """listen address"""
    grpc_port: int = 50051
    """gRPC port; alone, `python -m services.artifacts` defaults to 50052, `services.registry` to 50053 and
    `services.serving` to 8081"""
    metrics_port: int = 9090
    """Prometheus `/metrics` port (`0` disables it)"""
    shutdown_grace_seconds: Duration = 30.0
    """how long in-flight calls may run after SIGTERM (and the drain)"""
    shutdown_drain_seconds: Duration = 0.0
    """after SIGTERM, how long the service keeps taking new calls while its health says NOT_SERVING, for load
    balancers and Kubernetes' endpoints to stop sending it any (the chart sets 5)"""
    startup_wait_seconds: Duration = 0.0
    """`python -m services.<name>`: how long to keep retrying at start while the database is unreachable or not
    yet migrated, or the bucket missing (`0`: exit at once, saying why)"""


class StoreConfig(Settings):
    """Tracking and registry: the database, and where artifacts may live."""

    backend_store_uri: str = "sqlite:///mlgrid.db"
    """tracking database: `sqlite:///path.db` or `postgresql://user:pass@host:5432/db`"""
    default_artifact_root: str = "mlgrid-artifacts:/"
    """where new experiments put artifacts (`<root>/<experiment_id>`)"""
    artifact_roots: CommaList = Field(
        default_factory=lambda: ["./mlartifacts"], validation_alias=variable("MLGRID_ARTIFACT_ROOTS", "MLGRID_ARTIFACTS_DESTINATION"))
    """comma-separated local folders experiments may name as artifact location"""
    db_pool_size: int = 10
    """database connections per service"""
    db_auto_init: Flag = True
    """create the schema in an empty database (a stale schema is always refused: run `mlgrid db upgrade`)"""
    metrics_synchronous_commit: Flag = True
    """PostgreSQL: `false` acknowledges metric, param and tag writes before the WAL is flushed (about twice the
    unary rate; a database crash, not an mlgrid restart, can lose the last fraction of a second of them)"""
    ingest_dedup_hours: int = 168
    """how long the ids of stored batches are remembered, so that a retried batch is not stored twice"""


class ArtifactsConfig(Settings):
    """The artifact service: where files go, the S3 connection, and how it finds runs."""

    destination: str = Field("./mlartifacts", validation_alias=variable("MLGRID_ARTIFACTS_DESTINATION"))
    """where the artifact service stores files: a local folder, or `s3://bucket/prefix` (then the `MLGRID_S3_*`
    settings apply; also `mlgrid server --artifacts-destination`)"""
    s3_endpoint_url: str = ""
    """the S3-compatible endpoint, e.g. `http://minio:9000` (empty: AWS S3)"""
    s3_access_key_id: str = Field("", validation_alias=variable("MLGRID_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"))
    """S3 access key"""
    s3_secret_access_key: str = Field("", validation_alias=variable("MLGRID_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"))
    """S3 secret key"""
    s3_region: str = Field("us-east-1", validation_alias=variable("MLGRID_S3_REGION", "AWS_REGION"))
    """the bucket's region"""
    s3_secure: Flag = True
    """TLS to the endpoint; when not set, off for an `http://` endpoint"""
    s3_presign_endpoint_url: str = ""
    """where clients reach the store, when not at the service's endpoint (presigned URLs name it; empty: the
    endpoint)"""
    s3_create_bucket: Flag = False
    """make the bucket at start when it does not exist (the chart sets it for its bundled MinIO)"""
    presign_expiry_seconds: int = Field(3600, validation_alias=variable("MLGRID_S3_PRESIGN_EXPIRY_SECONDS"))
    """how long presigned URLs work"""
    direct_threshold_mb: int = Field(64, validation_alias=variable("MLGRID_ARTIFACTS_DIRECT_THRESHOLD_MB"))
    """files of at least this size go directly between client and S3 (presigned URLs); `0` turns that off"""
    tracking_target: str = "127.0.0.1:50051"
    """the tracking service the artifact service asks about runs when it runs alone (`python -m
    services.artifacts`)"""
    run_cache_seconds: Duration = Field(2.0, validation_alias=variable("MLGRID_ARTIFACTS_RUN_CACHE_SECONDS"))
    """how long the artifact service remembers a run's experiment, artifact location and lifecycle"""

    @model_validator(mode="before")
    @classmethod
    def _secure_by_scheme(cls, values: Any) -> Any:
        if isinstance(values, dict) and "s3_secure" not in values:
            values = {**values, "s3_secure": not str(values.get("s3_endpoint_url", "")).startswith("http://")}
        return values

    @property
    def is_s3(self) -> bool:
        return self.destination.startswith("s3://")


class RegistryConfig(Settings):
    """The model registry (its tables are in the tracking database: `MLGRID_BACKEND_STORE_URI`)."""

    model_config = SettingsConfigDict(env_prefix="MLGRID_REGISTRY_")

    event_poll_ms: Duration = 200.0
    """how often event watchers look for changes committed by other processes (changes made in the watcher's
    own process wake it at once)"""


class ServingConfig(Settings):
    """Serving (`python -m services.serving`, `mlgrid models serve`): the models, the HTTP port, per-model
    defaults; its OIP gRPC port is `MLGRID_GRPC_PORT`."""

    model_config = SettingsConfigDict(env_prefix="MLGRID_SERVING_")

    models: str = ""
    """the models: `name=uri,...`, one bare URI (named after its registered model, else `model`), or a JSON list
    of `{"name", "uri", "workers", "max_batch_size", "max_batch_wait_ms"}`"""
    http_port: int = 8080
    """REST: OIP `/v2/...`, MLflow's `/invocations`, `/metrics`"""
    workers: int = 1
    """inference processes per model (`0`: in the server process)"""
    max_batch_size: int = 32
    """rows per predict call"""
    max_batch_wait_ms: Duration = 0.0
    """how long a batch may wait for more requests (`0`: batch only what queues while workers are busy)"""
    max_body_mb: int = 100
    """larger request bodies get 413"""
    tracking_uri: str = Field("grpc://127.0.0.1:50051", validation_alias=variable("MLGRID_TRACKING_URI"))
    """where the registry and artifacts are, for `models:/` and `runs:/` URIs"""
    follower: str = ""
    """the name of this replica's follow lease on the registered models it serves (empty: `$HOSTNAME`, the pod's
    name)"""
    lease_seconds: int = 60
    """the length of that lease"""


class GatewayConfig(Settings):
    """The gateway: where each backend service is, and its HTTP side (MLflow's REST API and the web UI); its
    own gRPC port, host and metrics port are `MLGRID_GRPC_PORT`, `MLGRID_HOST` and `MLGRID_METRICS_PORT`."""

    model_config = SettingsConfigDict(env_prefix="MLGRID_GATEWAY_")

    tracking_target: str = ""
    """`host:port` of the tracking service (empty: not routed)"""
    artifacts_target: str = ""
    """`host:port` of the artifact service (empty: not routed)"""
    registry_target: str = ""
    """`host:port` of the registry (empty: not routed)"""
    serving_target: str = ""
    """`host:port` of serving's OIP gRPC port (empty: not routed)"""
    health_interval_ms: Duration = 1000.0
    """how often the gateway asks each backend's health service (its own health answers for them)"""
    http_port: int = 5000
    """MLflow's REST API (and `/metrics`, `/health`); `mlgrid server` takes `--port` instead"""
    max_body_mb: int = 64
    """larger REST request bodies get 413 (gRPC messages are capped at 64 MiB too)"""
    rest_timeout_seconds: Duration = 60.0
    """how long a REST request's call to a backend may take (504 after; HTTP requests carry no deadline)"""
    nginx: str = "auto"
    """route gRPC by nginx where it is installed (`auto`), always (`on`: fail without it) or never (`off`: in
    Python)"""


class AuthConfig(Settings):
    """Identity and permissions, the same in every service (the chart sets them on each): who may sign in
    (built-in users, access tokens, OIDC JWTs) and what they may do without a grant."""

    model_config = SettingsConfigDict(env_prefix="MLGRID_AUTH_")

    enabled: Flag = Field(False, validation_alias=AliasChoices("MLGRID_AUTH"))
    """check every call's credentials and permissions (`mlgrid server --auth`; on in the Helm chart)"""
    default_permission: str = "READ"
    """what a signed-in user may do on an experiment or registered model without a grant (MLflow's
    `default_permission`: READ, USE, EDIT, MANAGE or NO_PERMISSIONS)"""
    cache_seconds: Duration = 10.0
    """how long a service keeps a verified credential and a permission it looked up: a revoked token or a
    removed grant stops working within this time"""
    admin_username: str = Field("", validation_alias=AliasChoices("MLGRID_ADMIN_USERNAME"))
    """the first admin, created at start-up when no user of that name exists"""
    admin_password: str = Field("", validation_alias=AliasChoices("MLGRID_ADMIN_PASSWORD"))
    """its password (only used to create it: change it later with `mlgrid users update-password`)"""
    identity_target: str = ""
    """`host:port` of the service answering `mlgrid.v1.IdentityService` (tracking), for the services
    without a database (artifacts, serving) to check callers with"""
    oidc_issuer: str = ""
    """accept bearer JWTs from this OIDC issuer (its `iss`; empty: no OIDC)"""
    oidc_audience: str = ""
    """the `aud` a JWT must carry (the client id registered with the issuer)"""
    oidc_jwks_url: str = ""
    """where the issuer's signing keys are (default: from the issuer's discovery document)"""
    oidc_jwks_file: str = ""
    """a JWKS file to take the signing keys from instead of a URL"""
    oidc_jwks_refresh_seconds: Duration = 300.0
    """how often keys fetched from a URL are fetched again (and at once for a key id not yet seen)"""
    oidc_username_claim: str = "preferred_username"
    """the claim that is the username"""
    oidc_groups_claim: str = "groups"
    """the claim listing the caller's groups"""
    oidc_admin_groups: CommaList = []
    """members of these groups are admins"""
    oidc_clock_skew_seconds: Duration = 60.0
    """leeway on `exp`, `nbf` and `iat`"""
    oidc_client_id: str = ""
    """the UI's OIDC client (authorization code flow with PKCE; empty: the UI offers only the login form)"""
    oidc_client_secret: str = ""
    """its secret, for a confidential client (empty for a public one)"""
    session_hours: Duration = 12.0
    """how long a UI sign-in lasts"""


# The README's table, in this order.
SETTINGS: tuple[type[Settings], ...] = (
    ServerConfig, StoreConfig, ArtifactsConfig, RegistryConfig, ServingConfig, GatewayConfig, AuthConfig,
)


# The README's table lies between these two lines; `python -m services.common.config --update README.md` rewrites it.
TABLE_BEGIN = "<!-- settings: generated from services/common/config.py by `python -m services.common.config` -->"
TABLE_END = "<!-- end of settings -->"


def shown_default(cls: type[Settings], field: str) -> str:
    """The default column: the fallback variables, then the declared default."""
    value = cls.model_fields[field].get_default(call_default_factory=True)
    if isinstance(value, bool):
        value = str(value).lower()
    elif isinstance(value, float):
        value = f"{value:g}"
    elif isinstance(value, list):
        value = ",".join(value)
    shown = [f"`{name}`" for name in cls.env_names(field)[1:]] + ([f"`{value}`"] if value != "" else [])
    return ", else ".join(shown) or "—"


def one_line(text: str) -> str:
    return " ".join(text.split())


def markdown_table() -> str:
    """Per settings class: its docstring, then a row per field (variable, default, meaning)."""
    sections = []
    for cls in SETTINGS:
        rows = [f"| `{cls.env_names(field)[0]}` | {shown_default(cls, field)} | {one_line(info.description or '')} |"
                for field, info in cls.model_fields.items()]
        sections.append("\n".join([one_line(cls.__doc__ or cls.__name__), "", "| variable | default | meaning |", "|---|---|---|", *rows]))
    return "\n\n".join(sections) + "\n"


def with_table(document: str) -> str:
    """`document` with the text between TABLE_BEGIN and TABLE_END replaced by markdown_table()."""
    head, found, rest = document.partition(TABLE_BEGIN + "\n")
    _, found_end, tail = rest.partition(TABLE_END)
    if not (found and found_end):
        raise SystemExit(f"no {TABLE_BEGIN} ... {TABLE_END} lines to put the table between")
    return f"{head}{TABLE_BEGIN}\n\n{markdown_table()}\n{TABLE_END}{tail}"


if __name__ == "__main__":
    # `python -m services.common.config`: print the table; `... --update README.md`: rewrite it in that file.
    if sys.argv[1:2] == ["--update"] and len(sys.argv) == 3:
        path = Path(sys.argv[2])
        path.write_text(with_table(path.read_text()))
    elif len(sys.argv) == 1:
        print(markdown_table(), end="")
    else:
        sys.exit("usage: python -m services.common.config [--update README.md]")
