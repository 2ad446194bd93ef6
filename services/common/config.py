"""Configuration from environment variables (12-factor).

Every variable any service reads is declared here, once, with its default;
the README's table and the Helm chart's ConfigMap follow this list.
"""
import os
from dataclasses import dataclass, field


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None


def env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ServerConfig:
    """Where a service listens, and how it stops."""

    host: str = "0.0.0.0"
    grpc_port: int = 50051
    metrics_port: int = 9090  # Prometheus /metrics; 0 disables it
    shutdown_grace_seconds: float = 30.0
    # How long `python -m services.<name>` keeps retrying at start while a dependency is not ready (the
    # database unreachable or not yet migrated, the bucket missing); 0: fail at once, saying why.
    startup_wait_seconds: float = 0.0

    @classmethod
    def from_env(cls, default_grpc_port: int = 50051) -> "ServerConfig":
        return cls(
            host=env_str("MLGRID_HOST", "0.0.0.0"),
            grpc_port=env_int("MLGRID_GRPC_PORT", default_grpc_port),
            metrics_port=env_int("MLGRID_METRICS_PORT", 9090),
            shutdown_grace_seconds=float(env_int("MLGRID_SHUTDOWN_GRACE_SECONDS", 30)),
            startup_wait_seconds=float(env_int("MLGRID_STARTUP_WAIT_SECONDS", 0)),
        )


@dataclass(frozen=True)
class StoreConfig:
    """The tracking database and where artifacts may live."""

    backend_store_uri: str = "sqlite:///mlgrid.db"
    default_artifact_root: str = "mlgrid-artifacts:/"
    # Local folders that experiments may name as artifact locations.
    artifact_roots: list[str] = field(default_factory=lambda: ["./mlartifacts"])
    db_pool_size: int = 10
    # Create the schema when the database is empty (a stale one is always refused).
    db_auto_init: bool = True
    # PostgreSQL only: False lets metric/param/tag writes return before the WAL is
    # flushed (about twice the unary rate); a database crash, not a restart of
    # mlgrid, can then lose the last fraction of a second of them.
    metrics_synchronous_commit: bool = True
    # How long the ids of stored batches are kept, so that a retried batch is not stored twice.
    ingest_dedup_hours: int = 168

    @classmethod
    def from_env(cls) -> "StoreConfig":
        return cls(
            backend_store_uri=env_str("MLGRID_BACKEND_STORE_URI", "sqlite:///mlgrid.db"),
            default_artifact_root=env_str("MLGRID_DEFAULT_ARTIFACT_ROOT", "mlgrid-artifacts:/"),
            artifact_roots=env_list("MLGRID_ARTIFACT_ROOTS") or [env_str("MLGRID_ARTIFACTS_DESTINATION", "./mlartifacts")],
            db_pool_size=env_int("MLGRID_DB_POOL_SIZE", 10),
            db_auto_init=env_bool("MLGRID_DB_AUTO_INIT", True),
            metrics_synchronous_commit=env_bool("MLGRID_METRICS_SYNCHRONOUS_COMMIT", True),
            ingest_dedup_hours=env_int("MLGRID_INGEST_DEDUP_HOURS", 168),
        )


@dataclass(frozen=True)
class ArtifactsConfig:
    """The artifact service: where files go, the S3 connection, and how the service finds runs."""

    # A local folder, or s3://bucket/prefix (then the MLGRID_S3_* settings apply).
    destination: str = "./mlartifacts"
    s3_endpoint_url: str = ""  # http(s)://host:port; empty: AWS S3
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_region: str = "us-east-1"
    s3_secure: bool = True  # TLS to the endpoint; an http:// endpoint URL turns it off
    # Where clients reach the store, when not at the service's endpoint (presigned URLs name it).
    s3_presign_endpoint_url: str = ""
    # Make the bucket at start when it does not exist (a store of the deployment's own, as the chart's MinIO).
    s3_create_bucket: bool = False
    presign_expiry_seconds: int = 3600
    # Files of at least this size go directly between client and S3 (presigned URLs); 0 turns that off.
    direct_threshold_mb: int = 64
    # The tracking service, asked about runs when this service runs on its own.
    tracking_target: str = "127.0.0.1:50051"
    # How long a run's experiment, artifact location and lifecycle are remembered.
    run_cache_seconds: int = 2

    @property
    def is_s3(self) -> bool:
        return self.destination.startswith("s3://")

    @classmethod
    def from_env(cls) -> "ArtifactsConfig":
        endpoint = env_str("MLGRID_S3_ENDPOINT_URL", "")
        return cls(
            destination=env_str("MLGRID_ARTIFACTS_DESTINATION", "./mlartifacts"),
            s3_endpoint_url=endpoint,
            s3_access_key_id=env_str("MLGRID_S3_ACCESS_KEY_ID", "") or env_str("AWS_ACCESS_KEY_ID", ""),
            s3_secret_access_key=env_str("MLGRID_S3_SECRET_ACCESS_KEY", "") or env_str("AWS_SECRET_ACCESS_KEY", ""),
            s3_region=env_str("MLGRID_S3_REGION", "") or env_str("AWS_REGION", "") or "us-east-1",
            s3_secure=env_bool("MLGRID_S3_SECURE", not endpoint.startswith("http://")),
            s3_presign_endpoint_url=env_str("MLGRID_S3_PRESIGN_ENDPOINT_URL", ""),
            s3_create_bucket=env_bool("MLGRID_S3_CREATE_BUCKET", False),
            presign_expiry_seconds=env_int("MLGRID_S3_PRESIGN_EXPIRY_SECONDS", 3600),
            direct_threshold_mb=env_int("MLGRID_ARTIFACTS_DIRECT_THRESHOLD_MB", 64),
            tracking_target=env_str("MLGRID_TRACKING_TARGET", "127.0.0.1:50051"),
            run_cache_seconds=env_int("MLGRID_ARTIFACTS_RUN_CACHE_SECONDS", 2),
        )


