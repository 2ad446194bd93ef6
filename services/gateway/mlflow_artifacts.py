"""MLflow's artifact proxy API, as `mlflow server --serve-artifacts` has it, over the artifact service's gRPC.

    GET    /api/2.0/mlflow-artifacts/artifacts/<path>      download (streamed)
    PUT    /api/2.0/mlflow-artifacts/artifacts/<path>      upload (the request body, streamed)
    GET    /api/2.0/mlflow-artifacts/artifacts?path=<dir>  list one level: {"files": [{path, is_dir, file_size}]}
    DELETE /api/2.0/mlflow-artifacts/artifacts/<path>      a file or a folder
    GET    /get-artifact?run_id=<id>&path=<path>           a run's file (MLflow's UI)

and the same under /ajax-api/2.0/. Paths are relative to the artifact root: what follows
`mlflow-artifacts:/` in a run's or logged model's artifact URI. These endpoints move raw bytes, not
JSON messages, so they are written by hand, as in MLflow. Bytes stream through in chunks of at most
CHUNK_SIZE (in the wire form of mlgrid._wire): memory stays constant whatever the file size.
MLflow's multipart (`mpu/`) and presigned endpoints are not offered: its client only uses them when
the server says it supports them (/api/3.0/mlflow/server-info), and streams otherwise.
"""
from __future__ import annotations

import asyncio
import logging
import mimetypes
import posixpath
from collections.abc import AsyncIterator
from urllib.parse import quote

import grpc
from aiohttp import web

from mlgrid import _wire
from mlgrid.v1 import artifacts_pb2 as pb
from mlgrid.v1 import artifacts_pb2_grpc
from services.gateway.rest import RestGateway, credentials, json_response, status_error
from services.gateway.router import Backend

PREFIXES = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
# The artifact root MLflow's mlflow-artifacts:/ names: the artifact service's whole store.
PROXIED_ROOT = "mlgrid-artifacts:/"
CHUNK_SIZE = 1024 * 1024
LIST_PAGE = 10_000
# MLflow shows these as text in its UI and serves them as text/plain (mlflow.utils.mime_type_utils).
TEXT_EXTENSIONS = frozenset(
    ["txt", "log", "err", "cfg", "conf", "cnf", "cf", "ini", "properties", "prop", "hocon", "toml", "yaml", "yml", "xml", "json", "js", "py", "py3", "csv", "tsv", "md", "rst", "ipynb"]
)
TEXT_FILE_NAMES = frozenset({"MLmodel", "MLproject"})

SERVICE = "mlgrid.v1.ArtifactService"
log = logging.getLogger("mlgrid.gateway.artifacts")


def guess_mime_type(file_name: str) -> str:
    """What MLflow's server answers as Content-Type for a file of that name."""
    base = posixpath.basename(file_name)
    if base in TEXT_FILE_NAMES or base.rpartition(".")[2].lower() in TEXT_EXTENSIONS:
        return "text/plain"
    return mimetypes.guess_type(base)[0] or "application/octet-stream"


