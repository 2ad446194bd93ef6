"""The permission matrix's cases (test_permission_matrix.py): what each user holds, the fixture's resources,
a well-formed request per RPC aimed at them, and the outcome each rule of services/*/access.py requires.

A request is built per case (a `Case`: one user on one route or RPC), so that a destructive request (a
delete, a restore, a rename) works on a resource of its own, made by the admin and granted to the case's user
exactly as the shared ones are; the shared resources stay as the fixture made them.
"""
import base64
import time
import uuid
from dataclasses import dataclass

import grpc
import requests
from conftest import ADMIN, ADMIN_PASSWORD

from mlgrid.v1 import artifacts_pb2 as art
from mlgrid.v1 import registry_pb2 as reg
from mlgrid.v1 import tracking_pb2 as trk
from services.artifacts.access import RULES as ARTIFACT_RULES
from services.gateway.mlflow_artifacts import PREFIXES, MlflowArtifactsApi
from services.identity.access import IDENTITY_RULES, Rule
from services.identity.model import Permission
from services.registry.access import RULES as REGISTRY_RULES
from services.tracking.access import RULES as TRACKING_RULES

TRACKING, REGISTRY, ARTIFACTS, IDENTITY = (f"mlgrid.v1.{name}Service" for name in ("Tracking", "ModelRegistry", "Artifact", "Identity"))
RULES = {TRACKING: TRACKING_RULES, REGISTRY: REGISTRY_RULES, ARTIFACTS: ARTIFACT_RULES, IDENTITY: IDENTITY_RULES}

PASSWORD = "a matrix password of some length"
ANONYMOUS = "anonymous"
# What each user holds on the shared experiment and registered model (and on every fresh one made for a case).
# `denied` also holds READ on every experiment and registered model through a role: its DENY must win.
LEVELS = {"none": Permission.NO_PERMISSIONS, "denied": Permission.DENY, "reader": Permission.READ,
          "editor": Permission.EDIT, "manager": Permission.MANAGE}
USERS = (ANONYMOUS, *LEVELS)

OK, HIDDEN, DENIED, UNAUTHENTICATED = "ok", "hidden", "denied", "unauthenticated"


def basic(username: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def new_token(url: str, headers: dict) -> str:
    answer = requests.post(url + "/api/2.0/mlgrid/tokens/create", json={"name": unique("matrix"), "expires_in_seconds": 3600},
                           headers=headers, timeout=30)
    assert answer.ok, answer.text
    return answer.json()["secret"]


class Admin:
    """The admin's REST calls that set the scene; each must succeed. It signs in with a token, as the matrix's
    users do: every change of grants drops the server's cache of verified credentials, and a password is then
    verified again (argon2, a few hundred ms), a token looked up."""

    def __init__(self, url: str):
        self.url = url
        self.http = requests.Session()
        self.http.headers.update(bearer(new_token(url, basic(ADMIN, ADMIN_PASSWORD))))

    def call(self, verb: str, path: str, body: dict | None = None, **kwargs) -> dict:
        if verb == "GET":
            kwargs["params"] = body
        elif body is not None:
            kwargs["json"] = body
        answer = self.http.request(verb, self.url + path, timeout=30, **kwargs)
        assert answer.ok, f"{verb} {path} {body}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else {}

    def grant(self, username: str, resource_type: str, resource_id: str, level: Permission) -> None:
        if level > Permission.NO_PERMISSIONS or level is Permission.DENY:
            self.call("POST", "/api/3.0/mlflow/users/permissions/grant", {
                "username": username, "resource_type": resource_type, "resource_id": resource_id,
                "permission": level.name})

    def experiment(self, name: str) -> str:
        return self.call("POST", "/api/2.0/mlflow/experiments/create", {"name": name})["experiment_id"]

    def run(self, experiment_id: str) -> dict:
        return self.call("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id,
                                                                 "start_time": now_ms()})["run"]["info"]

    def upload(self, path: str, data: bytes = b"hello") -> None:
        self.call("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}", data=data)

    def logged_model(self, experiment_id: str, run_id: str) -> str:
        return self.call("POST", "/api/2.0/mlflow/logged-models", {
            "experiment_id": experiment_id, "name": "model", "source_run_id": run_id})["model"]["info"]["model_id"]

    def registered_model(self, name: str) -> str:
        self.call("POST", "/api/2.0/mlflow/registered-models/create", {"name": name})
        return name

    def version(self, name: str, world: "World") -> str:
        return self.call("POST", "/api/2.0/mlflow/model-versions/create", {
            "name": name, "source": world.model_source, "run_id": world.run_id})["model_version"]["version"]