@dataclass(frozen=True)
class RegistryConfig:
    """The model registry: its tables live in the tracking database (StoreConfig.backend_store_uri)."""

    # How often event watchers look for changes committed by other processes; changes made
    # in the watcher's own process wake it at once.
    event_poll_ms: int = 200

    @classmethod
    def from_env(cls) -> "RegistryConfig":
        return cls(event_poll_ms=env_int("MLGRID_REGISTRY_EVENT_POLL_MS", 200))


@dataclass(frozen=True)
class ServingConfig:
    """The serving service: which models, its two ports (gRPC is ServerConfig's), and per-model defaults."""

    # Models to serve: `name=uri,name2=uri2`, a bare URI (named after its registered model, else "model"),
    # or a JSON list of {"name", "uri", "workers", "max_batch_size", "max_batch_wait_ms"}.
    models: str = ""
    http_port: int = 8080  # OIP REST, MLflow's /invocations, /metrics
    workers: int = 1  # inference processes per model; 0: in the server process
    max_batch_size: int = 32  # rows per predict call
    max_batch_wait_ms: float = 0  # extra wait for a batch to fill; 0: adaptive only
    max_body_mb: int = 100  # larger request bodies get 413
    # Where the registry and artifacts are (models:/ and runs:/ URIs), and this replica's follow lease.
    tracking_uri: str = "grpc://127.0.0.1:50051"
    follower: str = ""  # default: $HOSTNAME (the pod name)
    lease_seconds: int = 60

    @classmethod
    def from_env(cls) -> "ServingConfig":
        return cls(
            models=env_str("MLGRID_SERVING_MODELS", ""),
            http_port=env_int("MLGRID_SERVING_HTTP_PORT", 8080),
            workers=env_int("MLGRID_SERVING_WORKERS", 1),
            max_batch_size=env_int("MLGRID_SERVING_MAX_BATCH_SIZE", 32),
            max_batch_wait_ms=float(env_int("MLGRID_SERVING_MAX_BATCH_WAIT_MS", 0)),
            max_body_mb=env_int("MLGRID_SERVING_MAX_BODY_MB", 100),
            tracking_uri=env_str("MLGRID_TRACKING_URI", "grpc://127.0.0.1:50051"),
            follower=env_str("MLGRID_SERVING_FOLLOWER", ""),
            lease_seconds=env_int("MLGRID_SERVING_LEASE_SECONDS", 60),
        )


@dataclass(frozen=True)
class GatewayConfig:
    """The gateway: where each backend service is (host:port; empty: not routed), and its HTTP side
    (MLflow's REST API). Its own gRPC port, host and metrics port are ServerConfig's."""

    tracking_target: str = ""
    artifacts_target: str = ""
    registry_target: str = ""
    serving_target: str = ""
    # How often the gateway asks each backend's health service (its own health answers for them).
    health_interval_ms: int = 1000
    http_port: int = 5000  # MLflow's REST API (and /metrics, /health)
    max_body_mb: int = 64  # larger JSON request bodies get 413 (gRPC messages are capped at 64 MiB too)
    # How long a REST request's call to a backend may take (HTTP requests carry no deadline).
    rest_timeout_seconds: float = 60.0
    # gRPC routing by nginx (services/gateway/nginx.py): auto (where it is installed), on, off.
    nginx: str = "auto"

    @classmethod
    def from_env(cls) -> "GatewayConfig":
        return cls(
            tracking_target=env_str("MLGRID_GATEWAY_TRACKING_TARGET", ""),
            artifacts_target=env_str("MLGRID_GATEWAY_ARTIFACTS_TARGET", ""),
            registry_target=env_str("MLGRID_GATEWAY_REGISTRY_TARGET", ""),
            serving_target=env_str("MLGRID_GATEWAY_SERVING_TARGET", ""),
            health_interval_ms=env_int("MLGRID_GATEWAY_HEALTH_INTERVAL_MS", 1000),
            http_port=env_int("MLGRID_GATEWAY_HTTP_PORT", 5000),
            max_body_mb=env_int("MLGRID_GATEWAY_MAX_BODY_MB", 64),
            rest_timeout_seconds=float(env_int("MLGRID_GATEWAY_REST_TIMEOUT_SECONDS", 60)),
            nginx=env_str("MLGRID_GATEWAY_NGINX", "auto"),
        )
