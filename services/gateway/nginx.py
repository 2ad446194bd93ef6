"""The gateway's gRPC data plane in nginx, where nginx is installed (MLGRID_GATEWAY_NGINX=auto|on|off).

A Python hop costs about one more loopback gRPC round trip (~0.5 ms on a small VM, half of a durable
LogMetric); nginx's `grpc_pass` forwards the same HTTP/2 streams in ~0.1 ms. So nginx listens on the
gateway's gRPC port and sends each routed service's calls (`/<package.Service>/<Method>`) straight to its
backend — bytes, streams both ways, metadata, deadlines (grpc-timeout), cancellation (RST_STREAM), statuses
and trailers all pass through unchanged — and everything else (health, reflection, services without an
address, unknown services) to the Python gateway's gRPC server on a loopback port, which answers them as
it does alone. A backend that does not answer gets UNAVAILABLE naming it, as from the Python router.
"""
import asyncio
import contextlib
import logging
import shutil
import signal
import tempfile
from pathlib import Path

from services.common.errors import FailedPrecondition
from services.gateway.router import Backend

log = logging.getLogger("mlgrid.gateway.nginx")

# Long-lived streams (WatchEvents, large transfers) must not be cut by nginx's idle timers.
STREAM_TIMEOUT = "1d"
START_TIMEOUT_S = 10.0


def nginx_binary(mode: str) -> str | None:
    """The nginx to run for MLGRID_GATEWAY_NGINX=`mode`: None for off, or for auto without nginx installed."""
    if mode not in ("auto", "on", "off"):
        raise FailedPrecondition(f"MLGRID_GATEWAY_NGINX={mode!r}: expected auto, on or off")
    if mode == "off":
        return None
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None)
    if found is None and mode == "on":
        raise FailedPrecondition("MLGRID_GATEWAY_NGINX=on but no nginx binary is installed: install nginx, or set auto or off")
    return found


def grpc_message(text: str) -> str:
    """`text` as an nginx string for a grpc-message header (percent-encoded where gRPC asks for it)."""
    return "".join(c if " " <= c <= "~" and c not in '%"\\$' else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def render_config(backends: list[Backend], listen: str, python_target: str, workdir: Path, shutdown_seconds: float) -> str:
    """nginx.conf for the routed backends (those with an address), the rest to `python_target`."""
    upstreams, locations = [], []
    for backend in backends:
        if backend.channel is None:
            continue
        upstreams.append(f"    upstream {backend.label} {{ server {backend.target}; keepalive 64; }}")
        message = grpc_message(f"the {backend.label} service at {backend.target} is unavailable")
        locations.append(
            f"""        location /{backend.service}/ {{
            grpc_pass grpc://{backend.label};
            error_page 502 503 504 = @{backend.label}_unavailable;
        }}
        location @{backend.label}_unavailable {{
            default_type application/grpc;
            add_header grpc-status 14 always;
            add_header grpc-message "{message}" always;
            return 204;
        }}"""
        )
    temp = {name: workdir / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return f"""# Made by services/gateway/nginx.py; the gateway's gRPC data plane.
worker_processes 1;
worker_shutdown_timeout {max(1, int(shutdown_seconds))}s;
pid {workdir / "nginx.pid"};
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp["client_body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    client_max_body_size 0;
    # gRPC metadata keys may hold underscores; nginx drops such headers unless told not to.
    underscores_in_headers on;
    ignore_invalid_headers off;
    grpc_read_timeout {STREAM_TIMEOUT};
    grpc_send_timeout {STREAM_TIMEOUT};
    client_body_timeout {STREAM_TIMEOUT};
    keepalive_timeout {STREAM_TIMEOUT};
    http2_max_concurrent_streams 1024;
{chr(10).join(upstreams)}
    upstream gateway {{ server {python_target}; keepalive 64; }}
    server {{
        listen {listen} http2;
{chr(10).join(locations)}
        location / {{ grpc_pass grpc://gateway; }}
    }}
}}
"""


class NginxDataPlane:
    """nginx on host:port in front of the backends and of the Python gateway at 127.0.0.1:python_port."""

    def __init__(self, binary: str, backends: list[Backend], host: str, port: int, python_port: int, shutdown_seconds: float):
        self.binary = binary
        self.host, self.port = host, port
        self.workdir = Path(tempfile.mkdtemp(prefix="mlgrid-gateway-nginx-"))
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.config_path = self.workdir / "nginx.conf"
        self.config_path.write_text(render_config(backends, listen, f"127.0.0.1:{python_port}", self.workdir, shutdown_seconds))
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "-p", str(self.workdir), "-c", str(self.config_path), "-e", "stderr", "-g", "daemon off;",
            stderr=asyncio.subprocess.PIPE,
        )
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while True:
            if self.process.returncode is not None:
                error = (await self.process.stderr.read()).decode(errors="replace").strip()
                raise FailedPrecondition(f"nginx ({self.binary}) did not start: {error or self.process.returncode}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1" if self.host in ("0.0.0.0", "") else self.host, self.port)
                writer.close()
                break
            if asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise FailedPrecondition(f"nginx ({self.binary}) did not listen on {self.host}:{self.port} within {START_TIMEOUT_S:.0f}s")
            await asyncio.sleep(0.05)
        asyncio.create_task(self._relay_log())
        log.info("nginx forwards gRPC on %s:%d (config %s)", self.host, self.port, self.config_path)

    async def _relay_log(self) -> None:
        async for line in self.process.stderr:
            log.warning("nginx: %s", line.decode(errors="replace").rstrip())

    async def stop(self) -> None:
        """Stop gracefully (calls in flight finish, up to worker_shutdown_timeout), then remove the config."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=60)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