@dataclass
class World:
    """The shared resources, made by the admin; `usernames` maps each matrix user to its account."""

    experiment_id: str
    experiment_name: str
    run_id: str
    artifact_dir: str  # the run's artifact folder under the proxied root: <experiment>/<run>/artifacts
    logged_model_id: str
    logged_model_dir: str  # the logged model's artifact folder: <experiment>/models/<model id>/artifacts
    model: str
    model_source: str
    version: str
    alias: str
    role_id: int  # the role giving `denied` READ on everything, and the id of one of its grants
    role_grant_id: int
    usernames: dict[str, str]
    tokens: dict[str, str]  # each user's access token: how the matrix signs them in
    bystander: str  # a user the admin-only identity requests aim at

    @property
    def secrets(self) -> tuple[str, ...]:
        """What a user who may not read the shared resources must never see in a 2xx answer."""
        return self.experiment_name, self.run_id, self.logged_model_id, self.model


def make_world(admin: Admin) -> World:
    tag = uuid.uuid4().hex[:8]
    usernames = {user: f"matrix-{tag}-{user}" for user in (*LEVELS, "bystander")}
    for username in usernames.values():
        admin.call("POST", "/api/2.0/mlflow/users/create", {"username": username, "password": PASSWORD})
    tokens = {user: new_token(admin.url, basic(usernames[user], PASSWORD)) for user in LEVELS}
    bystander = usernames.pop("bystander")

    experiment_name = f"matrix-{tag}"
    experiment_id = admin.experiment(experiment_name)
    run = admin.run(experiment_id)
    run_id = run["run_id"]
    admin.call("POST", "/api/2.0/mlflow/runs/log-batch", {
        "run_id": run_id, "params": [{"key": "lr", "value": "0.1"}],
        "metrics": [{"key": "loss", "value": 0.5, "timestamp": now_ms(), "step": step} for step in range(3)],
        "tags": [{"key": "team", "value": "matrix"}]})
    artifact_dir = run["artifact_uri"].removeprefix("mlflow-artifacts:/").lstrip("/")
    admin.upload(f"{artifact_dir}/notes.txt")
    logged_model_id = admin.logged_model(experiment_id, run_id)
    logged_model = admin.call("GET", f"/api/2.0/mlflow/logged-models/{logged_model_id}")["model"]["info"]
    logged_model_dir = logged_model["artifact_uri"].removeprefix("mlflow-artifacts:/").lstrip("/")
    admin.upload(f"{logged_model_dir}/MLmodel")

    model = admin.registered_model(f"matrix-model-{tag}")
    world = World(experiment_id, experiment_name, run_id, artifact_dir, logged_model_id, logged_model_dir, model,
                  f"{run['artifact_uri']}/model", "", "champion", 0, 0, usernames, tokens, bystander)
    world.version = admin.version(model, world)
    admin.call("POST", "/api/2.0/mlflow/registered-models/alias", {"name": model, "alias": world.alias,
                                                                   "version": world.version})

    for user, level in LEVELS.items():
        admin.grant(usernames[user], "experiment", experiment_id, level)
        admin.grant(usernames[user], "registered_model", model, level)
    # `none` holds nothing on the shared resources, but READ elsewhere: a grant on one experiment is not on another.
    admin.grant(usernames["none"], "experiment", admin.experiment(f"matrix-elsewhere-{tag}"), Permission.READ)
    role = admin.call("POST", "/api/3.0/mlflow/roles/create", {"workspace": "default", "name": f"matrix-readers-{tag}"})
    world.role_id = role["role"]["id"]
    for resource_type in ("experiment", "registered_model"):
        added = admin.call("POST", "/api/3.0/mlflow/roles/permissions/add", {
            "role_id": world.role_id, "resource_type": resource_type, "resource_pattern": "*", "permission": "READ"})
        world.role_grant_id = added["role_permission"]["id"]
    admin.call("POST", "/api/3.0/mlflow/roles/assign", {"username": usernames["denied"], "role_id": world.role_id})
    return world


