"""The transfer engine: files of runs moved between this process and the artifact service.

One job: `ArtifactClient` (reached as `MlgridClient(...).artifacts`)
and the threads and retries of its transfers. Files stream over gRPC in 1 MiB
chunks, hashed as they are read; the service keeps a file only when its size
and sha256 match what was sent. On an S3 store, files of at least the service's
threshold go straight between this process and the bucket through presigned
URLs (parts in parallel), the service keeping the checks. Folders move several
files at a time. A download interrupted by a dropped connection resumes where
it stopped and is checked against the file's sha256; large downloads are
written with direct I/O where the filesystem allows it (mlgrid._direct_io).

`ArtifactRoot` and `parse_artifact_uri` say what a transfer's paths are relative
to. Users reach all three from mlgrid.artifacts.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import os
import posixpath
import queue
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urlparse, urlunparse

import grpc

from mlgrid import _direct_io, _wire
from mlgrid._retry import retry_delays
from mlgrid.entities import FileInfo
from mlgrid.exceptions import MlgridException
from mlgrid.v1 import artifacts_pb2 as pb
from mlgrid.v1 import artifacts_pb2_grpc

CHUNK_SIZE = 1024 * 1024  # bytes per upload message
READ_AHEAD = 32 * 1024 * 1024  # of local files being uploaded
FILE_WORKERS = 8  # files of a folder moved at once
PART_WORKERS = 4  # parts of one direct upload sent at once
HTTP_BLOCK = 1024 * 1024
HTTP_TIMEOUT_S = 300
UNARY_TIMEOUT_S = 120
LIST_PAGE = 1000
PROXIED_SCHEMES = ("mlgrid-artifacts", "mlflow-artifacts")

Progress = Callable[[int], None]  # called with the number of bytes just moved, from any thread
INVALID = grpc.StatusCode.INVALID_ARGUMENT
DATA_LOSS = grpc.StatusCode.DATA_LOSS


@dataclass(frozen=True)
class ArtifactRoot:
    """What artifact paths are relative to: a run's artifact root, or a proxied URI (mlgrid-artifacts:/...)."""

    run_id: str = ""
    root_uri: str = ""

    def target(self, path: str) -> pb.ArtifactTarget:
        if self.run_id:
            return pb.ArtifactTarget(run_id=self.run_id, path=path)
        return pb.ArtifactTarget(root_uri=self.root_uri, path=path)


def parse_artifact_uri(uri: str) -> tuple[ArtifactRoot, str]:
    """`runs:/<run_id>/<path>` or `mlgrid-artifacts:/<folder>/<name>` as (root, path); as in mlflow,
    a proxied URI's root is its parent, so the last name is kept in local copies."""
    parsed = urlparse(uri)
    if parsed.scheme == "runs":
        run_id, _, path = parsed.path.lstrip("/").partition("/")
        if not run_id:
            raise MlgridException(f"invalid artifact URI {uri!r}: expected runs:/<run_id>/<path>", INVALID)
        return ArtifactRoot(run_id=run_id), path.strip("/")
    if parsed.scheme in PROXIED_SCHEMES:
        parent, _, name = parsed.path.rstrip("/").rpartition("/")
        return ArtifactRoot(root_uri=urlunparse(parsed._replace(path=parent or "/"))), name
    raise MlgridException(
        f"unsupported artifact URI {uri!r}: use runs:/<run_id>/<path> or mlgrid-artifacts:/<path>", INVALID
    )


def _local_path(folder: str, path: str) -> str:
    """`path` (as the service names it) under the local `folder`; never outside it."""
    folder = os.path.abspath(folder)
    local = os.path.normpath(os.path.join(folder, *[p for p in path.split("/") if p]))
    if local != folder and not local.startswith(folder.rstrip(os.sep) + os.sep):
        raise MlgridException(f"refusing to write {path!r} outside {folder}", INVALID)
    return local


