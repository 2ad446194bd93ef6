"""The schema of every table in mlgrid's one database (SQLAlchemy Core): tracking's, the
registry's and identity's. The Alembic history in services/db/migrations creates it.

Metric history is stored in chunks: one row per (run, key, write) holding the
points of that write as packed little-endian arrays (see metric_codec.py), so
that ingest costs one row per series, not per point, and history reads decode
whole arrays. The latest value per (run, key) lives in latest_metrics, which
search filters and orders on.
"""
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Btree entries are capped (PostgreSQL: ~2.7 kB), and values go up to 8000
# characters, so value indexes cover a prefix; equality filters add the
# matching prefix condition so the planner can use them.
VALUE_INDEX_PREFIX = 200

RunId = String(32)
Double = Float(precision=53)
Int64 = BigInteger()
AutoId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: ROWID alias

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("artifact_location", String(1000), nullable=False),
    Column("lifecycle_stage", String(32), nullable=False),
    Column("creation_time", Int64, nullable=False),
    Column("last_update_time", Int64, nullable=False),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("experiment_id", "key"),
)

runs = Table(
    "runs",
    metadata,
    Column("run_uuid", RunId, primary_key=True),
    Column("name", String(250), nullable=False),
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id", ondelete="CASCADE"), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("status", String(20), nullable=False),
    Column("start_time", Int64, nullable=False),
    Column("end_time", Int64, nullable=True),
    Column("deleted_time", Int64, nullable=True),
    Column("lifecycle_stage", String(20), nullable=False),
    Column("artifact_uri", String(1000), nullable=False),
    # Default search order (start_time DESC, run_uuid) within and across experiments.
    Index("ix_runs_experiment_start", "experiment_id", "start_time", "run_uuid"),
    Index("ix_runs_start", "start_time", "run_uuid"),
)