class Case:
    """One user's request: the shared resources (`w`), and fresh ones the admin makes and grants to the user as
    the shared ones are, for the requests that delete, restore or rename what they name."""

    def __init__(self, world: World, admin: Admin, user: str):
        self.w = world
        self.admin = admin
        self.user = user
        self.username = world.usernames.get(user, "")
        self.level = LEVELS.get(user)  # None: anonymous

    def headers(self) -> dict:
        return bearer(self.w.tokens[self.user]) if self.user in self.w.tokens else {}

    def _grant(self, resource_type: str, resource_id: str) -> None:
        if self.level is not None:
            self.admin.grant(self.username, resource_type, resource_id, self.level)

    def experiment(self, deleted: bool = False) -> str:
        experiment_id = self.admin.experiment(unique("matrix-fresh"))
        self._grant("experiment", experiment_id)
        if deleted:
            self.admin.call("POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": experiment_id})
        return experiment_id

    def run(self, deleted: bool = False) -> str:
        run_id = self.admin.run(self.w.experiment_id)["run_id"]
        if deleted:
            self.admin.call("POST", "/api/2.0/mlflow/runs/delete", {"run_id": run_id})
        return run_id

    def logged_model(self) -> str:
        return self.admin.logged_model(self.w.experiment_id, self.w.run_id)

    def model(self) -> str:
        name = self.admin.registered_model(unique("matrix-fresh-model"))
        self._grant("registered_model", name)
        return name

    def version(self) -> str:
        return self.admin.version(self.w.model, self.w)

    def artifact(self) -> str:
        """A fresh file in the shared run's folder (its path under the proxied root)."""
        path = f"{self.w.artifact_dir}/{unique('doomed')}.txt"
        self.admin.upload(path)
        return path

    def tag(self, path: str, body: dict) -> str:
        """A fresh tag set by the admin (`body` names the resource), to be deleted by the case; its key."""
        key = unique("doomed")
        self.admin.call("POST", path, {**body, "key": key, "value": "v"})
        return key

    def alias(self) -> str:
        alias = unique("doomed")
        self.admin.call("POST", "/api/2.0/mlflow/registered-models/alias", {
            "name": self.w.model, "alias": alias, "version": self.w.version})
        return alias

    def logged_model_tag(self) -> str:
        key = unique("doomed")
        self.admin.call("PATCH", f"/api/2.0/mlflow/logged-models/{self.w.logged_model_id}/tags",
                        {"tags": [{"key": key, "value": "v"}]})
        return key

    def own_token(self) -> str:
        """A token of the case's user (for revoking it); anonymous has none."""
        name = unique("tok")
        if self.username:
            answer = requests.post(self.admin.url + "/api/2.0/mlgrid/tokens/create", json={"name": name},
                                   headers=self.headers(), timeout=30)
            assert answer.ok, answer.text
        return name


# ---------------------------------------------------------------- a request per RPC (MLflow's JSON)

def _dataset() -> dict:
    return {"tags": [{"key": "mlflow.data.context", "value": "training"}],
            "dataset": {"name": "d", "digest": "abc123", "source_type": "local", "source": "{}"}}


