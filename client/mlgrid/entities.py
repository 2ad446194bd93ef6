"""Tracking entities with mlflow.entities' names and fields, built from the wire messages."""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

from mlgrid.v1 import artifacts_pb2, identity_pb2, registry_pb2
from mlgrid.v1 import tracking_pb2 as pb


class ViewType(enum.IntEnum):
    """Which lifecycle stages a search returns."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3

    @classmethod
    def from_string(cls, name: str) -> ViewType:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown view type {name!r}; expected one of {', '.join(v.name for v in cls)}") from None

    @staticmethod
    def to_string(view_type: int) -> str:
        return ViewType(view_type).name


class RunStatus(enum.IntEnum):
    RUNNING = 1
    SCHEDULED = 2
    FINISHED = 3
    FAILED = 4
    KILLED = 5

    @classmethod
    def from_string(cls, name: str) -> RunStatus:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown run status {name!r}; expected one of {', '.join(s.name for s in cls)}") from None

    @staticmethod
    def to_string(status: int) -> str:
        return RunStatus(status).name

    @staticmethod
    def is_terminated(status: int | str) -> bool:
        if isinstance(status, str):
            status = RunStatus.from_string(status)
        return status in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)

    @staticmethod
    def all_status() -> list[int]:
        return list(RunStatus)


_STATUS_NAMES = {status.value: status.name for status in RunStatus}


class PagedList(list):
    """One page of search results; `token` fetches the next page, None after the last."""

    def __init__(self, items, token: str | None):
        super().__init__(items)
        self.token = token


@dataclass(slots=True)
class FileInfo:
    """An artifact file or folder (mlflow.entities.FileInfo): path relative to the run's artifact root."""

    path: str
    is_dir: bool
    file_size: int | None  # None for folders

    @classmethod
    def from_proto(cls, proto: artifacts_pb2.FileInfo) -> FileInfo:
        return cls(proto.path, proto.is_dir, None if proto.is_dir else proto.file_size)


