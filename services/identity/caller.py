"""The verified caller of the call being handled, set by the gate (services.identity.gate) before any
servicer code runs: None when auth is off, or for a public method."""
from contextvars import ContextVar

from services.identity.model import Identity

CALLER: ContextVar[Identity | None] = ContextVar("mlgrid_caller", default=None)
# The credentials the caller sent, for a service to pass on when it calls another on the caller's behalf
# (the artifact service asking tracking about a run): the other service verifies them itself.
CREDENTIALS: ContextVar[str] = ContextVar("mlgrid_credentials", default="")


def current() -> Identity | None:
    return CALLER.get()


def forwarded() -> tuple[tuple[str, str], ...]:
    """The caller's credentials as the metadata of a call made on their behalf (none when auth is off)."""
    credentials = CREDENTIALS.get()
    return (("authorization", credentials),) if credentials else ()
