"""What the artifact service does, without the transport: finds where a request
may read or write (run checks, path checks), streams bytes between the caller
and the store in constant memory, and checks sizes and sha256 sums."""
import asyncio
import base64
import binascii
import hashlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import Counter

from services.artifacts.backends.base import Backend, FileStat, PartUrl, Reader
from services.artifacts.paths import Location, check_run_id, check_sha256, join, normalize, proxied_key, run_in_key
from services.artifacts.resolver import RunRef, RunResolver
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound

TRANSFERRED_BYTES = Counter("mlgrid_artifacts_bytes_total", "Artifact bytes moved through the service", ["direction"])
UPLOADED_FILES = Counter("mlgrid_artifacts_uploads_total", "Artifact files stored")
DOWNLOADED_BYTES = TRANSFERRED_BYTES.labels("download")

CHUNK_SIZE = 1024 * 1024  # download message size; uploads take the chunks the client sends
DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
IO_THREADS = 64  # blocking store calls of concurrent transfers run here
MAX_PARTS = 10_000


@dataclass(frozen=True)
class Target:
    """A path under a run's artifact root (run_id) or under a proxied root URI."""

    run_id: str = ""
    root_uri: str = ""
    path: str = ""


@dataclass
class UploadChecks:
    """What the uploader announced; the trailer's sha256 is filled in when it arrives after the chunks."""

    size: int | None = None
    sha256: str = ""
    trailer_sha256: str = ""


@dataclass(frozen=True)
class Stored:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class FileInfo:
    path: str
    is_dir: bool
    file_size: int


class Pipeline:
    """Blocking steps run in order in a thread pool, one at a time, while the caller
    gets on with the next (receives the next chunk, sends the previous one)."""

    def __init__(self, executor: ThreadPoolExecutor):
        self._executor = executor
        self._pending: Future | None = None

    def start(self, fn: Callable, *args) -> None:
        self._pending = self._executor.submit(fn, *args)

    async def wait(self):
        """The result of the step under way (None when there is none); raises what it raised."""
        if self._pending is None:
            return None
        result = await asyncio.wrap_future(self._pending)
        self._pending = None
        return result

    def then(self, fn: Callable) -> None:
        """Run `fn` in the pool once the step under way has ended, however it ends; do not wait."""
        pending = self._pending
        if pending is None or pending.done():
            self._executor.submit(fn)
        else:
            pending.add_done_callback(lambda _: self._executor.submit(fn))


class Download:
    """An open file to send: its stat, the range, and its chunks, read one ahead in the pool.
    Iterate chunks() to the end or close it; close() also releases a file never iterated."""

    def __init__(self, reader: Reader, offset: int, executor: ThreadPoolExecutor, path: str):
        self.stat = reader.stat
        self.offset = offset
        self.length = reader.length
        self._reader = reader
        self._executor = executor
        self._path = path
        self._started = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self._started = True
        pipeline = Pipeline(self._executor)
        remaining = self.length
        try:
            if remaining:
                pipeline.start(self._reader.read, CHUNK_SIZE)
            while remaining:
                data = await pipeline.wait()
                if not data:
                    raise FailedPrecondition(f"{self._path!r} ended {remaining} bytes early: it was truncated while being read")
                remaining -= len(data)
                if remaining:
                    pipeline.start(self._reader.read, CHUNK_SIZE)
                DOWNLOADED_BYTES.inc(len(data))
                yield data
        finally:
            pipeline.then(self._reader.close)  # after the read under way, if any

    def close(self) -> None:
        if not self._started:
            self._reader.close()


