"""The client's credentials reach a real gRPC server on every kind of call (unary, client- and
server-streaming: ingest, artifact transfers, registry watch), over plain and TLS channels, from the
environment or from arguments, and are never shown."""
import base64
import datetime
import hashlib
import ipaddress
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mlgrid import MlgridClient
from mlgrid._artifact_transfer import ArtifactRoot
from mlgrid._credentials import CREDENTIAL_ENV, MLFLOW_SERVER_CERT_ENV, SERVER_CERT_ENV
from mlgrid.exceptions import MlgridException
from mlgrid.v1 import artifacts_pb2 as apb
from mlgrid.v1 import registry_pb2 as rpb
from mlgrid.v1 import tracking_pb2 as tpb

TOKEN = "mlg_s3cret-token"
FILE = b"some artifact bytes\n" * 100


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class Recorder:
    """The `authorization` metadata each call arrived with, by method name; refuses calls without it
    when `required`."""

    def __init__(self):
        self.seen: dict[str, str | None] = {}
        self.required = False

    def record(self, method: str, context) -> None:
        self.seen[method] = dict(context.invocation_metadata()).get("authorization")
        if self.required and self.seen[method] is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no credentials")

    def handlers(self) -> list:
        def unary(method, request_type, respond):
            def handle(request, context):
                self.record(method, context)
                return respond(request)
            return grpc.unary_unary_rpc_method_handler(handle, request_type.FromString, lambda m: m.SerializeToString())

        def server_streaming(method, request_type, respond):
            def handle(request, context):
                self.record(method, context)
                yield from respond(request)
            return grpc.unary_stream_rpc_method_handler(handle, request_type.FromString, lambda m: m.SerializeToString())

        def client_streaming(method, request_type, respond):
            def handle(requests, context):
                self.record(method, context)
                return respond(list(requests))
            return grpc.stream_unary_rpc_method_handler(handle, request_type.FromString, lambda m: m.SerializeToString())

        def upload(requests):
            data = b"".join(r.chunk for r in requests if r.WhichOneof("part") == "chunk")
            return apb.UploadResponse(path="a.txt", size=len(data), sha256=hashlib.sha256(data).hexdigest())

        def download(request):
            yield apb.DownloadResponse(header=apb.DownloadHeader(
                total_size=len(FILE), sha256=hashlib.sha256(FILE).hexdigest(), offset=0, length=len(FILE)))
            yield apb.DownloadResponse(chunk=FILE)

        return [
            grpc.method_handlers_generic_handler("mlgrid.v1.TrackingService", {
                "GetExperiment": unary("GetExperiment", tpb.GetExperimentRequest, lambda r: tpb.GetExperimentResponse(
                    experiment=tpb.Experiment(experiment_id=r.experiment_id, name="exp"))),
                "GetMetricHistory": server_streaming("GetMetricHistory", tpb.GetMetricHistoryRequest,
                                                     lambda r: iter([tpb.MetricSeries()])),
                "IngestMetrics": client_streaming("IngestMetrics", tpb.IngestBatch,
                                                  lambda batches: tpb.IngestSummary(batches=len(batches))),
            }),
            grpc.method_handlers_generic_handler("mlgrid.v1.ModelRegistryService", {
                "WatchEvents": server_streaming("WatchEvents", rpb.WatchEventsRequest,
                                                lambda r: iter([rpb.RegistryEvent(event_id=7)])),
            }),
            grpc.method_handlers_generic_handler("mlgrid.v1.ArtifactService", {
                "GetCapabilities": unary("GetCapabilities", apb.GetCapabilitiesRequest,
                                         lambda r: apb.GetCapabilitiesResponse(backend="local")),
                "Upload": client_streaming("Upload", apb.UploadRequest, upload),
                "Download": server_streaming("Download", apb.DownloadRequest, download),
            }),
        ]