# RPC name -> the JSON of a well-formed request aimed at the case's resources. Every RPC with a REST route
# must have one (the matrix fails on a route whose RPC is missing); the gRPC side decodes the same JSON.
BODIES = {
    # TrackingService
    "CreateExperiment": lambda c: {"name": unique("matrix-created")},
    "GetExperiment": lambda c: {"experiment_id": c.w.experiment_id},
    "GetExperimentByName": lambda c: {"experiment_name": c.w.experiment_name},
    "SearchExperiments": lambda c: {"filter": f"name = '{c.w.experiment_name}'", "max_results": 10},
    "UpdateExperiment": lambda c: {"experiment_id": c.experiment(), "new_name": unique("matrix-renamed")},
    "DeleteExperiment": lambda c: {"experiment_id": c.experiment()},
    "RestoreExperiment": lambda c: {"experiment_id": c.experiment(deleted=True)},
    "SetExperimentTag": lambda c: {"experiment_id": c.w.experiment_id, "key": "k", "value": "v"},
    "DeleteExperimentTag": lambda c: {"experiment_id": c.w.experiment_id, "key": c.tag(
        "/api/2.0/mlflow/experiments/set-experiment-tag", {"experiment_id": c.w.experiment_id})},
    "CreateRun": lambda c: {"experiment_id": c.w.experiment_id, "start_time": now_ms()},
    "GetRun": lambda c: {"run_id": c.w.run_id},
    "UpdateRun": lambda c: {"run_id": c.w.run_id, "run_name": "matrix-run"},
    "DeleteRun": lambda c: {"run_id": c.run()},
    "RestoreRun": lambda c: {"run_id": c.run(deleted=True)},
    "SearchRuns": lambda c: {"experiment_ids": [c.w.experiment_id], "filter": f"attributes.run_id = '{c.w.run_id}'"},
    "LogParam": lambda c: {"run_id": c.w.run_id, "key": unique("p"), "value": "1"},
    "LogMetric": lambda c: {"run_id": c.w.run_id, "key": "loss", "value": 0.25, "timestamp": now_ms(), "step": 9},
    "SetTag": lambda c: {"run_id": c.w.run_id, "key": "k", "value": "v"},
    "DeleteTag": lambda c: {"run_id": c.w.run_id, "key": c.tag("/api/2.0/mlflow/runs/set-tag", {"run_id": c.w.run_id})},
    "LogBatch": lambda c: {"run_id": c.w.run_id, "params": [{"key": unique("p"), "value": "1"}],
                           "metrics": [{"key": "acc", "value": 1.0, "timestamp": now_ms(), "step": 0}],
                           "tags": [{"key": "k", "value": "v"}]},
    "LogInputs": lambda c: {"run_id": c.w.run_id, "datasets": [_dataset()]},
    "LogOutputs": lambda c: {"run_id": c.w.run_id, "models": [{"model_id": c.w.logged_model_id, "step": 0}]},
    "GetMetricHistory": lambda c: {"run_id": c.w.run_id, "metric_key": "loss"},
    "GetMetricHistoryBulkInterval": lambda c: {"run_ids": [c.w.run_id], "metric_key": "loss"},
    "CreateLoggedModel": lambda c: {"experiment_id": c.w.experiment_id, "name": "created"},
    "GetLoggedModel": lambda c: {"model_id": c.w.logged_model_id},
    "FinalizeLoggedModel": lambda c: {"model_id": c.logged_model(), "status": "LOGGED_MODEL_READY"},
    "DeleteLoggedModel": lambda c: {"model_id": c.logged_model()},
    "SearchLoggedModels": lambda c: {"experiment_ids": [c.w.experiment_id]},
    "SetLoggedModelTags": lambda c: {"model_id": c.w.logged_model_id, "tags": [{"key": "k", "value": "v"}]},
    "DeleteLoggedModelTag": lambda c: {"model_id": c.w.logged_model_id, "tag_key": c.logged_model_tag()},
    "LogLoggedModelParams": lambda c: {"model_id": c.w.logged_model_id, "params": [{"key": unique("p"), "value": "1"}]},
    # ModelRegistryService
    "CreateRegisteredModel": lambda c: {"name": unique("matrix-created-model")},
    "GetRegisteredModel": lambda c: {"name": c.w.model},
    "RenameRegisteredModel": lambda c: {"name": c.model(), "new_name": unique("matrix-renamed-model")},
    "UpdateRegisteredModel": lambda c: {"name": c.w.model, "description": "d"},
    "DeleteRegisteredModel": lambda c: {"name": c.model()},
    "SearchRegisteredModels": lambda c: {"filter": f"name = '{c.w.model}'"},
    "SetRegisteredModelTag": lambda c: {"name": c.w.model, "key": "k", "value": "v"},
    "DeleteRegisteredModelTag": lambda c: {"name": c.w.model, "key": c.tag(
        "/api/2.0/mlflow/registered-models/set-tag", {"name": c.w.model})},
    "CreateModelVersion": lambda c: {"name": c.w.model, "source": c.w.model_source, "run_id": c.w.run_id},
    "GetModelVersion": lambda c: {"name": c.w.model, "version": c.w.version},
    "UpdateModelVersion": lambda c: {"name": c.w.model, "version": c.w.version, "description": "d"},
    "DeleteModelVersion": lambda c: {"name": c.w.model, "version": c.version()},
    "SearchModelVersions": lambda c: {"filter": f"name = '{c.w.model}'"},
    "GetLatestVersions": lambda c: {"name": c.w.model},
    "TransitionModelVersionStage": lambda c: {"name": c.w.model, "version": c.w.version, "stage": "Staging",
                                              "archive_existing_versions": False},
    "SetModelVersionTag": lambda c: {"name": c.w.model, "version": c.w.version, "key": "k", "value": "v"},
    "DeleteModelVersionTag": lambda c: {"name": c.w.model, "version": c.w.version, "key": c.tag(
        "/api/2.0/mlflow/model-versions/set-tag", {"name": c.w.model, "version": c.w.version})},
    "SetRegisteredModelAlias": lambda c: {"name": c.w.model, "alias": c.w.alias, "version": c.w.version},
    "DeleteRegisteredModelAlias": lambda c: {"name": c.w.model, "alias": c.alias()},
    "GetModelVersionByAlias": lambda c: {"name": c.w.model, "alias": c.w.alias},
    # IdentityService: on the caller itself, on a throwaway user, or on the shared experiment
    "CreateUser": lambda c: {"username": unique("matrix-new"), "password": PASSWORD},
    "GetUser": lambda c: {"username": c.username},
    "ListUsers": lambda c: {},
    "GetCurrentUser": lambda c: {},
    "UpdateUserPassword": lambda c: {"username": c.w.bystander, "password": PASSWORD + "!"},
    "UpdateUserAdmin": lambda c: {"username": c.w.bystander, "is_admin": True},
    "DeleteUser": lambda c: {"username": c.w.bystander},
    "GrantUserPermission": lambda c: {"username": c.w.bystander, "resource_type": "experiment",
                                      "resource_id": c.experiment(), "permission": "READ"},
    "RevokeUserPermission": lambda c: {"username": c.username or c.w.bystander, "resource_type": "experiment",
                                       "resource_id": c.experiment()},
    "GetUserPermission": lambda c: {"username": c.username, "resource_type": "experiment",
                                    "resource_id": c.w.experiment_id},
    "ListUserPermissions": lambda c: {"username": c.username},
    "ListCurrentUserPermissions": lambda c: {},
    "CreateRole": lambda c: {"workspace": "default", "name": unique("matrix-role")},
    "GetRole": lambda c: {"role_id": c.w.role_id},
    "ListRoles": lambda c: {},
    "UpdateRole": lambda c: {"role_id": c.w.role_id, "description": "d"},
    "DeleteRole": lambda c: {"role_id": c.w.role_id},
    "AddRolePermission": lambda c: {"role_id": c.w.role_id, "resource_type": "experiment", "resource_pattern": "*",
                                    "permission": "MANAGE"},
    "RemoveRolePermission": lambda c: {"role_permission_id": c.w.role_grant_id},
    "ListRolePermissions": lambda c: {"role_id": c.w.role_id},
    "UpdateRolePermission": lambda c: {"role_permission_id": c.w.role_grant_id, "permission": "MANAGE"},
    "AssignRole": lambda c: {"username": c.w.bystander, "role_id": c.w.role_id},
    "UnassignRole": lambda c: {"username": c.w.usernames["denied"], "role_id": c.w.role_id},
    "ListUserRoles": lambda c: {"username": c.username},
    "ListRoleUsers": lambda c: {"role_id": c.w.role_id},
    "CreateAccessToken": lambda c: {"name": unique("tok"), "expires_in_seconds": 3600},
    "ListAccessTokens": lambda c: {},
    "RevokeAccessToken": lambda c: {"name": c.own_token()},
    "CreateSession": lambda c: {"expires_in_seconds": 3600},
    "EndSession": lambda c: {},
    "ListResourcePermissions": lambda c: {"resource_type": "experiment", "resource_id": c.w.experiment_id},
}