def _encode_token(last_name: str) -> str:
    return base64.urlsafe_b64encode(last_name.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode() if token else ""
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument(f"invalid page_token {token!r}: pass the next_page_token of the previous page") from None


class ArtifactHandler:
    def __init__(self, backend: Backend, resolver: RunResolver, direct_threshold_bytes: int):
        self.backend = backend
        self.resolver = resolver
        self.direct_threshold_bytes = direct_threshold_bytes
        self.executor = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="mlgrid-artifacts-io")

    async def close(self) -> None:
        await asyncio.to_thread(self.executor.shutdown, True)
        await self.resolver.close()

    async def _run(self, fn: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # where a request reads or writes

    async def locate(self, target: Target, write: bool) -> Location:
        """The scope and path of `target`. Writes need a run that is not deleted; no path leaves its scope."""
        path = normalize(target.path)
        if target.run_id:
            run = await self.resolver.get(check_run_id(target.run_id))
            scope = proxied_key(run.artifact_uri)
            if scope is None:
                raise FailedPrecondition(
                    f"run {run.run_id} keeps its artifacts at {run.artifact_uri}, which this service does not proxy "
                    "(it serves mlgrid-artifacts:/ locations): use that store directly"
                )
            self._check_lifecycle(run, write)
            return Location(scope, path)
        if not target.root_uri:
            raise InvalidArgument("name the run (run_id) or the artifact root URI (root_uri) the path is under")
        scope = proxied_key(target.root_uri)
        if scope is None:
            raise InvalidArgument(f"unsupported artifact root URI {target.root_uri!r}: expected mlgrid-artifacts:/<path>")
        key = join(scope, path)
        in_run = run_in_key(key)
        if in_run is None:
            return Location(scope, path)
        run_id, run_folder = in_run
        run = await self.resolver.get(run_id)
        if proxied_key(run.artifact_uri) != run_folder:
            raise InvalidArgument(f"{run_folder!r} is not the artifact folder of run {run_id} ({run.artifact_uri})")
        self._check_lifecycle(run, write)
        return Location(run_folder, key[len(run_folder) + 1:])  # the run's folder is the scope

    @staticmethod
    def _check_lifecycle(run: RunRef, write: bool) -> None:
        if write and run.lifecycle_stage != "active":
            raise FailedPrecondition(f"run {run.run_id} is deleted: restore it (RestoreRun) before changing its artifacts")

    async def _locate_file(self, target: Target, write: bool) -> Location:
        location = await self.locate(target, write)
        if not location.path:
            raise InvalidArgument("name a file: the artifact path is empty")
        return location

    # streamed transfers

    async def upload(self, target: Target, checks: UploadChecks, chunks: AsyncIterator[bytes]) -> Stored:
        """Store the chunks at `target`; the file appears only when all arrived and match what was announced."""
        location = await self._locate_file(target, write=True)
        expected_sha256 = check_sha256(checks.sha256, "expected_sha256")
        if checks.size is not None and checks.size < 0:
            raise InvalidArgument(f"expected_size must not be negative, got {checks.size}")
        sink = await self._run(self.backend.begin_upload, location, expected_sha256)
        hasher = hashlib.sha256()  # updated in the pool thread: hashing releases the GIL

        def absorb(chunk: bytes) -> None:
            hasher.update(chunk)
            sink.write(chunk)

        pipeline = Pipeline(self.executor)
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if checks.size is not None and size > checks.size:
                    raise InvalidArgument(f"{location.path!r}: more than the {checks.size} bytes announced arrived; nothing was kept")
                await pipeline.wait()
                pipeline.start(absorb, chunk)
            await pipeline.wait()
            sha256 = hasher.hexdigest()
            self._check_arrived(location.path, size, sha256, checks, expected_sha256)
            pipeline.start(sink.commit, size, sha256)
            await pipeline.wait()
        except BaseException:
            pipeline.then(sink.abort)  # after the step under way: never while a write is running
            raise
        TRANSFERRED_BYTES.labels("upload").inc(size)
        UPLOADED_FILES.inc()
        return Stored(location.path, size, sha256)

    @staticmethod
    def _check_arrived(path: str, size: int, sha256: str, checks: UploadChecks, expected_sha256: str) -> None:
        if checks.size is not None and size != checks.size:
            raise InvalidArgument(f"{path!r}: {size} bytes arrived, {checks.size} were announced; nothing was kept")
        trailer_sha256 = check_sha256(checks.trailer_sha256, "trailer sha256")
        for expected, source in ((expected_sha256, "announced in the header"), (trailer_sha256, "the client computed")):
            if expected and expected != sha256:
                raise InvalidArgument(
                    f"{path!r}: the bytes that arrived have sha256 {sha256}, not {expected} as {source}; "
                    "the transfer was corrupted or the file changed while it was read. Nothing was kept"
                )

    async def download(self, target: Target, offset: int, length: int) -> Download:
        """The file's stat and its bytes from `offset` (`length` 0: to the end)."""
        location = await self._locate_file(target, write=False)
        reader = await self._run(self.backend.open_read, location, offset, length)
        return Download(reader, offset, self.executor, location.path)

    # listing, stat, delete

    async def list_folder(self, target: Target, max_results: int, page_token: str) -> tuple[list[FileInfo], str]:
        if not 0 <= max_results <= MAX_PAGE:
            raise InvalidArgument(f"max_results must be between 1 and {MAX_PAGE}, got {max_results}")
        start_after = _decode_token(page_token)
        location = await self.locate(target, write=False)
        entries, more = await self._run(self.backend.list_folder, location, start_after, max_results or DEFAULT_PAGE)
        files = [FileInfo(join(location.path, e.name), e.is_dir, e.size) for e in entries]
        token = _encode_token(entries[-1].name + ("/" if entries[-1].is_dir else "")) if more and entries else ""
        return files, token

    async def stat(self, target: Target) -> tuple[FileInfo, str]:
        location = await self.locate(target, write=False)
        stat = await self._run(self.backend.stat, location)
        if stat is None:
            raise NotFound(f"artifact {location.path!r} does not exist")
        return FileInfo(location.path, stat.is_dir, stat.size), stat.sha256

    async def delete(self, target: Target) -> int:
        location = await self.locate(target, write=True)
        if not location.key:
            raise InvalidArgument("refusing to delete the whole artifact store: name a run or a path")
        return await self._run(self.backend.delete, location)

    # direct transfers

    def capabilities(self) -> dict:
        return {
            "backend": self.backend.name,
            "direct_transfer": self.backend.direct_transfer,
            "direct_threshold_bytes": self.direct_threshold_bytes if self.backend.direct_transfer else 0,
            "sha256_upfront": self.backend.sha256_upfront,
        }

    def _check_direct(self) -> None:
        if not self.backend.direct_transfer:
            raise FailedPrecondition(f"the {self.backend.name} artifact store has no direct transfers: stream through Upload/Download")

    async def create_multipart(self, target: Target, size: int, sha256: str) -> tuple[str, list[PartUrl]]:
        self._check_direct()
        location = await self._locate_file(target, write=True)
        if size <= 0:
            raise InvalidArgument(f"size must be positive, got {size}: send small files through Upload")
        if not check_sha256(sha256, "sha256"):
            raise InvalidArgument("sha256 of the whole file is required: it is recorded with the file and checked on download")
        return await self._run(self.backend.create_multipart, location, size, sha256.lower())

    async def complete_multipart(self, target: Target, upload_id: str, size: int, parts: list[tuple[int, str]]) -> Stored:
        self._check_direct()
        location = await self._locate_file(target, write=True)
        if not upload_id:
            raise InvalidArgument("upload_id is required: the one CreateMultipartUpload returned")
        if not parts or len(parts) > MAX_PARTS:
            raise InvalidArgument(f"an upload has between 1 and {MAX_PARTS} parts, got {len(parts)}")
        if [number for number, _ in parts] != list(range(1, len(parts) + 1)):
            raise InvalidArgument("parts must be numbered 1, 2, 3... in order, each once")
        stat = await self._run(self.backend.complete_multipart, location, upload_id, size, parts)
        TRANSFERRED_BYTES.labels("direct_upload").inc(stat.size)
        UPLOADED_FILES.inc()
        return Stored(location.path, stat.size, stat.sha256)

    async def abort_multipart(self, target: Target, upload_id: str) -> None:
        self._check_direct()
        location = await self._locate_file(target, write=False)  # cleaning up is allowed on a deleted run
        if not upload_id:
            raise InvalidArgument("upload_id is required: the one CreateMultipartUpload returned")
        await self._run(self.backend.abort_multipart, location, upload_id)

    async def download_url(self, target: Target) -> tuple[str, FileStat]:
        self._check_direct()
        location = await self._locate_file(target, write=False)
        return await self._run(self.backend.download_url, location)

