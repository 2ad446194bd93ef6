"""ArtifactService over gRPC: a thin adapter from wire messages to the handler.

Upload receives and Download sends chunks in their wire form (mlgrid._wire),
not as protobuf messages: see add_to_server.
"""
from contextlib import aclosing

import grpc
from google.protobuf.message import DecodeError

from mlgrid import _wire
from mlgrid.v1 import artifacts_pb2 as pb
from mlgrid.v1 import artifacts_pb2_grpc
from services.artifacts.handlers import ArtifactHandler, Target, UploadChecks
from services.common.errors import FailedPrecondition, InvalidArgument

SERVICE_NAME = "mlgrid.v1.ArtifactService"


def _target(message: pb.ArtifactTarget) -> Target:
    return Target(run_id=message.run_id, root_uri=message.root_uri, path=message.path)


def _upload_request(raw: bytes):
    """A serialized UploadRequest: its chunk (a view, not a copy), or the parsed message."""
    chunk = _wire.chunk_of(raw)
    if chunk is not None:
        return chunk
    try:
        return pb.UploadRequest.FromString(raw)
    except DecodeError:
        raise InvalidArgument("malformed UploadRequest message") from None


async def _chunks(requests, checks: UploadChecks, context):
    """The chunks of an upload; a trailer, last, fills in the sender's sha256. A client that
    cancels can end the request stream as if it had finished: that is no complete upload."""
    async for raw in requests:
        request = _upload_request(raw)
        kind = "chunk" if isinstance(request, memoryview) else request.WhichOneof("part")
        if kind == "chunk":
            if checks.trailer_sha256:
                raise InvalidArgument("a chunk came after the upload's trailer: the trailer must come last")
            yield request if isinstance(request, memoryview) else request.chunk
        elif kind == "trailer":
            if not request.trailer.sha256:
                raise InvalidArgument("the upload's trailer carries no sha256: send the sum of the chunks, or no trailer")
            checks.trailer_sha256 = request.trailer.sha256
        else:
            raise InvalidArgument("an upload has one header, first; this one sent another")
    if context.cancelled():
        raise FailedPrecondition("the client cancelled the upload before it ended; nothing was kept")


class ArtifactServicer(artifacts_pb2_grpc.ArtifactServiceServicer):
    def __init__(self, handler: ArtifactHandler):
        self.handler = handler

    async def Upload(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        first = None if first is None else _upload_request(first)
        if not isinstance(first, pb.UploadRequest) or first.WhichOneof("part") != "header":
            raise InvalidArgument("an upload starts with its header (target, optional expected size and sha256)")
        header = first.header
        checks = UploadChecks(
            size=header.expected_size if header.HasField("expected_size") else None, sha256=header.expected_sha256
        )
        stored = await self.handler.upload(_target(header.target), checks, _chunks(request_iterator, checks, context))
        return pb.UploadResponse(path=stored.path, size=stored.size, sha256=stored.sha256)

    async def Download(self, request, context):
        download = await self.handler.download(_target(request.target), request.offset, request.length)
        try:
            yield pb.DownloadResponse(header=pb.DownloadHeader(
                total_size=download.stat.size, sha256=download.stat.sha256, offset=download.offset, length=download.length,
            ))
            async with aclosing(download.chunks()) as chunks:
                async for chunk in chunks:
                    yield _wire.chunk_message(chunk)
        finally:
            download.close()

    async def ListArtifacts(self, request, context):
        files, token = await self.handler.list_folder(_target(request.target), request.max_results, request.page_token)
        return pb.ListArtifactsResponse(
            files=[pb.FileInfo(path=f.path, is_dir=f.is_dir, file_size=f.file_size) for f in files], next_page_token=token
        )

    async def StatArtifact(self, request, context):
        info, sha256 = await self.handler.stat(_target(request.target))
        return pb.StatArtifactResponse(file=pb.FileInfo(path=info.path, is_dir=info.is_dir, file_size=info.file_size), sha256=sha256)

    async def DeleteArtifact(self, request, context):
        return pb.DeleteArtifactResponse(deleted_files=await self.handler.delete(_target(request.target)))

    async def GetCapabilities(self, request, context):
        return pb.GetCapabilitiesResponse(**self.handler.capabilities())

    async def CreateMultipartUpload(self, request, context):
        upload_id, parts = await self.handler.create_multipart(_target(request.target), request.size, request.sha256)
        return pb.CreateMultipartUploadResponse(
            upload_id=upload_id,
            parts=[pb.PresignedPart(part_number=p.part_number, url=p.url, offset=p.offset, size=p.size) for p in parts],
        )

    async def CompleteMultipartUpload(self, request, context):
        parts = [(p.part_number, p.etag) for p in request.parts]
        stored = await self.handler.complete_multipart(_target(request.target), request.upload_id, request.size, parts)
        return pb.UploadResponse(path=stored.path, size=stored.size, sha256=stored.sha256)

    async def AbortMultipartUpload(self, request, context):
        await self.handler.abort_multipart(_target(request.target), request.upload_id)
        return pb.AbortMultipartUploadResponse()

    async def GetDownloadUrl(self, request, context):
        url, stat = await self.handler.download_url(_target(request.target))
        return pb.GetDownloadUrlResponse(url=url, total_size=stat.size, sha256=stat.sha256)


class _Recorder:
    """Stands in for a server to catch the handlers the generated code registers."""

    def add_generic_rpc_handlers(self, handlers) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self.handlers = dict(handlers)


def add_to_server(servicer: ArtifactServicer, server: grpc.aio.Server) -> None:
    """The generated registration, except that Upload gets its requests serialized (chunks are
    read in place) and Download's responses may come serialized (chunks built in place)."""
    recorder = _Recorder()
    artifacts_pb2_grpc.add_ArtifactServiceServicer_to_server(servicer, recorder)
    handlers = recorder.handlers
    handlers["Upload"] = handlers["Upload"]._replace(request_deserializer=None)
    handlers["Download"] = handlers["Download"]._replace(response_serializer=_wire.serialize)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)