# The identity service checks its callers itself (services/identity/servicer.py: MLflow's rules for users,
# grants, roles and tokens), so its RPCs have no per-resource rule to derive from: who of the matrix's users
# succeeds with the request above, every other signed-in one being refused with PERMISSION_DENIED.
SIGNED_IN = frozenset(LEVELS)
NOBODY = frozenset()  # admins only
IDENTITY_ALLOWED = {
    "CreateUser": NOBODY, "GetUser": SIGNED_IN, "ListUsers": SIGNED_IN, "GetCurrentUser": SIGNED_IN,
    "UpdateUserPassword": NOBODY, "UpdateUserAdmin": NOBODY, "DeleteUser": NOBODY,
    # Granting or revoking on one resource needs MANAGE on it.
    "GrantUserPermission": frozenset({"manager"}), "RevokeUserPermission": frozenset({"manager"}),
    "GetUserPermission": SIGNED_IN, "ListUserPermissions": SIGNED_IN, "ListCurrentUserPermissions": SIGNED_IN,
    "CreateRole": NOBODY, "ListRoles": NOBODY, "UpdateRole": NOBODY, "DeleteRole": NOBODY,
    "AddRolePermission": NOBODY, "RemoveRolePermission": NOBODY, "UpdateRolePermission": NOBODY,
    "AssignRole": NOBODY, "UnassignRole": NOBODY, "ListRoleUsers": NOBODY, "ListUserRoles": SIGNED_IN,
    # Whoever holds a role in a workspace reads its roles, as in MLflow; a user's own grants are a role of theirs
    # in the default workspace (the matrix's `none` holds one on another experiment), `denied` holds the matrix's.
    "GetRole": SIGNED_IN, "ListRolePermissions": SIGNED_IN,
    "CreateAccessToken": SIGNED_IN, "ListAccessTokens": SIGNED_IN, "RevokeAccessToken": SIGNED_IN,
    # A session is opened with a password or an OIDC token, not with an access token (how the matrix signs in;
    # POST /login opens one with a password); EndSession ends the session it is called with (REST_OWN_ERRORS).
    "CreateSession": NOBODY, "EndSession": SIGNED_IN,
    "ListResourcePermissions": frozenset({"manager"}),  # the grants on one resource: MANAGE on it
}
# What an allowed caller gets from a REST route that refuses the request for a reason of its own: EndSession
# called with an access token rather than a session.
REST_OWN_ERRORS = {"EndSession": 400}

