"""A per-process cache of named-token lookups (and of dashboard sign-outs), each entry
trusted for at most ``ttl`` seconds.

Revocation and expiry must reach every server process within a second without a database
read per request: an entry (hit or miss) is reused only while it is younger than ``ttl``
(monotonic clock, injectable for tests). Expiry itself is checked against the server clock
on every use, so only revocation can lag, and by at most ``ttl``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final, Generic, TypeVar

__all__ = ["MISS", "TokenCache"]

MISS: Final = object()
_MAX_ENTRIES: Final = 10_000
V = TypeVar("V")


class TokenCache(Generic[V]):
    def __init__(self, ttl: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._monotonic = monotonic
        self._entries: dict[str, tuple[float, V | None]] = {}
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, token_hash: str) -> V | object | None:
        """The cached lookup, or :data:`MISS` when absent or older than ``ttl``."""
        entry = self._entries.get(token_hash)
        if entry is None or self._monotonic() - entry[0] >= self.ttl:
            return MISS
        return entry[1]

    def put(self, token_hash: str, token: V | None) -> None:
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()  # bounded: unknown tokens cannot grow it without end
            self._entries[token_hash] = (self._monotonic(), token)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def due_for_touch(self, token_hash: str, every: float = 60.0) -> bool:
        """True at most once per ``every`` seconds per token (throttles ``last_used``)."""
        now = self._monotonic()
        last = self._used.get(token_hash)
        if last is not None and now - last < every:
            return False  # the common case, without the lock
        with self._lock:
            last = self._used.get(token_hash)
            if last is not None and now - last < every:
                return False
            if len(self._used) >= _MAX_ENTRIES:
                self._used.clear()
            self._used[token_hash] = now
            return True
