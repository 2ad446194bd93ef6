"""The verified caller of the call being handled, set by the gate (services.identity.gate) before any
servicer code runs: None when auth is off, or for a public method."""
from contextvars import ContextVar

from services.identity.model import Identity

CALLER: ContextVar[Identity | None] = ContextVar("mlgrid_caller", default=None)


def current() -> Identity | None:
    return CALLER.get()
