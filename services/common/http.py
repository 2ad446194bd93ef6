"""The HTTP side of the services that have one (the gateway's REST API and UI, serving's REST API,
`mlgrid server`): serving an aiohttp app, and counting its requests. Kept apart so that the services
without one (tracking, artifacts, registry) never load aiohttp (~10 MB of resident memory)."""
import time

from aiohttp import web

from services.common.metrics import HTTP_LATENCY, HTTP_REQUESTS


async def start_http(app: web.Application, host: str, port: int, shutdown_seconds: float = 60.0) -> web.AppRunner:
    """Serve an aiohttp app on host:port; `runner.cleanup()` stops it, letting requests in flight
    finish for up to `shutdown_seconds`."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_seconds)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise SystemExit(f"cannot listen on {host}:{port} for HTTP: {error.strerror}; is the port in use?") from None
    return runner


def http_metrics_middleware():
    """An aiohttp middleware counting and timing requests by route template (unmatched paths as one)."""
    children: dict[tuple, tuple] = {}

    @web.middleware
    async def middleware(request: web.Request, handler):
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            resource = request.match_info.route.resource
            key = (resource.canonical if resource is not None else "unmatched", request.method, status)
            child = children.get(key)
            if child is None:
                child = children[key] = (HTTP_REQUESTS.labels(*key), HTTP_LATENCY.labels(*key[:2]))
            child[0].inc()
            child[1].observe(time.perf_counter() - started)

    return middleware
