"""Who is calling: the enforcement layer (the interceptor chain) sets CALLER to the verified identity of the
call it runs; the identity servicer reads it. None when nobody set it: authentication is off."""
from contextvars import ContextVar

from services.identity.model import Identity

CALLER: ContextVar[Identity | None] = ContextVar("mlgrid_caller", default=None)


def current() -> Identity | None:
    return CALLER.get()
