"""The web UI's files on the gateway's HTTP port: index.html at / and the rest under /static/.

The files (services/gateway/ui/, no build step) are read once, at start-up, with a gzip copy of
each text file and an ETag; a browser revalidates them (304 when unchanged), vendored libraries
are cached for a day.
"""
import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

UI_DIR = Path(__file__).with_name("ui")
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
COMPRESSIBLE = {".js", ".css", ".html", ".svg", ".json"}
REVALIDATE = "no-cache"
VENDOR_CACHE = "public, max-age=86400"


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    etag: str
    content_type: str
    cache_control: str


def load_assets(root: Path = UI_DIR) -> dict[str, Asset]:
    """Every file under root, keyed by its path relative to root (with /)."""
    assets = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        body = path.read_bytes()
        content_type = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type == "application/json":
            content_type += "; charset=utf-8"
        assets[name] = Asset(
            body=body,
            gzipped=gzip.compress(body, 6) if path.suffix in COMPRESSIBLE else None,
            etag=f'"{hashlib.sha256(body).hexdigest()[:20]}"',
            content_type=content_type,
            cache_control=VENDOR_CACHE if name.startswith("vendor/") else REVALIDATE,
        )
    return assets


def _respond(request: web.Request, asset: Asset) -> web.Response:
    headers = {"ETag": asset.etag, "Cache-Control": asset.cache_control, "Vary": "Accept-Encoding"}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = asset.content_type
    return web.Response(body=body, headers=headers)


def add_routes(app: web.Application, rest=None) -> None:
    """Serve the UI: GET / (index.html) and GET /static/<path> (rest: the RestGateway, unused)."""
    assets = load_assets()

    async def index(request: web.Request) -> web.Response:
        return _respond(request, assets["index.html"])

    async def static(request: web.Request) -> web.Response:
        asset = assets.get(request.match_info["path"])
        if asset is None:
            raise web.HTTPNotFound(text=f"no UI file {request.match_info['path']!r}")
        return _respond(request, asset)

    app.router.add_get("/", index)
    app.router.add_get("/static/{path:.+}", static)
