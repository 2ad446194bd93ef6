"""Passwords: argon2id hashes (argon2-cffi's defaults, RFC 9106's low-memory profile), verified in constant
time. A password is never logged nor kept: only its hash is stored."""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services.common.errors import InvalidArgument

# MLflow's create_user asks for at least 12 characters; the upper bound keeps a hash from being a way to
# make the server work for nothing.
MIN_LENGTH = 12
MAX_LENGTH = 1024

_hasher = PasswordHasher()  # argon2id


def validate(password: str) -> None:
    """InvalidArgument naming `password` (never showing it) unless its length is acceptable."""
    if not password:
        raise InvalidArgument("Password cannot be empty.")
    if len(password) < MIN_LENGTH:
        raise InvalidArgument(f"Password must be at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise InvalidArgument(f"Password must be at most {MAX_LENGTH} characters.")


def hash_password(password: str) -> str:
    """The argon2id hash of `password` (a fresh salt each time); slow on purpose: call it off the event loop."""
    return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one `password_hash` was made of; False for no hash or a malformed one."""
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with other parameters than today's (then hash the password again at sign-in)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