def _content_disposition(file_name: str) -> str:
    try:
        file_name.encode("ascii")
    except UnicodeEncodeError:
        return f"attachment; filename=download; filename*=UTF-8''{quote(file_name, safe='')}"
    return f'attachment; filename="{file_name}"' if any(c in file_name for c in ' ;,"') else f"attachment; filename={file_name}"


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The request body in chunks of CHUNK_SIZE (the last one shorter), as they arrive."""
    pending = bytearray()
    async for data in request.content.iter_chunked(CHUNK_SIZE):
        pending += data
        if len(pending) >= CHUNK_SIZE:
            yield _wire.chunk_message(bytes(pending[:CHUNK_SIZE]))
            del pending[:CHUNK_SIZE]
    if pending:
        yield _wire.chunk_message(bytes(pending))


class MlflowArtifactsApi:
    """The handlers. Listing and deleting take the gateway's REST timeout; transfers last as long as they stream."""

    def __init__(self, backend: Backend, rest: RestGateway):
        self._backend = backend
        self._rest = rest
        channel = backend.channel
        self._stub = artifacts_pb2_grpc.ArtifactServiceStub(channel)
        # The bulk calls carry chunks in their wire form (mlgrid._wire): no protobuf copies.
        self._upload, self._download = _wire.transfer_calls(channel)

    def _error(self, error: grpc.aio.AioRpcError) -> web.Response:
        return self._rest.call_error(self._backend, error)

    @staticmethod
    def _target(path: str, run_id: str = "") -> pb.ArtifactTarget:
        # The artifact service checks the path (no '..', absolute paths...) and, inside a run's
        # folder, the run: its answer is the one the caller gets.
        if run_id:
            return pb.ArtifactTarget(run_id=run_id, path=path)
        return pb.ArtifactTarget(root_uri=PROXIED_ROOT, path=path)

    async def download(self, request: web.Request) -> web.StreamResponse:
        return await self._send(request, self._target(request.match_info["path"]))

    async def get_artifact(self, request: web.Request) -> web.StreamResponse:
        """MLflow's /get-artifact: a file of a run, by the run's id (`run_id` or `run_uuid`) and path."""
        run_id = request.query.get("run_id") or request.query.get("run_uuid")
        if not run_id or "path" not in request.query:
            return status_error(grpc.StatusCode.INVALID_ARGUMENT, "name the run (run_id) and the file (path)")
        return await self._send(request, self._target(request.query["path"], run_id))

    async def _send(self, request: web.Request, target: pb.ArtifactTarget) -> web.StreamResponse:
        call = self._download(pb.DownloadRequest(target=target), metadata=credentials(request))
        response = None
        try:
            async for raw in call:
                chunk = _wire.chunk_of(raw)
                if chunk is not None:
                    await response.write(chunk)
                    continue
                header = pb.DownloadResponse.FromString(raw).header
                response = web.StreamResponse(headers={
                    "Content-Type": guess_mime_type(target.path),
                    "Content-Disposition": _content_disposition(posixpath.basename(target.path)),
                    "X-Content-Type-Options": "nosniff",
                    # An HTML or SVG artifact opened anyway runs in no origin: not the UI's.
                    "Content-Security-Policy": "sandbox",
                })
                response.content_length = header.length
                await response.prepare(request)
        except grpc.aio.AioRpcError as error:
            if response is None:
                return self._error(error)
            # Mid-file, with the headers sent: the connection is dropped short of Content-Length, which
            # the client reports as an incomplete download.
            log.warning("download of %r failed after it started: %s", target.path, self._backend.details(error))
            if request.transport is not None:
                request.transport.close()
            return response
        finally:
            call.cancel()
        await response.write_eof()
        return response

    async def upload(self, request: web.Request) -> web.Response:
        target = self._target(request.match_info["path"])
        header = pb.UploadHeader(target=target)
        if request.content_length is not None:
            header.expected_size = request.content_length  # a short body then stores nothing

        # The body is written here, not by gRPC's task reading an iterator: a call the service ends early (a
        # refused caller, a bad path) then stops the reading here, rather than racing aiohttp's own read of
        # what is left of the body.
        call = self._upload(metadata=credentials(request))
        try:
            await call.write(pb.UploadRequest(header=header))
            async for chunk in _body_chunks(request):
                await call.write(chunk)
            await call.done_writing()
            await call
        except asyncio.InvalidStateError:  # the service ended the call before the body was through
            return await self._ended(call)
        except grpc.aio.AioRpcError as error:
            return self._error(error)
        return web.Response()  # as MLflow: 200 with an empty body

    async def _ended(self, call) -> web.Response:
        try:
            await call
        except grpc.aio.AioRpcError as error:
            return self._error(error)
        return web.Response()

    async def list(self, request: web.Request) -> web.Response:
        path = request.query.get("path", "")
        files, page_token = [], ""
        try:
            while True:
                page = await self._stub.ListArtifacts(
                    pb.ListArtifactsRequest(target=self._target(path), max_results=LIST_PAGE, page_token=page_token),
                    timeout=self._rest.timeout,
                    metadata=credentials(request),
                )
                for f in page.files:
                    entry = {"path": posixpath.basename(f.path), "is_dir": f.is_dir}
                    if not f.is_dir:
                        entry["file_size"] = f.file_size
                    files.append(entry)
                page_token = page.next_page_token
                if not page_token:
                    break
        except grpc.aio.AioRpcError as error:
            return self._error(error)
        return json_response({"files": files} if files else {})

    async def delete(self, request: web.Request) -> web.Response:
        try:
            target = self._target(request.match_info["path"])
            await self._stub.DeleteArtifact(
                pb.DeleteArtifactRequest(target=target), timeout=self._rest.timeout, metadata=credentials(request)
            )
        except grpc.aio.AioRpcError as error:
            return self._error(error)
        return json_response({})


def add_routes(app: web.Application, rest: RestGateway) -> None:
    """Serve MLflow's artifact endpoints on the gateway's `app`, over its ArtifactService backend.
    Uploads are streamed, so the app's client_max_size does not limit them."""
    backend = rest.backends[SERVICE]
    routes = [("GET", "/get-artifact", "get_artifact"), ("GET", "/ajax-api/2.0/mlflow/get-artifact", "get_artifact")]
    for prefix in PREFIXES:
        routes += [
            ("GET", f"{prefix}/artifacts", "list"),
            ("GET", f"{prefix}/artifacts/{{path:.+}}", "download"),
            ("PUT", f"{prefix}/artifacts/{{path:.+}}", "upload"),
            ("DELETE", f"{prefix}/artifacts/{{path:.+}}", "delete"),
        ]
    if backend.channel is None:
        async def unrouted(request: web.Request) -> web.Response:
            return status_error(grpc.StatusCode.UNAVAILABLE, backend.no_address_message)

        for verb, path, _ in routes:
            app.router.add_route(verb, path, unrouted)
        return
    api = MlflowArtifactsApi(backend, rest)
    for verb, path, handler in routes:
        app.router.add_route(verb, path, getattr(api, handler))
