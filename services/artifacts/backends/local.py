"""A local folder as the artifact store (the embedded default of `mlgrid server`).

An upload is written to a temporary file in `<root>/.mlgrid-uploads/` (same
file system), synced, and renamed into place: a file appears whole or not at
all, and of two concurrent uploads of one path the last rename wins whole.
The sha256 of an uploaded file is kept in its extended attribute
`user.mlgrid.sha256` where the file system supports those.
"""
import ctypes
import ctypes.util
import errno
import logging
import os
import shutil
import stat as stat_mode
import time
import uuid
from typing import NoReturn

from services.artifacts.backends.base import Backend, Entry, FileStat, Reader, UploadSink, byte_range
from services.artifacts.paths import UPLOADS_DIR, Location
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted

log = logging.getLogger("mlgrid.artifacts.local")

SHA256_XATTR = "user.mlgrid.sha256"
STALE_UPLOAD_SECONDS = 24 * 3600
# Start writing back dirty pages every so often, so the final fsync has little left to do.
WRITEBACK_BYTES = 32 * 1024 * 1024
# Ask the kernel to read this far ahead of downloads: a file no longer cached is read from the
# disk with many requests in flight (measured here: 480-900 MB/s -> 1,200 MB/s).
READ_AHEAD_BYTES = 32 * 1024 * 1024
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _sync_file_range():
    """Linux's sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE), or None elsewhere."""
    libc_name = ctypes.util.find_library("c")
    function = getattr(ctypes.CDLL(libc_name, use_errno=True), "sync_file_range", None) if libc_name else None
    if function is None:
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return lambda fd, offset, nbytes: function(fd, offset, nbytes, 2)  # 2: SYNC_FILE_RANGE_WRITE


_start_writeback = _sync_file_range()


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _raise_store_error(error: OSError, doing: str) -> NoReturn:
    """A full disk or quota as RESOURCE_EXHAUSTED; other OS errors as they are (INTERNAL)."""
    if error.errno in _FULL:
        raise ResourceExhausted(
            f"the artifact store has no room left while {doing} ({os.strerror(error.errno)}); nothing was kept. "
            "Free space in the artifact folder, or raise its quota"
        ) from error
    if error.errno == errno.EROFS:
        raise FailedPrecondition(f"the artifact store is read-only ({doing})") from error
    raise error


def _read_sha256(fd: int) -> str:
    try:
        return os.getxattr(fd, SHA256_XATTR).decode()
    except OSError:  # not recorded, or no extended attributes on this file system
        return ""


