"""What the authorities keep: answers for a while, and how a resource named otherwise than by its id
is found."""
import time
from collections.abc import Awaitable, Callable

MAX_ENTRIES = 100_000  # per cache: beyond, it starts afresh

# A resource named otherwise than by its id (an experiment by name, a served model): its (type, id), None
# when nothing stands behind it.
Resolver = Callable[[str], Awaitable[tuple[str, str] | None]]


class TtlCache:
    """Values kept for `seconds` (or a given time) each."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._entries: dict = {}

    def get(self, key):
        entry = self._entries.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry

    def put(self, key, value, seconds: float | None = None) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (value, time.monotonic() + (self.seconds if seconds is None else seconds))

    def clear(self) -> None:
        self._entries.clear()
