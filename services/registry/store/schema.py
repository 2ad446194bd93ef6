"""The registry's tables (SQLAlchemy Core), in the tracking database and its metadata, so one
Alembic history (services/tracking/migrations, revision 0003) creates them.

Models have a surrogate id, so a rename touches one row and versions, tags and aliases follow.
registered_models.last_version is the per-model counter that version numbers come from.
"""
from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from services.tracking.store.schema import AutoId, Int64, RunId, metadata

MAX_NAME_LENGTH = 256

registered_models = Table(
    "registered_models",
    metadata,
    Column("model_id", AutoId, primary_key=True, autoincrement=True),
    Column("name", String(MAX_NAME_LENGTH), nullable=False, unique=True),
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
    Column("alias", String(MAX_NAME_LENGTH), nullable=False),
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
    Column("follower", String(MAX_NAME_LENGTH), nullable=False),
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
    Column("name", String(MAX_NAME_LENGTH), nullable=False),
    Column("version", Integer, nullable=True),
    Column("details", Text, nullable=False),  # JSON object of strings
)