@dataclass(slots=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None

    @classmethod
    def from_proto(cls, proto: pb.Experiment) -> Experiment:
        return cls(
            proto.experiment_id, proto.name, proto.artifact_location, proto.lifecycle_stage,
            dict(proto.tags), proto.creation_time, proto.last_update_time,
        )


@dataclass(slots=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int

    @classmethod
    def from_proto(cls, proto: pb.Metric) -> Metric:
        return cls(proto.key, proto.value, proto.timestamp, proto.step)

    def to_proto(self) -> pb.Metric:
        return pb.Metric(key=self.key, value=self.value, timestamp=self.timestamp, step=self.step)


@dataclass(slots=True)
class Param:
    key: str
    value: str

    @classmethod
    def from_proto(cls, proto: pb.Param) -> Param:
        return cls(proto.key, proto.value)

    def to_proto(self) -> pb.Param:
        return pb.Param(key=self.key, value=self.value)


@dataclass(slots=True)
class RunTag:
    key: str
    value: str

    @classmethod
    def from_proto(cls, proto: pb.RunTag) -> RunTag:
        return cls(proto.key, proto.value)

    def to_proto(self) -> pb.RunTag:
        return pb.RunTag(key=self.key, value=self.value)


@dataclass(slots=True)
class Dataset:
    name: str
    digest: str
    source_type: str
    source: str
    schema: str = ""
    profile: str = ""

    @classmethod
    def from_proto(cls, proto: pb.Dataset) -> Dataset:
        return cls(proto.name, proto.digest, proto.source_type, proto.source, proto.schema, proto.profile)

    def to_proto(self) -> pb.Dataset:
        return pb.Dataset(
            name=self.name, digest=self.digest, source_type=self.source_type,
            source=self.source, schema=self.schema, profile=self.profile,
        )


@dataclass(slots=True)
class InputTag:
    key: str
    value: str

    @classmethod
    def from_proto(cls, proto: pb.InputTag) -> InputTag:
        return cls(proto.key, proto.value)

    def to_proto(self) -> pb.InputTag:
        return pb.InputTag(key=self.key, value=self.value)


@dataclass(slots=True)
class DatasetInput:
    dataset: Dataset
    tags: list[InputTag] = field(default_factory=list)

    @classmethod
    def from_proto(cls, proto: pb.DatasetInput) -> DatasetInput:
        return cls(Dataset.from_proto(proto.dataset), [InputTag(t.key, t.value) for t in proto.tags])

    def to_proto(self) -> pb.DatasetInput:
        return pb.DatasetInput(dataset=self.dataset.to_proto(), tags=[t.to_proto() for t in self.tags])


@dataclass(slots=True)
class RunInputs:
    dataset_inputs: list[DatasetInput] = field(default_factory=list)

    @classmethod
    def from_proto(cls, proto: pb.RunInputs) -> RunInputs:
        return cls([DatasetInput.from_proto(d) for d in proto.dataset_inputs])


@dataclass(slots=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str  # "RUNNING", "FINISHED", ...
    start_time: int
    end_time: int | None
    lifecycle_stage: str
    artifact_uri: str

    @property
    def run_uuid(self) -> str:
        return self.run_id

    @classmethod
    def from_proto(cls, proto: pb.RunInfo) -> RunInfo:
        return cls(
            proto.run_id, proto.experiment_id, proto.run_name, proto.user_id,
            _STATUS_NAMES.get(proto.status, "UNSPECIFIED"), proto.start_time,
            proto.end_time if proto.HasField("end_time") else None,
            proto.lifecycle_stage, proto.artifact_uri,
        )


@dataclass(slots=True)
class RunData:
    metrics: dict[str, float] = field(default_factory=dict)  # key -> latest value
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, proto: pb.RunData) -> RunData:
        return cls({m.key: m.value for m in proto.metrics}, dict(proto.params), dict(proto.tags))


@dataclass(slots=True)
class Run:
    info: RunInfo
    data: RunData
    inputs: RunInputs = field(default_factory=RunInputs)

    @classmethod
    def from_proto(cls, proto: pb.Run) -> Run:
        return cls(RunInfo.from_proto(proto.info), RunData.from_proto(proto.data), RunInputs.from_proto(proto.inputs))

    def to_dictionary(self) -> dict:
        """Plain dicts and lists, e.g. for JSON (`mlgrid runs describe`)."""
        return {
            "info": dataclasses.asdict(self.info),
            "data": dataclasses.asdict(self.data),
            "inputs": dataclasses.asdict(self.inputs),
        }


@dataclass(slots=True)
class LoggedModel:
    """An MLflow 3 logged model: models:/<model_id> names it; its files are at artifact_location."""

    model_id: str
    experiment_id: str
    name: str
    artifact_location: str
    status: str  # "PENDING", "READY" or "UPLOAD_FAILED"
    source_run_id: str = ""
    model_type: str = ""
    creation_timestamp: int = 0
    last_updated_timestamp: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)  # every point logged with this model's id

    @classmethod
    def from_proto(cls, proto: pb.LoggedModel) -> LoggedModel:
        info = proto.info
        return cls(
            info.model_id, info.experiment_id, info.name, info.artifact_uri,
            pb.LoggedModelStatus.Name(info.status).removeprefix("LOGGED_MODEL_"), info.source_run_id, info.model_type,
            info.creation_timestamp_ms, info.last_updated_timestamp_ms, {t.key: t.value for t in info.tags},
            {p.key: p.value for p in proto.data.params},
            [Metric.from_proto(m) for m in proto.data.metrics],
        )


@dataclass(slots=True)
class MetricHistory:
    """All points of one metric of one run as parallel columns, sorted by step, then timestamp."""

    steps: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.steps)

    def extend(self, series: pb.MetricSeries) -> None:
        self.steps.extend(series.steps)
        self.timestamps.extend(series.timestamps)
        self.values.extend(series.values)


# ---------------------------------------------------------------- model registry (mlflow.entities.model_registry)


@dataclass(slots=True)
class ModelVersion:
    name: str
    version: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str
    current_stage: str  # "None", "Staging", "Production" or "Archived"
    source: str
    run_id: str
    status: str  # "READY", "PENDING_REGISTRATION" or "FAILED_REGISTRATION"
    status_message: str
    run_link: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    model_id: str = ""  # the logged model (MLflow 3) of a models:/<model_id> source
    storage_location: str = ""  # where the files are: the logged model's artifact location, else the source

    @classmethod
    def from_proto(cls, proto: registry_pb2.ModelVersion) -> ModelVersion:
        return cls(
            proto.name, proto.version, proto.creation_timestamp, proto.last_updated_timestamp, proto.description,
            proto.current_stage, proto.source, proto.run_id, registry_pb2.ModelVersionStatus.Name(proto.status),
            proto.status_message, proto.run_link, dict(proto.tags), list(proto.aliases), proto.model_id,
            proto.storage_location,
        )


