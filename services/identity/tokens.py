"""Access tokens and UI sessions: a secret shown once (`mlg_` and 43 URL-safe characters, 256 bits), stored
only as its SHA-256; the `--expires` durations of `mlgrid tokens create`."""
import hashlib
import re
import secrets
from dataclasses import dataclass

from services.common.errors import InvalidArgument

PREFIX = "mlg_"
TOKEN = "token"  # kinds: a named access token, or a UI sign-in
SESSION = "session"
KINDS = (TOKEN, SESSION)

_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
MAX_EXPIRY_MS = 10 * 365 * 86_400_000  # ten years; longer is `never`


@dataclass(frozen=True)
class TokenInfo:
    """A stored token, without its secret."""

    id: int
    user_id: int
    name: str
    kind: str
    created_ms: int
    expires_ms: int | None  # None: never
    last_used_ms: int | None
    revoked: bool


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What the database keeps of a secret: its SHA-256, in hex (a secret has 256 bits: no salt needed)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def parse_duration_ms(text: str) -> int | None:
    """`30d`, `12h`, `90m`, `45s`, `2w` in milliseconds; `never` (or an empty string) is None."""
    if text.strip().lower() in ("never", ""):
        return None
    match = _DURATION.match(text)
    if match is None:
        raise InvalidArgument(f"expires: {text!r} is not a duration: use e.g. 30d, 12h, 90m, 45s, 2w or never")
    ms = int(match.group(1)) * _UNITS_MS[match.group(2).lower()]
    if ms <= 0 or ms > MAX_EXPIRY_MS:
        raise InvalidArgument(f"expires: {text!r} must be more than 0 and at most 3650d (or never)")
    return ms
