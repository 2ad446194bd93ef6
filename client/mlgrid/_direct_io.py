"""Where downloads are written: a new file, large ones with direct I/O (O_DIRECT) on Linux.

A download of a checkpoint is written once and usually not read back at once.
Written through the page cache, every new page costs the kernel an allocation
(and, on a busy host, the eviction of something more useful); on the
development VM that is 2-4 s of kernel CPU per GiB, capping a download to a
file at 220-300 MB/s while the service sends 600-850. O_DIRECT hands the pages
of an aligned buffer straight to the device instead: far less kernel CPU, and
no page-cache pollution. The trade-off: the file is not left in the page cache,
so reading it right afterwards comes off the disk.

`MLGRID_DOWNLOAD_DIRECT_IO`: `auto` (default) uses it on Linux for files of at
least `MLGRID_DOWNLOAD_DIRECT_IO_MIN_MB` (256); `on` for every file; `off`
never. Where the filesystem refuses O_DIRECT (EINVAL when opening or writing:
some FUSE, network or overlay filesystems) the file is written through the page
cache instead, silently.

Direct writes wait for the device, so they run in a thread of their own: the
caller fills one aligned buffer while the previous one is written (on the
2-core development VM, writing in the hashing thread instead left ~0.9 s of
CPU idle per GiB downloaded and ran at 318-475 MB/s, against 420-545 MB/s).
"""
from __future__ import annotations

import errno
import mmap
import os
import queue
import sys
import threading

import grpc

from mlgrid.exceptions import MlgridException

ALIGN = 4096  # offsets and lengths of direct writes: a multiple of any logical block size in use
BUFFER_SIZE = 4 * 1024 * 1024  # bytes per direct write
BUFFERS = 3  # aligned buffers per file: one being filled, the others waiting or being written
MODES = ("auto", "on", "off")
DEFAULT_MIN_MB = 256
O_DIRECT = getattr(os, "O_DIRECT", 0)  # 0 where the platform lacks it


def mode() -> str:
    value = os.environ.get("MLGRID_DOWNLOAD_DIRECT_IO", "auto").strip().lower() or "auto"
    if value not in MODES:
        raise MlgridException(
            f"MLGRID_DOWNLOAD_DIRECT_IO={value!r}: expected one of {', '.join(MODES)}", grpc.StatusCode.INVALID_ARGUMENT
        )
    return value


def min_bytes() -> int:
    value = os.environ.get("MLGRID_DOWNLOAD_DIRECT_IO_MIN_MB", str(DEFAULT_MIN_MB))
    try:
        mb = float(value)
    except ValueError:
        mb = -1.0
    if not mb >= 0:  # also NaN
        raise MlgridException(
            f"MLGRID_DOWNLOAD_DIRECT_IO_MIN_MB={value!r}: expected a number of MiB", grpc.StatusCode.INVALID_ARGUMENT
        )
    return int(mb * 1024 * 1024)


def wanted(size: int) -> bool:
    """Whether a download of `size` bytes should be written with O_DIRECT (by the settings)."""
    chosen = mode()
    if chosen == "off" or not O_DIRECT or not sys.platform.startswith("linux"):
        return False
    return chosen == "on" or size >= min_bytes()


def _write_all(fd: int, data: memoryview) -> None:
    while len(data):
        data = data[os.write(fd, data):]


class FileSink:
    """Appends bytes to a new (or emptied) file at `path`, from one thread.

    With `direct`: the bytes are copied into page-aligned buffers (anonymous mmaps), each written
    whole with O_DIRECT by a thread of the sink's own; the last, partly filled one is written padded
    to ALIGN and the padding cut off with ftruncate. When the filesystem refuses O_DIRECT, at open
    or at a write, the file is written through the page cache from then on (`direct_io` says which)."""

    def __init__(self, path: str, direct: bool = False):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self.size = 0  # bytes appended
        self.direct_io = False  # whether the file is open with O_DIRECT (now)
        self._fd = -1
        if direct and O_DIRECT:
            try:
                self._fd = os.open(path, flags | O_DIRECT, 0o666)
                self.direct_io = True
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise  # e.g. tmpfs before Linux 6.6 refuses with EINVAL
        if self._fd < 0:
            self._fd = os.open(path, flags, 0o666)
        self._buffered = self.direct_io  # whether bytes go through the aligned buffers and the thread
        self._thread = None
        if self._buffered:
            self._free: queue.Queue = queue.Queue()
            for _ in range(BUFFERS):
                self._free.put(memoryview(mmap.mmap(-1, BUFFER_SIZE)))
            self._full: queue.Queue = queue.Queue()
            self._error: BaseException | None = None
            self._buffer, self._fill = self._free.get(), 0
            self._thread = threading.Thread(target=self._write_buffers, name="mlgrid-artifacts-direct-io", daemon=True)
            self._thread.start()

    def write(self, data) -> None:
        data = memoryview(data).cast("B")
        self.size += len(data)
        if not self._buffered:
            _write_all(self._fd, data)
            return
        while len(data):
            n = min(len(data), BUFFER_SIZE - self._fill)
            self._buffer[self._fill:self._fill + n] = data[:n]
            self._fill += n
            data = data[n:]
            if self._fill == BUFFER_SIZE:
                self._hand_over(BUFFER_SIZE)

    def _hand_over(self, length: int) -> None:
        """Queue the buffer's first `length` bytes for writing; continue in a free buffer."""
        if self._error is not None:
            raise self._error
        self._full.put((self._buffer, length))
        self._buffer, self._fill = self._free.get(), 0

    def _write_buffers(self) -> None:
        while (item := self._full.get()) is not None:
            buffer, length = item
            try:
                if self._error is None:
                    self._write_aligned(buffer[:length])
            except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
                self._error = e
            finally:
                self._free.put(buffer)
                self._full.task_done()
        self._full.task_done()

    def _write_aligned(self, data: memoryview) -> None:
        if self.direct_io:
            try:
                data = data[os.write(self._fd, data):]
                if not len(data):
                    return
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise  # EINVAL: e.g. a FUSE filesystem that takes O_DIRECT at open but not in writes
            self._stop_direct_io()  # then the rest (of a refused or short write) through the page cache
        _write_all(self._fd, data)

    def _stop_direct_io(self) -> None:
        import fcntl

        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~O_DIRECT)
        self.direct_io = False

    def _wait(self) -> None:
        """Until every queued buffer is written; raise what writing raised."""
        self._full.join()
        if self._error is not None:
            raise self._error

    def restart(self) -> None:
        """Empty the file, to write it again from its first byte."""
        if self._buffered:
            self._wait()
            self._fill = 0
        self.size = 0
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)

    def close(self) -> None:
        """Write what is buffered and close the file; raise what writing raised."""
        try:
            if self._buffered:
                if self._fill:
                    self._hand_over(-(-self._fill // ALIGN) * ALIGN)  # padded past the end of the data...
                self._wait()
                os.ftruncate(self._fd, self.size)  # ...and cut off here
        finally:
            self.abort()

    def abort(self) -> None:
        """Close the file without writing what is buffered."""
        if self._thread is not None:
            self._full.put(None)
            self._thread.join()
            self._thread = None
            self._free = self._full = self._buffer = None  # the buffers are unmapped when collected
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