@dataclass(slots=True)
class RegisteredModel:
    name: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str
    latest_versions: list[ModelVersion] = field(default_factory=list)  # the highest version of each stage
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> version
    followers: dict[str, int] = field(default_factory=dict)  # serving replica -> lease end (ms)

    @classmethod
    def from_proto(cls, proto: registry_pb2.RegisteredModel) -> RegisteredModel:
        return cls(
            proto.name, proto.creation_timestamp, proto.last_updated_timestamp, proto.description,
            [ModelVersion.from_proto(v) for v in proto.latest_versions], dict(proto.tags),
            {a.alias: a.version for a in proto.aliases}, {f.follower: f.expires_at for f in proto.followers},
        )


@dataclass(slots=True)
class RegistryEvent:
    """One stored change of the registry; `type` is a RegistryEvent.Type name such as "MODEL_VERSION_CREATED"."""

    event_id: int
    type: str
    timestamp: int
    name: str
    version: str | None
    details: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, proto: registry_pb2.RegistryEvent) -> RegistryEvent:
        return cls(
            proto.event_id, registry_pb2.RegistryEvent.Type.Name(proto.type), proto.timestamp, proto.name,
            proto.version or None, dict(proto.details),
        )


# ---------------------------------------------------------------- identity (mlflow.server.auth.entities)

# The name prefix of the role that holds one user's direct grants (`__user_<id>__`); reserved.
USER_ROLE_PREFIX = "__user_"


@dataclass(slots=True)
class RolePermission:
    """One grant of a role: `permission` on the resources of `resource_type` that `resource_pattern` names
    (an id, a model name, or "*")."""

    id: int
    role_id: int
    resource_type: str
    resource_pattern: str
    permission: str

    @classmethod
    def from_proto(cls, proto: identity_pb2.RolePermission) -> RolePermission:
        return cls(proto.id, proto.role_id, proto.resource_type, proto.resource_pattern, proto.permission)


@dataclass(slots=True)
class Role:
    id: int
    name: str
    workspace: str
    description: str | None
    permissions: list[RolePermission] = field(default_factory=list)

    @property
    def is_user_role(self) -> bool:
        """Whether this is a user's own role, holding their direct grants."""
        return self.name.startswith(USER_ROLE_PREFIX)

    @classmethod
    def from_proto(cls, proto: identity_pb2.Role) -> Role:
        return cls(proto.id, proto.name, proto.workspace, proto.description if proto.HasField("description") else None,
                   [RolePermission.from_proto(p) for p in proto.permissions])


@dataclass(slots=True)
class User:
    """A user (never their password); `roles` are filled in by list_users for those the caller may see."""

    id: int
    username: str
    is_admin: bool
    roles: list[Role] = field(default_factory=list)

    @classmethod
    def from_proto(cls, proto: identity_pb2.User) -> User:
        return cls(proto.id, proto.username, proto.is_admin, [Role.from_proto(r) for r in proto.roles])


@dataclass(slots=True)
class RoleAssignment:
    id: int
    user_id: int
    role_id: int

    @classmethod
    def from_proto(cls, proto: identity_pb2.RoleAssignment) -> RoleAssignment:
        return cls(proto.id, proto.user_id, proto.role_id)


@dataclass(slots=True)
class UserPermission:
    """A grant a user holds through one of their roles; direct grants are those of the role `__user_<id>__`."""

    role_id: int
    role_name: str
    workspace: str
    resource_type: str
    resource_pattern: str
    permission: str

    @property
    def is_direct(self) -> bool:
        return self.role_name.startswith(USER_ROLE_PREFIX)

    @classmethod
    def from_proto(cls, proto: identity_pb2.UserPermission) -> UserPermission:
        return cls(proto.role_id, proto.role_name, proto.workspace, proto.resource_type, proto.resource_pattern,
                   proto.permission)


@dataclass(slots=True)
class UserPermissions:
    """What list_user_permissions answers: an admin may do everything, whatever their grants."""

    is_admin: bool
    permissions: list[UserPermission] = field(default_factory=list)


@dataclass(slots=True)
class GetUserPermissionResult:
    """A user's effective permission on one resource (MLflow's): `allowed` says whether it allows USE."""

    allowed: bool
    permission: str


@dataclass(slots=True)
class AccessToken:
    """An access token; `secret` only in what create_access_token returns (mlgrid keeps just its hash)."""

    id: int
    name: str
    created_ms: int
    expires_ms: int | None  # None: never
    last_used_ms: int | None  # None: not used yet
    secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_proto(cls, proto: identity_pb2.AccessToken, secret: str | None = None) -> AccessToken:
        return cls(proto.id, proto.name, proto.created_ms, proto.expires_ms or None, proto.last_used_ms or None, secret)