def _read_ahead(f, position: int) -> None:
    """Every READ_AHEAD / 2 bytes, ask the kernel to read the next READ_AHEAD bytes of f (where it
    can): a file no longer in the page cache then comes off the disk with many requests in flight."""
    if position % (READ_AHEAD // 2) == 0 and hasattr(os, "posix_fadvise"):
        os.posix_fadvise(f.fileno(), position, READ_AHEAD, os.POSIX_FADV_WILLNEED)


def _sha256_file(local_path: str) -> str:
    hasher, position = hashlib.sha256(), 0
    with open(local_path, "rb") as f:
        while True:
            _read_ahead(f, position)
            chunk = f.read(CHUNK_SIZE * 4)
            if not chunk:
                break
            hasher.update(chunk)
            position += len(chunk)
    return hasher.hexdigest()


def _check_received(path: str, received: int, hasher, size: int, sha256: str) -> None:
    if received != size:
        raise MlgridException(f"download of {path!r} ended at {received} of {size} bytes", DATA_LOSS)
    if sha256 and hasher.hexdigest() != sha256:
        raise MlgridException(
            f"download of {path!r} is corrupted: sha256 {hasher.hexdigest()}, expected {sha256}", DATA_LOSS
        )


def _sleep_before_retry(delay: float) -> None:
    time.sleep(delay * random.uniform(1.0, 1.5))


def _run_all(tasks: list[Callable[[], object]], workers: int) -> None:
    """Run the tasks in a thread pool; the first failure cancels the ones not started and is raised."""
    if not tasks:
        return
    with ThreadPoolExecutor(min(workers, len(tasks)), thread_name_prefix="mlgrid-artifacts") as pool:
        futures = [pool.submit(task) for task in tasks]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            if future.exception() is not None:
                for other in futures:
                    other.cancel()
                raise future.exception()


class _HashingWriter:
    """Appends chunks to a file sink (mlgrid._direct_io.FileSink) and hashes them in a thread of its
    own, so that receiving the next chunk overlaps both; at most `depth` chunks wait."""

    _END = object()
    _RESTART = object()

    def __init__(self, sink: _direct_io.FileSink, progress: Progress | None, depth: int = 8):
        self.hasher = hashlib.sha256()
        self.received = 0  # bytes handed to write()
        self._sink = sink
        self._progress = progress
        self._queue: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mlgrid-artifacts-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not self._END:
            if self._error is not None:
                continue  # drain, so that write() never blocks on a dead writer
            try:
                if chunk is self._RESTART:
                    self._sink.restart()
                    self.hasher = hashlib.sha256()
                    continue
                self.hasher.update(chunk)
                self._sink.write(chunk)
                if self._progress:
                    self._progress(len(chunk))
            except BaseException as e:  # noqa: BLE001 - raised in the receiving thread
                self._error = e

    def write(self, chunk) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)
        self.received += len(chunk)

    def restart(self) -> None:
        """Start the file again from its first byte (after the chunks already queued)."""
        self._queue.put(self._RESTART)
        self.received = 0

    def close(self) -> None:
        """Wait until every chunk is written; raise what writing raised."""
        self._queue.put(self._END)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _prefetched(items: Generator, depth: int) -> Iterator:
    """`items`, produced in a thread of their own up to `depth` ahead (for uploads:
    reading and hashing the next chunks overlaps sending this one)."""
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    end = object()

    def put(entry) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                slots.put(entry, timeout=0.1)
                return True
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as e:  # noqa: BLE001 - raised in the consuming thread
            put((end, e))
        finally:
            items.close()  # a generator: its file is closed now, not when collected

    threading.Thread(target=produce, name="mlgrid-artifacts-reader", daemon=True).start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
    finally:
        stop.set()  # the call ended early: the producer stops at its next chunk


class _FileSlice:
    """`size` bytes of an open file from its position, for an HTTP body; reports progress."""

    def __init__(self, file, size: int, progress: Progress | None):
        self._file = file
        self._remaining = size
        self._progress = progress

    def read(self, n: int = -1) -> bytes:
        n = self._remaining if n < 0 else min(n, self._remaining)
        data = self._file.read(n)
        self._remaining -= len(data)
        if self._progress and data:
            self._progress(len(data))
        return data


