"""What an artifact store provides. Every method blocks (file system or S3 calls):
the handler runs them in threads, so the event loop never waits on a disk or the network."""
from abc import ABC, abstractmethod
from dataclasses import dataclass

from services.artifacts.paths import Location
from services.common.errors import FailedPrecondition, InvalidArgument, OutOfRange


@dataclass(frozen=True)
class FileStat:
    is_dir: bool
    size: int = 0
    sha256: str = ""  # "" when the store does not know it


@dataclass(frozen=True)
class Entry:
    """One entry of a folder listing: its name inside the folder."""

    name: str
    is_dir: bool
    size: int = 0


@dataclass(frozen=True)
class PartUrl:
    part_number: int
    url: str
    offset: int
    size: int


class UploadSink(ABC):
    """Receives one upload's bytes; nothing is visible at the destination until commit() returns.

    write() calls come one at a time, in order; abort() may come at any point
    (also after commit, when it does nothing) and never raises.
    """

    @abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @abstractmethod
    def commit(self, size: int, sha256: str) -> None: ...

    @abstractmethod
    def abort(self) -> None: ...


def byte_range(stat: FileStat, offset: int, length: int, path: str) -> int:
    """How many bytes a read of `length` (0: to the end) from `offset` returns."""
    if offset < 0 or length < 0:
        raise InvalidArgument(f"offset and length must not be negative (got {offset} and {length})")
    if offset > stat.size:
        raise OutOfRange(f"offset {offset} is past the end of {path!r}, which has {stat.size} bytes")
    remaining = stat.size - offset
    return remaining if length == 0 else min(length, remaining)


class Reader(ABC):
    """An open file: its stat when opened, and read() of the requested range, in order."""

    stat: FileStat
    length: int  # bytes the range holds

    @abstractmethod
    def read(self, size: int) -> bytes:
        """Up to `size` bytes; b"" at the end of the requested range."""

    @abstractmethod
    def close(self) -> None: ...


class Backend(ABC):
    name: str
    # Presigned URLs (create/complete/abort multipart, download URL) are available.
    direct_transfer: bool = False
    # The store keeps a file's sha256 only when it is known as the upload starts.
    sha256_upfront: bool = False

    @abstractmethod
    def begin_upload(self, location: Location, expected_sha256: str) -> UploadSink: ...

    @abstractmethod
    def open_read(self, location: Location, offset: int, length: int) -> Reader:
        """The file at `location`, to read `length` bytes (0: to the end) from `offset`;
        NotFound when missing, OutOfRange for an offset past its end."""

    @abstractmethod
    def stat(self, location: Location) -> FileStat | None: ...

    @abstractmethod
    def list_folder(self, location: Location, start_after: str, limit: int) -> tuple[list[Entry], bool]:
        """Up to `limit` entries of the folder after `start_after` (the name of the last entry of
        the previous page, with a '/' after a folder's), sorted, and whether more follow;
        nothing for a missing folder or a file."""

    @abstractmethod
    def delete(self, location: Location) -> int:
        """Delete the file or the folder with everything under it; the number of files deleted."""

    # Direct transfers; only stores with direct_transfer implement them.

    def create_multipart(self, location: Location, size: int, sha256: str) -> tuple[str, list[PartUrl]]:
        raise FailedPrecondition(f"the {self.name} artifact store has no direct transfers: stream through Upload")

    def complete_multipart(self, location: Location, upload_id: str, size: int, parts: list[tuple[int, str]]) -> FileStat:
        raise FailedPrecondition(f"the {self.name} artifact store has no direct transfers: stream through Upload")

    def abort_multipart(self, location: Location, upload_id: str) -> None:
        raise FailedPrecondition(f"the {self.name} artifact store has no direct transfers: stream through Upload")

    def download_url(self, location: Location) -> tuple[str, FileStat]:
        raise FailedPrecondition(f"the {self.name} artifact store has no direct transfers: use Download")