class LocalBackend(Backend):
    name = "local"

    def __init__(self, root: str):
        os.makedirs(root, exist_ok=True)
        self.root = os.path.realpath(root)
        self.uploads = os.path.join(self.root, UPLOADS_DIR)
        os.makedirs(self.uploads, exist_ok=True)
        self._remove_stale_uploads()

    def _remove_stale_uploads(self) -> None:
        """Temporary files a crashed process left behind (uploads still running elsewhere are younger)."""
        cutoff = time.time() - STALE_UPLOAD_SECONDS
        for entry in os.scandir(self.uploads):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                pass

    def _scope(self, location: Location) -> str:
        scope = os.path.realpath(os.path.join(self.root, location.scope))
        if not _inside(scope, self.root):
            raise InvalidArgument(f"the artifact folder {location.scope!r} leads outside the artifact root through a symbolic link")
        return scope

    def _path(self, location: Location) -> str:
        """The real path of `location`, symbolic links followed; one that leaves its scope is refused."""
        scope = self._scope(location)
        path = os.path.realpath(os.path.join(scope, location.path))
        if not _inside(path, scope):
            raise InvalidArgument(
                f"artifact path {location.path!r} leads outside {location.scope or 'the artifact root'} through a symbolic link"
            )
        return path

    # uploads

    def begin_upload(self, location: Location, expected_sha256: str) -> UploadSink:
        destination = self._path(location)
        if os.path.isdir(destination):
            raise FailedPrecondition(f"{location.path!r} is a folder: delete it first, or upload to another path")
        temporary = os.path.join(self.uploads, uuid.uuid4().hex)
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except OSError as error:
            _raise_store_error(error, f"starting the upload of {location.path!r}")
        return LocalUploadSink(location, destination, temporary, fd)

    # reads

    def open_read(self, location: Location, offset: int, length: int) -> Reader:
        path = self._path(location)
        try:
            file = open(path, "rb", buffering=0)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"artifact {location.path!r} does not exist") from None
        except IsADirectoryError:
            raise InvalidArgument(f"{location.path!r} is a folder: list it, or download the files in it") from None
        try:
            st = os.fstat(file.fileno())
            if not stat_mode.S_ISREG(st.st_mode):
                raise InvalidArgument(f"{location.path!r} is not a regular file")
            stat = FileStat(False, st.st_size, _read_sha256(file.fileno()))
            length = byte_range(stat, offset, length, location.path)
            file.seek(offset)
            os.posix_fadvise(file.fileno(), offset, length, os.POSIX_FADV_SEQUENTIAL)
            return LocalReader(file, stat, offset, length)
        except BaseException:
            file.close()
            raise

    def stat(self, location: Location) -> FileStat | None:
        path = self._path(location)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if stat_mode.S_ISDIR(st.st_mode):
            return FileStat(True)
        try:
            sha256 = os.getxattr(path, SHA256_XATTR).decode()
        except OSError:
            sha256 = ""
        return FileStat(False, st.st_size, sha256)

    def list_folder(self, location: Location, start_after: str, limit: int) -> tuple[list[Entry], bool]:
        scope = self._scope(location)
        folder = self._path(location)
        start_after = start_after.rstrip("/")
        try:
            with os.scandir(folder) as listing:
                entries = {e.name: e for e in listing if e.name > start_after}
        except (FileNotFoundError, NotADirectoryError):
            return [], False
        if folder == self.root:
            entries.pop(UPLOADS_DIR, None)
        names = sorted(entries)
        found = []
        for index, name in enumerate(names):
            if len(found) == limit:
                return found, True
            entry = entries[name]
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if not _inside(target, scope):
                        continue  # leads outside: not part of this folder
                    st = os.stat(target)
                else:
                    st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # deleted meanwhile, or a dangling link
                continue
            is_dir = stat_mode.S_ISDIR(st.st_mode)
            found.append(Entry(name, is_dir, 0 if is_dir else st.st_size))
        return found, False

    def delete(self, location: Location) -> int:
        self._path(location)  # refuses a path that leads outside its scope
        scope = self._scope(location)
        # The entry itself (a link is removed, not what it points to), in its real parent folder.
        parent = os.path.realpath(os.path.dirname(os.path.join(scope, location.path)))
        path = os.path.join(parent, os.path.basename(location.path)) if location.path else scope
        try:
            if os.path.islink(path) or os.path.isfile(path):
                os.unlink(path)
                return 1
            if os.path.isdir(path):
                count = sum(len(files) for _, _, files in os.walk(path))
                shutil.rmtree(path)
                return count
        except FileNotFoundError:  # deleted meanwhile
            pass
        return 0


class LocalUploadSink(UploadSink):
    def __init__(self, location: Location, destination: str, temporary: str, fd: int):
        self._location = location
        self._destination = destination
        self._temporary = temporary
        self._fd: int | None = fd
        self._written = 0
        self._written_back = 0

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as error:
            _raise_store_error(error, f"writing {self._location.path!r}")
        self._written += len(chunk)
        if _start_writeback is not None and self._written - self._written_back >= WRITEBACK_BYTES:
            _start_writeback(self._fd, self._written_back, self._written - self._written_back)
            self._written_back = self._written

    def commit(self, size: int, sha256: str) -> None:
        path = self._location.path
        try:
            os.fsync(self._fd)
            try:
                os.setxattr(self._fd, SHA256_XATTR, sha256.encode())
            except OSError as error:
                if error.errno in _FULL:
                    raise
                log.debug("cannot record the sha256 of %s: %s", path, error)
            os.close(self._fd)
            self._fd = None
            folder = os.path.dirname(self._destination)
            os.makedirs(folder, exist_ok=True)
            os.replace(self._temporary, self._destination)
            folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder_fd)  # the rename itself survives a crash
            finally:
                os.close(folder_fd)
        except (IsADirectoryError, FileExistsError, NotADirectoryError) as error:
            raise FailedPrecondition(f"cannot store {path!r} ({error.strerror}): a file and a folder cannot share a path") from None
        except OSError as error:
            _raise_store_error(error, f"storing {path!r}")

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            os.unlink(self._temporary)
        except FileNotFoundError:  # committed, or already removed
            pass


class LocalReader(Reader):
    def __init__(self, file, stat: FileStat, offset: int, length: int):
        self._file = file
        self.stat = stat
        self.length = self._remaining = length
        self._position = self._advised = offset  # read up to, and asked to be read ahead up to

    def read(self, size: int) -> bytes:
        if not self._remaining:
            return b""
        if self._advised - self._position < READ_AHEAD_BYTES // 2:
            os.posix_fadvise(self._file.fileno(), self._advised, READ_AHEAD_BYTES, os.POSIX_FADV_WILLNEED)
            self._advised += READ_AHEAD_BYTES
        data = self._file.read(min(size, self._remaining))
        self._remaining -= len(data)
        self._position += len(data)
        return data

    def close(self) -> None:
        self._file.close()