# Searches a reader finds the shared resource in (and `none` and `denied` must not): RPC -> the World field.
SHOWS = {"SearchExperiments": "experiment_name", "SearchRuns": "run_id", "SearchRunsStream": "run_id",
         "SearchRegisteredModels": "model", "SearchModelVersions": "model", "SearchLoggedModels": "logged_model_id",
         "WatchEvents": "model"}


# ---------------------------------------------------------------- requests for the gRPC-only RPCs

def _target(c: Case, path: str = "notes.txt") -> art.ArtifactTarget:
    return art.ArtifactTarget(run_id=c.w.run_id, path=path)


# RPC name -> its request message (a list of them for a client stream), for RPCs without a REST route.
GRPC_REQUESTS = {
    "SearchRunsStream": lambda c: trk.SearchRunsRequest(filter=f"attributes.run_id = '{c.w.run_id}'"),
    "GetMetricHistoryBulk": lambda c: trk.GetMetricHistoryBulkRequest(run_ids=[c.w.run_id], metric_key="loss"),
    "IngestMetrics": lambda c: [trk.IngestBatch(batch_id=unique("b"), run_id=c.w.run_id, metrics=[trk.MetricSeries(
        run_id=c.w.run_id, key="ingested", steps=[0], timestamps=[now_ms()], values=[1.0])])],
    "ResolveModelUri": lambda c: reg.ResolveModelUriRequest(uri=f"models:/{c.w.model}/{c.w.version}"),
    "FollowModel": lambda c: reg.FollowModelRequest(name=c.w.model, follower=unique("replica"), lease_seconds=1),
    "UnfollowModel": lambda c: reg.UnfollowModelRequest(name=c.w.model, follower=unique("replica")),
    "WatchEvents": lambda c: reg.WatchEventsRequest(after_event_id=0),
    "Upload": lambda c: [art.UploadRequest(header=art.UploadHeader(target=_target(c, unique("up") + ".txt"))),
                         art.UploadRequest(chunk=b"hello")],
    "Download": lambda c: art.DownloadRequest(target=_target(c)),
    "ListArtifacts": lambda c: art.ListArtifactsRequest(target=_target(c, "")),
    "StatArtifact": lambda c: art.StatArtifactRequest(target=_target(c)),
    "DeleteArtifact": lambda c: art.DeleteArtifactRequest(target=_target(c, c.artifact().rsplit("/", 1)[1])),
    "GetCapabilities": lambda c: art.GetCapabilitiesRequest(),
    "CreateMultipartUpload": lambda c: art.CreateMultipartUploadRequest(target=_target(c, "big.bin"), size=10),
    "CompleteMultipartUpload": lambda c: art.CompleteMultipartUploadRequest(target=_target(c, "big.bin"),
                                                                            upload_id="u", size=10),
    "AbortMultipartUpload": lambda c: art.AbortMultipartUploadRequest(target=_target(c, "big.bin"), upload_id="u"),
    "GetDownloadUrl": lambda c: art.GetDownloadUrlRequest(target=_target(c)),
}

