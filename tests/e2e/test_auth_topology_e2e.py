"""Every service enforces identity and permissions itself: each as its own process with auth on (as the chart
runs them), called through the gateway and directly on its own port, as `kubectl port-forward` would reach a
pod. The artifact service has no database: it asks the identity service beside tracking, with the caller's
own credentials."""
import base64
import uuid

import grpc
import pytest
from conftest import pg_execute
from sqlalchemy.engine import make_url

import mlgrid
from deploy.local.topology import Topology
from mlgrid.exceptions import MlgridException
from mlgrid.v1 import (
    artifacts_pb2,
    artifacts_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    tracking_pb2,
    tracking_pb2_grpc,
)

pytestmark = pytest.mark.xdist_group("auth-topology")
ADMIN = ("admin", "topology admin password")
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def topology(pg_url, s3_endpoint, tmp_path_factory):
    database_url = make_url(pg_url).set(drivername="postgresql", database=f"mlgrid_auth_{uuid.uuid4().hex[:8]}")
    s3 = {key: s3_endpoint[key] for key in ("url", "access_key", "secret_key", "bucket")}
    topology = Topology(tmp_path_factory.mktemp("auth-topology"), free_ports=True)
    topology.plan(database_url.render_as_string(hide_password=False), s3, admin=ADMIN)
    try:
        topology.up()
        yield topology
    finally:
        topology.down()
        pg_execute(pg_url, f'DROP DATABASE IF EXISTS "{database_url.database}" WITH (FORCE)')