def self_signed_certificate(tmp_path) -> tuple[bytes, bytes, str]:
    """A key and certificate for localhost and 127.0.0.1, and the certificate's file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    path = tmp_path / "server.pem"
    path.write_bytes(cert_pem)
    return key_pem, cert_pem, str(path)


@pytest.fixture(autouse=True)
def no_credentials_in_the_environment(monkeypatch):
    for name in (*CREDENTIAL_ENV, SERVER_CERT_ENV, MLFLOW_SERVER_CERT_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def recorder():
    return Recorder()


def start_server(recorder: Recorder, credentials: grpc.ServerCredentials | None = None) -> tuple[grpc.Server, int]:
    server = grpc.server(ThreadPoolExecutor(4), handlers=recorder.handlers())
    port = (server.add_secure_port("127.0.0.1:0", credentials) if credentials
            else server.add_insecure_port("127.0.0.1:0"))
    server.start()
    return server, port


@pytest.fixture
def plain_uri(recorder):
    server, port = start_server(recorder)
    yield f"grpc://127.0.0.1:{port}"
    server.stop(None)


def every_kind_of_call(client: MlgridClient, tmp_path) -> None:
    assert client.get_experiment("1").name == "exp"  # unary
    client.get_metric_history_columns("run", "loss")  # server-streaming
    assert client.ingest([tpb.IngestBatch(run_id="run", batch_id="b1")]).batches == 1  # client-streaming
    source = tmp_path / "a.txt"
    source.write_bytes(FILE)
    assert client.artifacts.upload_file(ArtifactRoot(run_id="run"), str(source), "a.txt").size == len(FILE)
    client.artifacts.download_file(ArtifactRoot(run_id="run"), "a.txt", str(tmp_path / "b.txt"), len(FILE))
    assert (tmp_path / "b.txt").read_bytes() == FILE
    with client.watch_registry_events() as events:
        assert next(events).event_id == 7


METHODS = {"GetExperiment", "GetMetricHistory", "IngestMetrics", "GetCapabilities", "Upload", "Download", "WatchEvents"}


def test_the_token_from_the_environment_goes_on_every_kind_of_call(plain_uri, recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("MLGRID_TRACKING_TOKEN", TOKEN)
    monkeypatch.setenv("MLGRID_TRACKING_USERNAME", "alice")  # the token is preferred
    monkeypatch.setenv("MLGRID_TRACKING_PASSWORD", "pw")
    with MlgridClient(plain_uri) as client:
        every_kind_of_call(client, tmp_path)
    assert recorder.seen == dict.fromkeys(METHODS, f"Bearer {TOKEN}")


def test_username_and_password_from_the_environment_are_basic_credentials(plain_uri, recorder, tmp_path, monkeypatch):
    monkeypatch.setenv("MLGRID_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLGRID_TRACKING_PASSWORD", "pa:ss wörd")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "mlflow-token")  # mlgrid's variables come first
    with MlgridClient(plain_uri) as client:
        every_kind_of_call(client, tmp_path)
    assert recorder.seen == dict.fromkeys(METHODS, basic("alice", "pa:ss wörd"))


def test_the_stock_mlflow_variables_are_read_when_mlgrid_has_none(plain_uri, recorder, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    with MlgridClient(plain_uri) as client:
        client.get_experiment("1")
    assert recorder.seen["GetExperiment"] == basic("bob", "pw")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    with MlgridClient(plain_uri) as client:
        client.get_experiment("1")
    assert recorder.seen["GetExperiment"] == f"Bearer {TOKEN}"


def test_arguments_win_over_the_environment(plain_uri, recorder, monkeypatch):
    monkeypatch.setenv("MLGRID_TRACKING_TOKEN", "from-the-environment")
    with MlgridClient(plain_uri, username="carol", password="pw") as client:
        client.get_experiment("1")
        client.ingest([tpb.IngestBatch(run_id="run", batch_id="b1")])
    assert recorder.seen == dict.fromkeys(("GetExperiment", "IngestMetrics"), basic("carol", "pw"))
    with MlgridClient(plain_uri, token=TOKEN, username="carol", password="pw") as client:
        client.get_experiment("1")
    assert recorder.seen["GetExperiment"] == f"Bearer {TOKEN}"


def test_no_credentials_send_no_header_and_a_half_pair_is_refused(plain_uri, recorder, monkeypatch):
    with MlgridClient(plain_uri) as client:
        client.get_experiment("1")
    assert recorder.seen == {"GetExperiment": None}
    monkeypatch.setenv("MLGRID_TRACKING_USERNAME", "alice")
    with pytest.raises(MlgridException, match="MLGRID_TRACKING_USERNAME is set without MLGRID_TRACKING_PASSWORD"):
        MlgridClient(plain_uri)


def test_the_secret_is_not_in_the_repr(plain_uri, monkeypatch):
    with MlgridClient(plain_uri, token=TOKEN) as client:
        assert TOKEN not in repr(client) and "bearer token" in repr(client)
        assert TOKEN not in repr(vars(client))
    with MlgridClient(plain_uri, username="alice", password="hunter22") as client:
        assert "hunter22" not in repr(client) and "hunter22" not in repr(vars(client))
        assert base64.b64encode(b"alice:hunter22").decode() not in repr(vars(client))


def test_unauthenticated_says_which_variables_to_set(plain_uri, recorder):
    recorder.required = True
    with MlgridClient(plain_uri) as client, pytest.raises(MlgridException) as caught:
        client.get_experiment("1")
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "no credentials" in caught.value.message and "MLGRID_TRACKING_TOKEN" in caught.value.message
    assert "MLGRID_TRACKING_USERNAME and MLGRID_TRACKING_PASSWORD" in caught.value.message


def test_over_tls_the_credentials_are_call_credentials(recorder, tmp_path, monkeypatch):
    key_pem, cert_pem, cert_path = self_signed_certificate(tmp_path)
    server, port = start_server(recorder, grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    try:
        monkeypatch.setenv("MLGRID_TRACKING_SERVER_CERT_PATH", cert_path)
        with MlgridClient(f"grpcs://localhost:{port}", token=TOKEN) as client:
            every_kind_of_call(client, tmp_path)
        assert recorder.seen == dict.fromkeys(METHODS, f"Bearer {TOKEN}")
        recorder.seen.clear()
        with MlgridClient(f"grpcs://localhost:{port}") as client:
            client.get_experiment("1")
        assert recorder.seen == {"GetExperiment": None}
    finally:
        server.stop(None)