# What an allowed caller gets from an RPC that refuses the request for a reason of its own: the server's local
# artifact store has no direct (presigned) transfers.
NO_DIRECT = frozenset({grpc.StatusCode.FAILED_PRECONDITION})
GRPC_OK_CODES = {"CreateMultipartUpload": NO_DIRECT, "CompleteMultipartUpload": NO_DIRECT,
                 "AbortMultipartUpload": NO_DIRECT, "GetDownloadUrl": NO_DIRECT}


# ---------------------------------------------------------------- the gateway's hand-written routes

@dataclass
class Request:
    """An HTTP request of a hand-written route, and the message of the RPC it makes (None: a public route)."""

    path: str
    params: dict | None = None
    data: bytes | None = None
    message: object = None
    json: dict | None = None
    statuses: frozenset = frozenset({200})  # of a public route

def _proxied(message_cls, path: str, **fields):
    return message_cls(target=MlflowArtifactsApi._target(path), **fields)


def _artifact_routes() -> dict:
    """The mlflow-artifacts proxy's routes (services/gateway/mlflow_artifacts.py), under each of its prefixes."""
    routes = {}
    for prefix in PREFIXES:
        def file(c):
            return f"{c.w.artifact_dir}/notes.txt"

        def upload(c, prefix=prefix):
            path = f"{c.w.artifact_dir}/{unique('up')}.txt"
            return Request(f"{prefix}/artifacts/{path}", data=b"hello",
                           message=art.UploadRequest(header=art.UploadHeader(target=MlflowArtifactsApi._target(path))))

        def delete(c, prefix=prefix):
            path = c.artifact()
            return Request(f"{prefix}/artifacts/{path}", message=_proxied(art.DeleteArtifactRequest, path))

        routes.update({
            ("GET", f"{prefix}/artifacts"): ("ListArtifacts", lambda c, prefix=prefix: Request(
                f"{prefix}/artifacts", params={"path": c.w.artifact_dir},
                message=_proxied(art.ListArtifactsRequest, c.w.artifact_dir))),
            ("GET", f"{prefix}/artifacts/{{path}}"): ("Download", lambda c, prefix=prefix: Request(
                f"{prefix}/artifacts/{file(c)}", message=_proxied(art.DownloadRequest, file(c)))),
            ("PUT", f"{prefix}/artifacts/{{path}}"): ("Upload", upload),
            ("DELETE", f"{prefix}/artifacts/{{path}}"): ("DeleteArtifact", delete),
        })
    return routes


def _get_artifact(route: str):
    """MLflow's UI's route to a run's file, by run id."""
    return lambda c: Request(route, params={"run_id": c.w.run_id, "path": "notes.txt"},
                             message=art.DownloadRequest(target=MlflowArtifactsApi._target("notes.txt", c.w.run_id)))


def _public(path: str, *statuses: int):
    return lambda c: Request(path, statuses=frozenset(statuses or {200}))


