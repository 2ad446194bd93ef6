"""What the caller of the current call may see, for the handlers that narrow their answers to it
(searches: in the query, before paging, so pages stay full; the registry's event stream: per event).
`OPEN` when auth is off: everything."""
from functools import partial

from services.db.filters import Visible
from services.identity import caller
from services.identity.model import Permission


class Visibility:
    def __init__(self, store=None, authority=None):
        self.store = store  # an IdentityStore: readable_clause
        self.authority = authority  # a LocalAuthority: decide (cached)

    def clause(self, resource_type: str) -> Visible | None:
        """The condition on a search's experiment-id or model-name column; None: every row."""
        identity = caller.current()
        if self.store is None or identity is None or identity.is_admin:
            return None
        return partial(self.store.readable_clause, identity, resource_type)

    async def may_read(self, resource_type: str, resource_id: str) -> bool:
        identity = caller.current()
        if self.authority is None or identity is None or identity.is_admin:
            return True
        _, visible = await self.authority.decide("", identity, resource_type, resource_id, Permission.READ)
        return visible

    def forget(self) -> None:
        """After grants changed here (a model renamed or deleted): nothing cached of them is used again."""
        if self.authority is not None:
            self.authority.forget(credentials=False)


OPEN = Visibility()