def _http(method: str, url: str, body=None, headers: dict | None = None):
    """One request to a presigned URL; returns (connection, response): read the response, then close both."""
    parsed = urlparse(url)
    connection_class = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parsed.netloc, timeout=HTTP_TIMEOUT_S, blocksize=HTTP_BLOCK)
    try:
        connection.request(method, f"{parsed.path}?{parsed.query}", body=body, headers=headers or {})
        return connection, connection.getresponse()
    except BaseException:
        connection.close()
        raise


class ArtifactClient:
    """Transfers to and from the ArtifactService on a channel (the tracking client's)."""

    def __init__(self, channel: grpc.Channel, call: Callable):
        self._stub = artifacts_pb2_grpc.ArtifactServiceStub(channel)
        # The bulk calls carry chunks in their wire form (mlgrid._wire): no protobuf copies.
        self._upload, self._download = _wire.transfer_calls(channel)
        self._call = call  # runs one attempt, retrying idempotent ones while the service is UNAVAILABLE
        self._capabilities: pb.GetCapabilitiesResponse | None = None
        self._lock = threading.Lock()

    def capabilities(self) -> pb.GetCapabilitiesResponse:
        with self._lock:
            if self._capabilities is None:
                self._capabilities = self._unary(self._stub.GetCapabilities, pb.GetCapabilitiesRequest())
            return self._capabilities

    def _unary(self, method, request, idempotent: bool = True):
        return self._call(lambda: method(request, timeout=UNARY_TIMEOUT_S), idempotent)

    def _direct(self, size: int) -> bool:
        capabilities = self.capabilities()
        return capabilities.direct_transfer and size >= capabilities.direct_threshold_bytes

    # uploads

    def upload_file(self, root: ArtifactRoot, local_path: str, path: str, progress: Progress | None = None) -> pb.UploadResponse:
        """Store the local file at `path` under `root`; it appears whole once its size and sha256 are checked."""
        size = os.path.getsize(local_path)
        if self._direct(size):
            return self._upload_direct(root.target(path), local_path, size, progress)
        sha256 = _sha256_file(local_path) if self.capabilities().sha256_upfront else ""
        return self._call(
            lambda: self._upload(_prefetched(self._upload_requests(root.target(path), local_path, size, sha256, progress), 4)),
            True,  # storing the same file at the same path again changes nothing
        )

    @staticmethod
    def _upload_requests(target, local_path: str, size: int, sha256: str, progress: Progress | None) -> Iterator:
        yield pb.UploadRequest(header=pb.UploadHeader(target=target, expected_size=size, expected_sha256=sha256))
        hasher, position = None if sha256 else hashlib.sha256(), 0
        with open(local_path, "rb") as f:
            while True:
                _read_ahead(f, position)
                chunk = f.read(CHUNK_SIZE)
                if not chunk:
                    break
                position += len(chunk)
                if hasher is not None:
                    hasher.update(chunk)
                yield _wire.chunk_message(chunk)
                if progress:
                    progress(len(chunk))
        if hasher is not None:  # checked by the service before the file becomes visible
            yield pb.UploadRequest(trailer=pb.UploadTrailer(sha256=hasher.hexdigest()))

    def _upload_direct(self, target, local_path: str, size: int, progress: Progress | None) -> pb.UploadResponse:
        """Parts straight to the store through presigned URLs; the service completes (or aborts) the upload."""
        sha256 = _sha256_file(local_path)
        created = self._unary(
            self._stub.CreateMultipartUpload, pb.CreateMultipartUploadRequest(target=target, size=size, sha256=sha256), False
        )
        try:
            etags = [None] * len(created.parts)

            def send(index: int, part: pb.PresignedPart) -> None:
                etags[index] = self._put_part(local_path, part, progress)

            _run_all([lambda i=i, p=p: send(i, p) for i, p in enumerate(created.parts)], PART_WORKERS)
            request = pb.CompleteMultipartUploadRequest(
                target=target, upload_id=created.upload_id, size=size,
                parts=[pb.CompletedPart(part_number=p.part_number, etag=e) for p, e in zip(created.parts, etags)],
            )
            return self._unary(self._stub.CompleteMultipartUpload, request)
        except BaseException:
            with contextlib.suppress(grpc.RpcError, MlgridException):
                self._stub.AbortMultipartUpload(
                    pb.AbortMultipartUploadRequest(target=target, upload_id=created.upload_id), timeout=UNARY_TIMEOUT_S
                )
            raise

    @staticmethod
    def _put_part(local_path: str, part: pb.PresignedPart, progress: Progress | None) -> str:
        """PUT one part with its Content-MD5 (the store refuses a corrupted part); returns its ETag."""
        md5 = hashlib.md5(usedforsecurity=False)
        with open(local_path, "rb") as f:
            f.seek(part.offset)
            remaining = part.size
            while remaining and (chunk := f.read(min(CHUNK_SIZE * 4, remaining))):
                md5.update(chunk)
                remaining -= len(chunk)
        headers = {
            "Content-Length": str(part.size),
            "Content-MD5": base64.b64encode(md5.digest()).decode(),
            "Content-Type": "application/octet-stream",
        }
        for delay in (*retry_delays(), None):
            try:
                with open(local_path, "rb") as f:
                    f.seek(part.offset)
                    connection, response = _http("PUT", part.url, _FileSlice(f, part.size, progress), headers)
                with contextlib.closing(connection):
                    body = response.read()
                if response.status == 200:
                    return response.headers["ETag"]
                error = MlgridException(
                    f"the artifact store refused part {part.part_number}: HTTP {response.status} {body[:500]!r}",
                    grpc.StatusCode.UNAVAILABLE if response.status >= 500 else grpc.StatusCode.FAILED_PRECONDITION,
                )
                if response.status < 500 and b"BadDigest" not in body:
                    raise error
            except (OSError, http.client.HTTPException) as e:
                error = MlgridException(f"sending part {part.part_number} to the artifact store failed: {e}", grpc.StatusCode.UNAVAILABLE)
            if delay is None:
                raise error
            _sleep_before_retry(delay)
        raise AssertionError("unreachable")

    def upload_dir(self, root: ArtifactRoot, local_dir: str, path: str, progress: Progress | None = None) -> None:
        """Every file under `local_dir`, at the same relative paths under `path`, several at a time."""
        if not os.path.isdir(local_dir):
            raise MlgridException(f"{local_dir!r} is not a folder", INVALID)
        tasks = []
        for folder, _, names in os.walk(local_dir):
            relative = os.path.relpath(folder, local_dir)
            for name in sorted(names):
                artifact = posixpath.join(path, *([] if relative == "." else relative.split(os.sep)), name)
                tasks.append(lambda f=os.path.join(folder, name), a=artifact: self.upload_file(root, f, a, progress))
        _run_all(tasks, FILE_WORKERS)

    # listing

    def list(self, root: ArtifactRoot, path: str = "") -> list[FileInfo]:
        """The files and folders directly in `path`, every page."""
        found, token = [], ""
        while True:
            request = pb.ListArtifactsRequest(target=root.target(path), max_results=LIST_PAGE, page_token=token)
            response = self._unary(self._stub.ListArtifacts, request)
            found.extend(FileInfo.from_proto(f) for f in response.files)
            token = response.next_page_token
            if not token:
                return found

    def list_files(self, root: ArtifactRoot, path: str = "") -> list[FileInfo]:
        """Every file under `path`, at any depth."""
        files, folders = [], [path]
        while folders:
            for info in self.list(root, folders.pop()):
                (folders.append(info.path) if info.is_dir else files.append(info))
        return files

    def stat(self, root: ArtifactRoot, path: str) -> pb.StatArtifactResponse:
        return self._unary(self._stub.StatArtifact, pb.StatArtifactRequest(target=root.target(path)))

    def delete(self, root: ArtifactRoot, path: str) -> int:
        """Delete a file, or a folder and everything under it; the number of files deleted."""
        return self._unary(self._stub.DeleteArtifact, pb.DeleteArtifactRequest(target=root.target(path))).deleted_files

    # downloads

    def download(self, root: ArtifactRoot, path: str, dst_dir: str | None = None, progress: Progress | None = None) -> str:
        """Copy the file or folder `path` to the same relative path under `dst_dir` (default: a new
        temporary folder); returns its local path."""
        found = self.stat(root, path)
        dst_dir = dst_dir or tempfile.mkdtemp(prefix="mlgrid-artifacts-")
        local = _local_path(dst_dir, path)
        if not found.file.is_dir:
            self.download_file(root, path, local, found.file.file_size, progress)
            return local
        os.makedirs(local, exist_ok=True)
        files = self.list_files(root, path)
        _run_all(
            [lambda f=f: self.download_file(root, f.path, _local_path(dst_dir, f.path), f.file_size, progress) for f in files],
            FILE_WORKERS,
        )
        return local

    def download_file(self, root: ArtifactRoot, path: str, local_path: str, size: int, progress: Progress | None = None) -> None:
        """Download into a temporary file beside `local_path`, checked, then renamed into place; large
        files are written with O_DIRECT where the filesystem allows it (mlgrid._direct_io)."""
        os.makedirs(os.path.dirname(local_path) or ".", exist_ok=True)
        partial = f"{local_path}.{uuid.uuid4().hex[:8]}.partial"
        sink = None
        try:
            sink = _direct_io.FileSink(partial, direct=_direct_io.wanted(size))
            writer = _HashingWriter(sink, progress)
            try:
                if self._direct(size):
                    expected = self._download_direct(root.target(path), path, writer)
                else:
                    expected = self._download_stream(root.target(path), path, writer)
            finally:
                writer.close()
            sink.close()
            _check_received(path, writer.received, writer.hasher, *expected)
            os.replace(partial, local_path)
        except BaseException:
            if sink is not None:
                sink.abort()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise

    def _download_stream(self, target, path: str, writer: _HashingWriter) -> tuple[int, str]:
        """Hand the file's chunks to `writer`, resuming after the bytes received when the connection
        drops; returns the (size, sha256) the service announced."""
        expected = None
        delays = iter(retry_delays())
        while True:
            try:
                for raw in self._download(pb.DownloadRequest(target=target, offset=writer.received)):
                    chunk = _wire.chunk_of(raw)
                    if chunk is not None:
                        writer.write(chunk)
                        continue
                    message = pb.DownloadResponse.FromString(raw)
                    if message.WhichOneof("part") == "chunk":
                        writer.write(message.chunk)
                    elif expected is None:
                        expected = (message.header.total_size, message.header.sha256)
                    elif expected != (message.header.total_size, message.header.sha256):
                        raise MlgridException(f"{path!r} was replaced while being downloaded; download it again", grpc.StatusCode.ABORTED)
                if expected is None:
                    raise MlgridException(f"the download of {path!r} ended without a header", DATA_LOSS)
                return expected
            except grpc.RpcError as rpc_error:
                error = MlgridException.from_rpc_error(rpc_error)
                delay = next(delays, None)
                if delay is None or error.code != grpc.StatusCode.UNAVAILABLE:
                    raise error from None
                _sleep_before_retry(delay)  # then resume after the bytes received

    def _download_direct(self, target, path: str, writer: _HashingWriter) -> tuple[int, str]:
        """Hand the file to `writer` from a presigned URL of the store, resuming with a Range request
        when the connection drops; returns the (size, sha256) the service announced."""
        located = self._unary(self._stub.GetDownloadUrl, pb.GetDownloadUrlRequest(target=target))
        for delay in (*retry_delays(), None):
            try:
                received = writer.received
                connection, response = _http("GET", located.url, headers={"Range": f"bytes={received}-"} if received else {})
                with contextlib.closing(connection):
                    if received and response.status == 200:  # the store ignored the range: start over
                        writer.restart()
                    if response.status not in (200, 206):
                        raise MlgridException(
                            f"the artifact store refused to send {path!r}: HTTP {response.status} {response.read()[:500]!r}",
                            grpc.StatusCode.FAILED_PRECONDITION,
                        )
                    while data := response.read(HTTP_BLOCK):
                        writer.write(data)
                break
            except (OSError, http.client.HTTPException) as e:
                if delay is None:
                    raise MlgridException(f"downloading {path!r} from the artifact store failed: {e}", grpc.StatusCode.UNAVAILABLE) from e
                _sleep_before_retry(delay)  # then resume with a Range request
        return located.total_size, located.sha256