def _sign_in(c: Case) -> Request:
    """The UI's sign-in form (as JSON), with the user's password; anonymous with a wrong one."""
    username = c.username or c.w.bystander
    password = PASSWORD if c.username else "not the password!"
    return Request("/login", json={"username": username, "password": password},
                   statuses=frozenset({200 if c.username else 401}))


def _doomed_logged_model_file(c: Case) -> Request:
    path = f"{c.w.logged_model_dir}/{unique('doomed')}.txt"
    c.admin.upload(path)
    return Request(f"{PREFIXES[0]}/artifacts/{path}", message=_proxied(art.DeleteArtifactRequest, path))


def _new_logged_model_file(c: Case) -> Request:
    path = f"{c.w.logged_model_dir}/{unique('up')}.txt"
    return Request(f"{PREFIXES[0]}/artifacts/{path}", data=b"hello",
                   message=art.UploadRequest(header=art.UploadHeader(target=MlflowArtifactsApi._target(path))))


# The proxy's requests on the logged model's folder, inside the experiment's folder but outside every run's
# (where the stock client puts a logged model's files): (verb, RPC) -> how to build the request.
LOGGED_MODEL_ARTIFACTS = {
    ("GET", "ListArtifacts"): lambda c: Request(f"{PREFIXES[0]}/artifacts", params={"path": c.w.logged_model_dir},
                                                message=_proxied(art.ListArtifactsRequest, c.w.logged_model_dir)),
    ("GET", "Download"): lambda c: Request(f"{PREFIXES[0]}/artifacts/{c.w.logged_model_dir}/MLmodel",
                                           message=_proxied(art.DownloadRequest, f"{c.w.logged_model_dir}/MLmodel")),
    ("PUT", "Upload"): _new_logged_model_file,
    ("DELETE", "DeleteArtifact"): _doomed_logged_model_file,
}


# (verb, the route's canonical path) -> (the ArtifactService RPC it makes, or None for a public route; how to
# build its request). A hand-written route missing here fails the matrix.
HAND_WRITTEN = {
    **_artifact_routes(),
    ("GET", "/get-artifact"): ("Download", _get_artifact("/get-artifact")),
    ("GET", "/ajax-api/2.0/mlflow/get-artifact"): ("Download", _get_artifact("/ajax-api/2.0/mlflow/get-artifact")),
    ("GET", "/health"): (None, _public("/health")),
    ("GET", "/metrics"): (None, _public("/metrics")),
    ("GET", "/"): (None, _public("/")),
    ("GET", "/static/{path}"): (None, _public("/static/app.css")),  # a UI file
    # Signing in and out: the credentials are in the form (or the session cookie), not in a header.
    ("GET", "/login"): (None, _public("/login")),
    ("POST", "/login"): (None, _sign_in),
    ("POST", "/logout"): (None, _public("/logout")),  # without a session: a 303 to the sign-in page
    # The server has no OIDC issuer: single sign-on is not set up.
    ("GET", "/oidc/login"): (None, _public("/oidc/login", 404)),
    ("GET", "/oidc/callback"): (None, _public("/oidc/callback", 404)),
}


# ---------------------------------------------------------------- the outcome a rule requires

def expected(rpc_name: str, rule: Rule | None, message, user: str, service: str) -> tuple[str, Permission | None]:
    """(outcome, the permission a DENIED answer must name) for `user`'s request `message` under `rule` (None: a
    public route), derived from the rule: what it reads from the request and what it needs of it."""
    level = LEVELS.get(user)
    if rule is None or rule.public:
        return OK, None
    if level is None:
        return UNAUTHENTICATED, None
    if service == IDENTITY:
        return (OK if user in IDENTITY_ALLOWED[rpc_name] else DENIED), None
    if rule.admin_only:
        return DENIED, None
    needed = [given[0] if given else rule.permission for _, _, *given in (rule.resources or (lambda m: ()))(message)]
    if not needed:
        return OK, None  # signed in is enough: the handler narrows what it answers
    need = max(needed)
    if level.allows(need):
        return OK, None
    return (DENIED, need) if level.allows(Permission.READ) else (HIDDEN, None)
