"""A small, thread-safe memo for the pure functions that parse or rewrite large artifacts.

The server computes each such result twice per write: once on a worker thread *before*
the write transaction (``loom.service`` "prepare" functions), and again inside the
transaction, which runs on the event loop on SQLite. With the memo, the second call is a
lookup, so the event loop never parses a large artifact, and the transaction's answer
never depends on the cache (a miss just computes the same value).

Entries are bounded by count and by the total length of their string arguments. A raised
:class:`~loom.errors.LoomError` is remembered too and raised again as a fresh copy.
"""

from __future__ import annotations

import copy
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from loom.errors import LoomError

__all__ = ["memoized"]

P = ParamSpec("P")
R = TypeVar("R")

_MAX_ENTRIES = 256
_MAX_CHARS = 8 * 1024 * 1024


class _Memo:
    def __init__(self, max_entries: int, max_chars: int) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.entries: OrderedDict[tuple[Any, ...], tuple[bool, Any, int]] = OrderedDict()
        self.chars = 0
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> tuple[bool, Any] | None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                return None
            self.entries.move_to_end(key)
            return entry[0], entry[1]

    def put(self, key: tuple[Any, ...], ok: bool, value: Any) -> None:
        size = sum(len(a) for a in key if isinstance(a, str))
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.chars -= old[2]
            self.entries[key] = (ok, value, size)
            self.chars += size
            # Evict the oldest, but always keep the newest entry (even a huge one).
            while len(self.entries) > 1 and (
                len(self.entries) > self.max_entries or self.chars > self.max_chars
            ):
                _, (_, _, dropped) = self.entries.popitem(last=False)
                self.chars -= dropped


def memoized(fn: Callable[P, R]) -> Callable[P, R]:
    """Memoise a pure function of hashable positional arguments."""
    memo = _Memo(_MAX_ENTRIES, _MAX_CHARS)

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        key = (*args, *sorted(kwargs.items()))
        hit = memo.get(key)
        if hit is not None:
            ok, value = hit
            if ok:
                return value  # type: ignore[no-any-return]
            raise copy.copy(value)
        try:
            result = fn(*args, **kwargs)
        except LoomError as err:
            memo.put(key, False, err)
            raise
        memo.put(key, True, result)
        return result

    return wrapper
