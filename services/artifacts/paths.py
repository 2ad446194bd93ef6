"""Artifact paths and proxied URIs: validated and normalized before any store sees them.

A key is a '/'-separated path relative to the backend root, e.g.
`0/<run_id>/artifacts/model/weights.bin`. A Location pairs the scope a request
may not leave (a run's folder, or the path of a root URI) with a path inside it.
"""
import re
from dataclasses import dataclass
from urllib.parse import urlparse

from services.common.errors import InvalidArgument
from services.db.validation import RUN_ID_PATTERN

PROXIED_SCHEMES = ("mlgrid-artifacts", "mlflow-artifacts")
# The local backend's folder for uploads in progress, at its root; no path may name it.
UPLOADS_DIR = ".mlgrid-uploads"
MAX_KEY_BYTES = 1024  # S3's limit on a key
MAX_SEGMENT_BYTES = 255  # file systems' limit on a name
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def normalize(path: str, what: str = "artifact path") -> str:
    """`path` relative and '/'-separated, without '.' or empty segments; "" is the root.

    `..`, absolute paths, backslashes and NUL bytes are refused, not resolved:
    a crafted path never reaches another folder.
    """
    if "\x00" in path:
        raise InvalidArgument(f"invalid {what} {path!r}: NUL bytes are not allowed")
    if "\\" in path:
        raise InvalidArgument(f"invalid {what} {path!r}: use '/' to separate folders, not backslashes")
    if path.startswith("/"):
        raise InvalidArgument(f"invalid {what} {path!r}: it must be relative (no leading '/')")
    segments = [s for s in path.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise InvalidArgument(f"invalid {what} {path!r}: '..' segments are not allowed")
    if UPLOADS_DIR in segments:
        raise InvalidArgument(f"invalid {what} {path!r}: {UPLOADS_DIR} is reserved for uploads in progress")
    for segment in segments:
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise InvalidArgument(f"invalid {what} {path!r}: a name is limited to {MAX_SEGMENT_BYTES} bytes")
    normalized = "/".join(segments)
    if len(normalized.encode()) > MAX_KEY_BYTES:
        raise InvalidArgument(f"invalid {what}: {len(normalized.encode())} bytes long; the limit is {MAX_KEY_BYTES}")
    return normalized


def join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def proxied_key(uri: str) -> str | None:
    """The key a proxied URI (mlgrid-artifacts:/X) names, or None for any other scheme."""
    parsed = urlparse(uri)
    if parsed.scheme not in PROXIED_SCHEMES:
        return None
    if parsed.query or parsed.fragment:
        raise InvalidArgument(f"invalid artifact URI {uri!r}: query strings and fragments are not allowed")
    return normalize(parsed.path.lstrip("/"), "artifact URI path")


def run_in_key(key: str) -> tuple[str, str] | None:
    """(run id, the run's folder key) when `key` is inside a run's artifacts folder (`.../<run_id>/artifacts/...`)."""
    segments = key.split("/")
    for i in range(len(segments) - 1):
        if segments[i + 1] == "artifacts" and RUN_ID_PATTERN.match(segments[i]):
            return segments[i], "/".join(segments[: i + 2])
    return None


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.match(run_id):
        raise InvalidArgument(f"invalid run id {run_id!r}: a run id is 32 lowercase hexadecimal characters")
    return run_id


def check_sha256(value: str, what: str) -> str:
    """A hex sha256 as lowercase, or "" when not given."""
    value = value.lower()
    if value and not _SHA256.match(value):
        raise InvalidArgument(f"invalid {what} {value!r}: expected 64 hexadecimal characters")
    return value


@dataclass(frozen=True)
class Location:
    """Where a request reads or writes: `path` inside `scope`, both keys relative to the backend root."""

    scope: str
    path: str

    @property
    def key(self) -> str:
        return join(self.scope, self.path)