def basic(username: str, password: str) -> tuple:
    return (("authorization", "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()),)


def channel(topology, name: str) -> grpc.Channel:
    return grpc.insecure_channel(topology.processes[name].grpc_target)


@pytest.fixture(scope="module")
def users(topology):
    """`owner` has a run (made through the gateway with a token); the default permission (READ, the chart's) lets
`stranger` read it; `denied` holds a DENY on its experiment."""
    with channel(topology, "tracking") as direct:
        identity = identity_pb2_grpc.IdentityServiceStub(direct)
        for name in ("owner", "stranger", "denied"):
            identity.CreateUser(identity_pb2.CreateUserRequest(username=name, password=PASSWORD), metadata=basic(*ADMIN))
        token = identity.CreateAccessToken(identity_pb2.CreateAccessTokenRequest(name="job"), metadata=basic("owner", PASSWORD)).secret
    client = mlgrid.MlgridClient(f"grpc://{topology.processes['gateway'].grpc_target}", token=token)
    experiment = client.create_experiment(f"private-{uuid.uuid4().hex[:6]}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "loss", 0.25)
    with channel(topology, "tracking") as direct:  # the owner (MANAGE, as its creator) shuts one user out
        identity_pb2_grpc.IdentityServiceStub(direct).GrantUserPermission(identity_pb2.UserPermissionRequest(
            username="denied", resource_type="experiment", resource_id=experiment, permission="DENY"),
            metadata=(("authorization", f"Bearer {token}"),))
    return {"token": token, "experiment": experiment, "run_id": run.info.run_id, "client": client}


def test_each_service_refuses_an_anonymous_caller_on_its_own_port(topology, users):
    calls = {
        "tracking": lambda c: tracking_pb2_grpc.TrackingServiceStub(c).GetRun(tracking_pb2.GetRunRequest(run_id=users["run_id"])),
        "registry": lambda c: registry_pb2_grpc.ModelRegistryServiceStub(c).SearchRegisteredModels(
            registry_pb2.SearchRegisteredModelsRequest()),
        "artifacts": lambda c: artifacts_pb2_grpc.ArtifactServiceStub(c).ListArtifacts(
            artifacts_pb2.ListArtifactsRequest(target=artifacts_pb2.ArtifactTarget(run_id=users["run_id"]))),
    }
    for name, call in calls.items():
        with channel(topology, name) as direct, pytest.raises(grpc.RpcError) as error:
            call(direct)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED, name


def test_the_artifact_service_checks_callers_with_the_identity_service(topology, users):
    target = artifacts_pb2.ArtifactTarget(run_id=users["run_id"], path="notes.txt")
    folder = artifacts_pb2.ArtifactTarget(run_id=users["run_id"])

    def upload(request, metadata):
        header = artifacts_pb2.UploadRequest(header=artifacts_pb2.UploadHeader(target=target))
        return stub.Upload(iter([header, artifacts_pb2.UploadRequest(chunk=b"hello")]), metadata=metadata)

    def refused(call, request, metadata):
        with pytest.raises(grpc.RpcError) as error:
            call(request, metadata=metadata)
        return error.value.code()

    with channel(topology, "artifacts") as direct:
        stub = artifacts_pb2_grpc.ArtifactServiceStub(direct)
        assert upload(None, (("authorization", f"Bearer {users['token']}"),)).size == 5
        listed = stub.ListArtifacts(artifacts_pb2.ListArtifactsRequest(target=folder), metadata=basic("stranger", PASSWORD))
        assert [f.path for f in listed.files] == ["notes.txt"]  # READ by default
        assert refused(upload, None, basic("stranger", PASSWORD)) == grpc.StatusCode.PERMISSION_DENIED  # no EDIT
        assert refused(stub.ListArtifacts, artifacts_pb2.ListArtifactsRequest(target=folder),
                       basic("denied", PASSWORD)) == grpc.StatusCode.NOT_FOUND  # as if there were no such run
        assert refused(stub.ListArtifacts, artifacts_pb2.ListArtifactsRequest(target=folder),
                       basic("stranger", "wrong password!!")) == grpc.StatusCode.UNAUTHENTICATED


def test_tracking_on_its_own_port_hides_what_the_caller_may_not_read(topology, users):
    with channel(topology, "tracking") as direct:
        stub = tracking_pb2_grpc.TrackingServiceStub(direct)
        with pytest.raises(grpc.RpcError) as error:
            stub.GetRun(tracking_pb2.GetRunRequest(run_id=users["run_id"]), metadata=basic("denied", PASSWORD))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        found = stub.SearchExperiments(tracking_pb2.SearchExperimentsRequest(), metadata=basic("denied", PASSWORD))
        assert users["experiment"] not in [e.experiment_id for e in found.experiments]


def test_the_gateway_passes_credentials_and_the_services_decide(topology, users):
    gateway = f"grpc://{topology.processes['gateway'].grpc_target}"
    assert users["client"].get_run(users["run_id"]).data.metrics == {"loss": 0.25}
    with pytest.raises(MlgridException) as error:
        mlgrid.MlgridClient(gateway, username="denied", password=PASSWORD).get_run(users["run_id"])
    assert error.value.code == grpc.StatusCode.NOT_FOUND


def test_serving_needs_read_on_the_model_it_serves(topology, users, monkeypatch):
    """A registered model (the owner's) served by its own process, which loads it as the admin; a caller of
    its predictions needs READ on the registered model, over OIP gRPC and over HTTP (/invocations)."""
    import json
    import urllib.error
    import urllib.request

    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from mlgrid.inference.v2 import grpc_predict_v2_pb2 as oip
    from mlgrid.inference.v2 import grpc_predict_v2_pb2_grpc as oip_grpc

    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(x, y)
    name = f"iris-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("MLGRID_TRACKING_TOKEN", users["token"])
    mlgrid.set_tracking_uri(f"grpc://{topology.processes['gateway'].grpc_target}")
    mlgrid.set_experiment(experiment_id=users["experiment"])
    with mlgrid.start_run():
        info = mlgrid.sklearn.log_model(model, name="model", registered_model_name=name)
    with channel(topology, "tracking") as direct:  # the owner shuts `denied` out of the model too
        identity_pb2_grpc.IdentityServiceStub(direct).GrantUserPermission(
            identity_pb2.UserPermissionRequest(username="denied", resource_type="registered_model", resource_id=name,
                                               permission="DENY"), metadata=(("authorization", f"Bearer {users['token']}"),))
    assert str(info.registered_model_version) == "1"
    serving = topology.add_serving(f"iris=models:/{name}/1")
    topology.start("serving", timeout=120)

    rows = x.head(3)
    inputs = [oip.ModelInferRequest.InferInputTensor(name=c, datatype="FP64", shape=[3],
                                                     contents=oip.InferTensorContents(fp64_contents=rows[c].tolist()))
              for c in rows.columns]
    with grpc.insecure_channel(serving.grpc_target) as direct:
        stub = oip_grpc.GRPCInferenceServiceStub(direct)
        assert stub.ServerReady(oip.ServerReadyRequest()).ready  # probes are public
        for metadata, code in ((None, grpc.StatusCode.UNAUTHENTICATED), (basic("denied", PASSWORD), grpc.StatusCode.NOT_FOUND)):
            with pytest.raises(grpc.RpcError) as error:
                stub.ModelInfer(oip.ModelInferRequest(model_name="iris", inputs=inputs), metadata=metadata, timeout=30)
            assert error.value.code() == code
        answer = stub.ModelInfer(oip.ModelInferRequest(model_name="iris", inputs=inputs), metadata=basic("stranger", PASSWORD),
                                 timeout=30)
        assert len(answer.outputs) == 1

    body = json.dumps({"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}).encode()
    url = f"http://127.0.0.1:{serving.http_port}/invocations"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"}), timeout=30)
    assert error.value.code == 401 and error.value.headers["WWW-Authenticate"].startswith("Basic")
    headers = {"Content-Type": "application/json", "Authorization": dict(basic("stranger", PASSWORD))["authorization"]}
    with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=30) as response:
        assert json.loads(response.read()) == {"predictions": model.predict(rows).tolist()}
