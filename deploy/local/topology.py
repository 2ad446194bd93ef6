"""`make up` / `make down`: every mlgrid service as its own process, as the Helm chart's pods, on
PostgreSQL and an S3 endpoint, with the gateway in front, each on its own ports and configured by
the same environment variables the chart sets.

    python deploy/local/topology.py up [--state-dir .topology] [--models NAME=URI,...]
    python deploy/local/topology.py status | down

PostgreSQL: MLGRID_TOPOLOGY_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/mlgrid_topology;
the database is created when missing and migrated by `mlgrid db upgrade`, as the chart's hook Job).
S3: MLGRID_S3_ENDPOINT_URL with MLGRID_S3_ACCESS_KEY_ID / MLGRID_S3_SECRET_ACCESS_KEY (a MinIO, say);
without it, moto's standalone S3 server on a loopback port. The state (ports, pids, logs) is kept in
the state folder, so that `down` and `status` find the processes again.
"""
import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from services.common.server import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/mlgrid_topology"
BUCKET = "mlgrid"
# Start order: each one's dependencies come before it.
SERVICES = ("tracking", "artifacts", "registry", "serving", "gateway")
# `make up`'s (gRPC, HTTP) ports: the gateway where `mlgrid server` would be, the rest beside it.
FIXED_PORTS = {"gateway": (50051, 5000), "tracking": (50061, 9101), "artifacts": (50062, 9102), "registry": (50063, 9103), "serving": (50064, 8080)}


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    grpc_port: int = 0
    http_port: int = 0  # /metrics (and, for the gateway and serving, their HTTP APIs)
    pid: int = 0
    log: str = ""

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@dataclass
class Topology:
    """The processes of one topology and where their state lives."""

    state_dir: Path
    free_ports: bool = False  # tests: any free ports instead of FIXED_PORTS
    database_url: str = ""
    s3: dict = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    admin: tuple[str, str] | None = None  # auth on, with this first admin (username, password)

    # ---------------------------------------------------------------- state

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {"database_url": self.database_url, "s3": self.s3, "processes": {n: asdict(p) for n, p in self.processes.items()}}
        self.state_file.write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> "Topology":
        state = json.loads((state_dir / "state.json").read_text())
        processes = {name: Process(**fields) for name, fields in state["processes"].items()}
        return cls(state_dir, database_url=state["database_url"], s3=state["s3"], processes=processes)

    def ports(self, name: str) -> tuple[int, int]:
        return (free_port(), free_port()) if self.free_ports else FIXED_PORTS[name]

    # ---------------------------------------------------------------- the pieces

    def plan(self, database_url: str, s3: dict, models: str = "", admin: tuple[str, str] | None = None) -> None:
        """Ports and environment of every service, as the chart's ConfigMaps and Secrets give them; with `admin`
        (username, password), auth on in every service, as the chart's default."""
        self.database_url, self.s3, self.admin = database_url, s3, admin
        store_uri = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)

        def process(name: str, **env: str) -> Process:
            grpc_port, http_port = self.ports(name)
            common = {"MLGRID_HOST": "127.0.0.1", "MLGRID_GRPC_PORT": str(grpc_port), "MLGRID_METRICS_PORT": str(http_port)}
            return Process(name, [sys.executable, "-m", f"services.{name}"], {**common, **env}, grpc_port, http_port)

        tracking = process("tracking", MLGRID_BACKEND_STORE_URI=store_uri, MLGRID_DB_AUTO_INIT="false")
        artifacts = process(
            "artifacts",
            MLGRID_ARTIFACTS_DESTINATION=f"s3://{s3['bucket']}/artifacts",
            MLGRID_S3_ENDPOINT_URL=s3["url"],
            MLGRID_S3_ACCESS_KEY_ID=s3["access_key"],
            MLGRID_S3_SECRET_ACCESS_KEY=s3["secret_key"],
            MLGRID_TRACKING_TARGET=tracking.grpc_target,
        )
        registry = process("registry", MLGRID_BACKEND_STORE_URI=store_uri, MLGRID_DB_AUTO_INIT="false")
        gateway = process(
            "gateway",
            MLGRID_GATEWAY_TRACKING_TARGET=tracking.grpc_target,
            MLGRID_GATEWAY_ARTIFACTS_TARGET=artifacts.grpc_target,
            MLGRID_GATEWAY_REGISTRY_TARGET=registry.grpc_target,
        )
        # The gateway's HTTP port serves MLflow's REST API, the UI and its /metrics.
        gateway.env.update(MLGRID_GATEWAY_HTTP_PORT=str(gateway.http_port), MLGRID_METRICS_PORT="0")
        self.processes = {p.name: p for p in (tracking, artifacts, registry, gateway)}
        if admin:
            for process in self.processes.values():
                process.env["MLGRID_AUTH"] = "on"
                if process.name in ("artifacts", "gateway"):
                    process.env["MLGRID_AUTH_IDENTITY_TARGET"] = tracking.grpc_target
            tracking.env.update(MLGRID_ADMIN_USERNAME=admin[0], MLGRID_ADMIN_PASSWORD=admin[1])
        if models:
            self.add_serving(models)

    def add_serving(self, models: str) -> Process:
        """The serving service for `models` (NAME=URI,...), reading the registry and artifacts through
        the gateway, and the gateway's route to it (takes effect when the gateway (re)starts)."""
        grpc_port, http_port = self.ports("serving")
        gateway = self.processes["gateway"]
        serving = Process(
            "serving",
            [sys.executable, "-m", "services.serving"],
            {
                "MLGRID_HOST": "127.0.0.1",
                "MLGRID_GRPC_PORT": str(grpc_port),
                "MLGRID_SERVING_HTTP_PORT": str(http_port),
                "MLGRID_METRICS_PORT": "0",  # serving's /metrics is on its HTTP port
                "MLGRID_SERVING_MODELS": models,
                "MLGRID_TRACKING_URI": f"grpc://{gateway.grpc_target}",
            },
            grpc_port,
            http_port,
        )
        if self.admin:  # it loads models as the admin (the chart's default without serving.auth.existingSecret)
            serving.env.update(MLGRID_AUTH="on", MLGRID_AUTH_IDENTITY_TARGET=self.processes["tracking"].grpc_target,
                               MLGRID_TRACKING_USERNAME=self.admin[0], MLGRID_TRACKING_PASSWORD=self.admin[1])
        self.processes["serving"] = serving
        gateway.env["MLGRID_GATEWAY_SERVING_TARGET"] = serving.grpc_target
        return serving

    # ---------------------------------------------------------------- lifecycle

    def start(self, name: str, timeout: float = 60) -> Process:
        """Start one service (again) and wait until its health service says SERVING."""
        process = self.processes[name]
        self.state_dir.mkdir(parents=True, exist_ok=True)
        process.log = str(self.state_dir / f"{name}.log")
        with open(process.log, "ab") as log:
            proc = subprocess.Popen(
                process.argv, cwd=REPO, env={**os.environ, **process.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        process.pid = proc.pid
        self.save()
        wait_serving(process, proc, timeout)
        return process

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        process = self.processes[name]
        if not process.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + timeout
        while alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.pid = 0
        self.save()

    def up(self) -> None:
        create_database(self.database_url)
        subprocess.run([str(BIN / "mlgrid"), "db", "upgrade", self.database_url], check=True, cwd=REPO)
        for name in SERVICES:
            if name in self.processes:
                self.start(name)

    def down(self) -> None:
        for name in reversed(SERVICES):
            if name in self.processes:
                self.stop(name)
        s3_pid = self.s3.get("pid")
        if s3_pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(s3_pid, signal.SIGTERM)
            self.s3["pid"] = 0
        self.save()

    def status(self) -> dict:
        return {
            name: {"pid": p.pid, "alive": bool(p.pid) and alive(p.pid), "grpc": p.grpc_target, "http": f"127.0.0.1:{p.http_port}", "log": p.log}
            for name, p in self.processes.items()
        }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap our own exited child
        return done == 0
    return True


def health_serving(target: str) -> bool:
    """Whether the gRPC server at `target` answers its health check with SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


def wait_serving(process: Process, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not health_serving(process.grpc_target):
        if proc.poll() is not None:
            raise RuntimeError(f"{process.name} exited ({proc.returncode}): {Path(process.log).read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} did not become ready in {timeout:.0f}s: see {process.log}")
        time.sleep(0.1)


def create_database(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)

    async def create():
        conn = await asyncpg.connect(admin)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", parsed.database):
                await conn.execute(f'CREATE DATABASE "{parsed.database}"')
        finally:
            await conn.close()

    asyncio.run(create())


def s3_endpoint(state_dir: Path) -> dict:
    """MLGRID_S3_ENDPOINT_URL's store, else moto's standalone S3 server (started here); the bucket made."""
    url = os.environ.get("MLGRID_S3_ENDPOINT_URL")
    s3 = {"bucket": os.environ.get("MLGRID_TOPOLOGY_BUCKET", BUCKET), "pid": 0}
    if url:
        s3.update(url=url, access_key=os.environ["MLGRID_S3_ACCESS_KEY_ID"], secret_key=os.environ["MLGRID_S3_SECRET_ACCESS_KEY"])
    else:
        port = free_port()
        state_dir.mkdir(parents=True, exist_ok=True)
        with open(state_dir / "s3.log", "ab") as log:
            proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        s3.update(url=f"http://127.0.0.1:{port}", access_key="test", secret_key="test", pid=proc.pid)
        wait_http(s3["url"], proc)
    make_bucket(s3)
    return s3


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no S3 endpoint at {url}") from None
            time.sleep(0.1)


def make_bucket(s3: dict) -> None:
    """What the chart's bucket Job does."""
    from minio import Minio

    scheme, host = s3["url"].split("://", 1)
    client = Minio(host, s3["access_key"], s3["secret_key"], secure=scheme == "https", region="us-east-1")
    if not client.bucket_exists(s3["bucket"]):
        client.make_bucket(s3["bucket"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=REPO / ".topology")
    parser.add_argument("--models", default=os.environ.get("MLGRID_SERVING_MODELS", ""), help="NAME=URI,... to serve (serving starts only with models).")
    args = parser.parse_args()
    if args.command == "up":
        if (args.state_dir / "state.json").exists() and any(s["alive"] for s in Topology.load(args.state_dir).status().values()):
            sys.exit(f"a topology is running already (state in {args.state_dir}): make down first")
        topology = Topology(args.state_dir)
        topology.plan(os.environ.get("MLGRID_TOPOLOGY_DATABASE_URL", DEFAULT_DATABASE_URL), s3_endpoint(args.state_dir), args.models)
        try:
            topology.up()
        except BaseException:
            topology.down()
            raise
        print(json.dumps(topology.status(), indent=2))
        gateway = topology.processes["gateway"]
        print(f"gateway: gRPC grpc://{gateway.grpc_target}, HTTP http://127.0.0.1:{gateway.env['MLGRID_GATEWAY_HTTP_PORT']}")
    elif not (args.state_dir / "state.json").exists():
        print(f"no topology state in {args.state_dir}")
    elif args.command == "down":
        Topology.load(args.state_dir).down()
    else:
        print(json.dumps(Topology.load(args.state_dir).status(), indent=2))


if __name__ == "__main__":
    main()