params = Table(
    "params",
    metadata,
    Column("run_uuid", RunId, ForeignKey("runs.run_uuid", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    # The row as a RunData field (see run_data_fields): a run's rows concatenated are its RunData.
    Column("encoded", LargeBinary, nullable=False),
    PrimaryKeyConstraint("run_uuid", "key"),
)
Index("ix_params_key_value", params.c.key, func.substr(params.c.value, 1, VALUE_INDEX_PREFIX))

tags = Table(
    "tags",
    metadata,
    Column("run_uuid", RunId, ForeignKey("runs.run_uuid", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    # The row as a RunData field (see run_data_fields): a run's rows concatenated are its RunData.
    Column("encoded", LargeBinary, nullable=False),
    PrimaryKeyConstraint("run_uuid", "key"),
)
Index("ix_tags_key_value", tags.c.key, func.substr(tags.c.value, 1, VALUE_INDEX_PREFIX))

latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_uuid", RunId, ForeignKey("runs.run_uuid", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    # NaN is stored as value 0 with is_nan true (SQLite cannot store NaN).
    Column("value", Double, nullable=False),
    Column("is_nan", Boolean, nullable=False),
    Column("timestamp", Int64, nullable=False),
    Column("step", Int64, nullable=False),
    # The row as a RunData field (see run_data_fields): a run's rows concatenated are its RunData.
    Column("encoded", LargeBinary, nullable=False),
    PrimaryKeyConstraint("run_uuid", "key"),
    Index("ix_latest_metrics_key_value", "key", "value"),
    # On PostgreSQL only (the migration skips it on SQLite, which has no INCLUDE):
    # reading the latest metrics of many runs becomes an index-only scan.
    Index("ix_latest_metrics_run_cover", "run_uuid", "key", postgresql_include=["value", "is_nan", "encoded"]),
)

metric_chunks = Table(
    "metric_chunks",
    metadata,
    Column("chunk_id", AutoId, primary_key=True, autoincrement=True),
    Column("run_uuid", RunId, ForeignKey("runs.run_uuid", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("n", Integer, nullable=False),
    Column("step_data", LargeBinary, nullable=False),
    Column("timestamp_data", LargeBinary, nullable=False),
    Column("value_data", LargeBinary, nullable=False),
    Index("ix_metric_chunks_run_key", "run_uuid", "key", "chunk_id"),
)

# Idempotency keys of stored batches: a retried batch is acknowledged, not stored twice.
ingest_batches = Table(
    "ingest_batches",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("run_uuid", RunId, ForeignKey("runs.run_uuid", ondelete="CASCADE"), nullable=False),
    Column("created_time", Int64, nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("dataset_uuid", String(32), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id", ondelete="CASCADE"), nullable=False),
    Column("name", String(500), nullable=False),
    Column("digest", String(36), nullable=False),
    Column("source_type", String(36), nullable=False),
    Column("source", Text, nullable=False),
    Column("schema", Text, nullable=True),
    Column("profile", Text, nullable=True),
    UniqueConstraint("experiment_id", "name", "digest"),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_uuid", RunId, ForeignKey("runs.run_uuid", ondelete="CASCADE"), nullable=False),
    Column("dataset_uuid", String(32), ForeignKey("datasets.dataset_uuid", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("run_uuid", "dataset_uuid"),
)

run_input_tags = Table(
    "run_input_tags",
    metadata,
    Column("run_uuid", RunId, nullable=False),
    Column("dataset_uuid", String(32), nullable=False),
    Column("key", String(255), nullable=False),
    Column("value", String(500), nullable=False),
    PrimaryKeyConstraint("run_uuid", "dataset_uuid", "key"),
)

# MLflow 3's logged models: an experiment's models with their own artifacts, params, tags and metrics.
logged_models = Table(
    "logged_models",
    metadata,
    Column("model_id", String(34), primary_key=True),  # m-<uuid4 hex>
    Column("experiment_id", Integer, ForeignKey("experiments.experiment_id", ondelete="CASCADE"), nullable=False),
    Column("name", String(250), nullable=False),
    Column("source_run_id", RunId, nullable=True),
    Column("status", String(32), nullable=False),
    Column("status_message", Text, nullable=False),
    Column("model_type", String(500), nullable=False),
    Column("artifact_location", String(1000), nullable=False),
    Column("lifecycle_stage", String(20), nullable=False),
    Column("creation_time", Int64, nullable=False),
    Column("last_updated_time", Int64, nullable=False),
    Index("ix_logged_models_experiment_creation", "experiment_id", "creation_time"),
)

logged_model_tags = Table(
    "logged_model_tags",
    metadata,
    Column("model_id", String(34), ForeignKey("logged_models.model_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("model_id", "key"),
)

logged_model_params = Table(
    "logged_model_params",
    metadata,
    Column("model_id", String(34), ForeignKey("logged_models.model_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("model_id", "key"),
)

# Every point logged with a model_id. A point logged again (same key, step, timestamp, run and
# dataset) replaces the earlier one: MLflow's log_model re-logs its run's metrics of the model's step.
logged_model_metrics = Table(
    "logged_model_metrics",
    metadata,
    Column("model_id", String(34), ForeignKey("logged_models.model_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", Int64, nullable=False),
    Column("timestamp", Int64, nullable=False),
    Column("run_id", String(32), nullable=False),  # "" when logged without a run
    Column("dataset_name", String(500), nullable=False),
    Column("dataset_digest", String(36), nullable=False),
    # NaN is stored as value 0 with is_nan true (SQLite cannot store NaN).
    Column("value", Double, nullable=False),
    Column("is_nan", Boolean, nullable=False),
    PrimaryKeyConstraint("model_id", "key", "step", "timestamp", "run_id", "dataset_name", "dataset_digest"),
)

# The logged models a run produced (log_model), at a step.
run_outputs = Table(
    "run_outputs",
    metadata,
    Column("run_uuid", RunId, ForeignKey("runs.run_uuid", ondelete="CASCADE"), nullable=False),
    Column("model_id", String(34), ForeignKey("logged_models.model_id", ondelete="CASCADE"), nullable=False),
    Column("step", Int64, nullable=False),
    PrimaryKeyConstraint("run_uuid", "model_id"),
)

# The logged models a run used (log_inputs with models).
run_model_inputs = Table(
    "run_model_inputs",
    metadata,
    Column("run_uuid", RunId, ForeignKey("runs.run_uuid", ondelete="CASCADE"), nullable=False),
    Column("model_id", String(34), ForeignKey("logged_models.model_id", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("run_uuid", "model_id"),
)


# The model registry's tables. Models have a surrogate id, so a rename touches one row and versions,
# tags and aliases follow; registered_models.last_version is the per-model counter that version numbers come from.
MAX_MODEL_NAME_LENGTH = 256

registered_models = Table(
    "registered_models",
    metadata,
    Column("model_id", AutoId, primary_key=True, autoincrement=True),
    Column("name", String(MAX_MODEL_NAME_LENGTH), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("creation_time", Int64, nullable=False),
    Column("last_updated_time", Int64, nullable=False),
    Column("last_version", Integer, nullable=False),
)

registered_model_tags = Table(
    "registered_model_tags",
    metadata,
    Column("model_id", AutoId, nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("model_id", "key"),
    ForeignKeyConstraint(["model_id"], ["registered_models.model_id"], ondelete="CASCADE"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model_id", AutoId, nullable=False),
    Column("version", Integer, nullable=False),
    Column("creation_time", Int64, nullable=False),
    Column("last_updated_time", Int64, nullable=False),
    Column("current_stage", String(20), nullable=False),
    Column("description", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("run_id", RunId, nullable=False),
    Column("run_link", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("status_message", Text, nullable=False),
    # The logged model (MLflow 3) of a models:/<model id> source; kept when the logged model is deleted.
    Column("logged_model_id", String(34), nullable=True),
    PrimaryKeyConstraint("model_id", "version"),
    ForeignKeyConstraint(["model_id"], ["registered_models.model_id"], ondelete="CASCADE"),
    Index("ix_model_versions_run_id", "run_id"),
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column("model_id", AutoId, nullable=False),
    Column("version", Integer, nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Text, nullable=False),
    PrimaryKeyConstraint("model_id", "version", "key"),
    ForeignKeyConstraint(
        ["model_id", "version"], ["model_versions.model_id", "model_versions.version"], ondelete="CASCADE"
    ),
)

# Deleting a version deletes the aliases pointing at it (as in MLflow).
registered_model_aliases = Table(
    "registered_model_aliases",
    metadata,
    Column("model_id", AutoId, nullable=False),
    Column("alias", String(MAX_MODEL_NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=False),
    PrimaryKeyConstraint("model_id", "alias"),
    ForeignKeyConstraint(
        ["model_id", "version"], ["model_versions.model_id", "model_versions.version"], ondelete="CASCADE"
    ),
)

# Servers serving a model, each until its lease runs out; a followed model cannot be deleted.
registered_model_followers = Table(
    "registered_model_followers",
    metadata,
    Column("model_id", AutoId, nullable=False),
    Column("follower", String(MAX_MODEL_NAME_LENGTH), nullable=False),
    Column("expires_at", Int64, nullable=False),
    PrimaryKeyConstraint("model_id", "follower"),
    ForeignKeyConstraint(["model_id"], ["registered_models.model_id"], ondelete="CASCADE"),
)

# Every change, written in the transaction that makes it; ids follow commit order (see store.sql).
registry_events = Table(
    "registry_events",
    metadata,
    Column("event_id", AutoId, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("timestamp", Int64, nullable=False),
    Column("name", String(MAX_MODEL_NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=True),
    Column("details", Text, nullable=False),  # JSON object of strings
)


# Identity (services/identity), after MLflow 3.17's auth database: users; roles, each a named set of grants
# on resource patterns (an id, or "*") in a workspace, assigned to users. A user's direct grants live in
# their synthetic role `__user_<id>__`. Access tokens and UI sessions are stored by the SHA-256 of their secret.
users = Table(
    "users",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("username", String(255), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=True),  # argon2id; NULL for users who sign in by OIDC only
    Column("is_admin", Boolean, nullable=False, server_default=false()),
    Column("created_ms", Int64, nullable=False),
)

roles = Table(
    "roles",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False),
    Column("workspace", String(63), nullable=False, server_default="default"),
    Column("description", String(1024), nullable=True),
    UniqueConstraint("workspace", "name"),
)

role_permissions = Table(
    "role_permissions",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("role_id", AutoId, ForeignKey("roles.id", ondelete="CASCADE"), nullable=False),
    Column("resource_type", String(64), nullable=False),
    Column("resource_pattern", String(255), nullable=False),
    Column("permission", String(32), nullable=False),
    UniqueConstraint("role_id", "resource_type", "resource_pattern"),
    # Which roles grant something on a resource (search filtering, cleanup on delete and rename).
    Index("ix_role_permissions_resource", "resource_type", "resource_pattern"),
)

user_role_assignments = Table(
    "user_role_assignments",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("user_id", AutoId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("role_id", AutoId, ForeignKey("roles.id", ondelete="CASCADE"), nullable=False),
    UniqueConstraint("user_id", "role_id"),
    Index("ix_user_role_assignments_role_id", "role_id"),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("user_id", AutoId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("kind", String(16), nullable=False),  # token | session
    Column("token_hash", String(64), nullable=False, unique=True),  # sha256 hex of the secret
    Column("created_ms", Int64, nullable=False),
    Column("expires_ms", Int64, nullable=True),  # NULL: never
    Column("last_used_ms", Int64, nullable=True),
    Column("revoked", Boolean, nullable=False, server_default=false()),
    Index("ix_access_tokens_user_kind", "user_id", "kind"),
)
