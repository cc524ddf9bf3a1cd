"""JSON for large request bodies, in small steps, so the event loop keeps the interpreter.

A thread does not help by itself: ``json.loads``/``orjson.loads`` of a 9 MiB body is one C
call that holds the GIL for its whole run (~100 ms), and the event loop waits for it. Here
the work is cut into C calls of at most ~64 KiB each: :func:`loads` decodes a container
whole with the standard scanner when it ends within a window (small elements: one call
each), and otherwise walks it element by element; :func:`canonical_chunks` encodes like
``json.dumps(value, sort_keys=True, separators=(",", ":"))`` one scalar at a time. Between
two calls the interpreter switches threads (every millisecond in the server:
``sys.setswitchinterval``), so the loop waits at most about that long. Bodies above
:data:`LARGE_BODY` go this way, on a worker thread; smaller ones keep the one-call path.

:func:`loads` accepts exactly what ``json.loads`` accepts (the same scanner decodes every
scalar); nesting deeper than :data:`MAX_DEPTH` raises ``RecursionError`` as ``json.loads``
does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

__all__ = ["LARGE_BODY", "MAX_DEPTH", "canonical_chunks", "loads", "more_values_than"]

LARGE_BODY = 256 * 1024
"""A body larger than this is decoded with :func:`loads` on a worker thread."""

MAX_DEPTH = 1000

# Always matches (possibly nothing); typed so, for ``.end()``.
_WS: Callable[[str, int], Any] = re.compile(r"[ \t\n\r]*").match
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_FIRST_WINDOW = 1024
_MAX_WINDOW = 64 * 1024
_NOT_JSON = (StopIteration, ValueError, RecursionError)


def loads(raw: bytes | str) -> Any:
    """``json.loads(raw)``, as C calls over at most ~64 KiB each.

    Raises ``ValueError`` for text that is not JSON, ``RecursionError`` for nesting deeper
    than :data:`MAX_DEPTH`."""
    s = raw if isinstance(raw, str) else raw.decode(json.detect_encoding(raw), "surrogatepass")
    ws = _WS
    n = len(s)
    stack: list[Any] = []  # the open containers, innermost last
    keys: list[str] = []  # for each open container, the key its next value goes under
    window = _FIRST_WINDOW  # about twice the last element decoded whole
    i = ws(s, 0).end()
    while True:
        c = s[i : i + 1]
        if c in ("{", "["):
            value, end = _whole(s, i, window)
            if end:
                window = max(_FIRST_WINDOW, 2 * (end - i))
                i = end
            else:  # larger than the window: open it and walk its elements
                if len(stack) >= MAX_DEPTH:
                    raise RecursionError("JSON nested too deep")
                i = ws(s, i + 1).end()
                closer = "}" if c == "{" else "]"
                if s[i : i + 1] == closer:
                    value = {} if c == "{" else []
                    i += 1
                else:
                    stack.append({} if c == "{" else [])
                    keys.append("")
                    if c == "{":
                        i = _key(s, i, keys)
                    continue
        else:
            try:
                value, i = _scan(s, i)
            except StopIteration:
                raise ValueError(f"not JSON at character {i}") from None
        while True:  # store the value in its container; close the containers that end
            if not stack:
                if ws(s, i).end() != n:
                    raise ValueError(f"extra data at character {i}")
                return value
            top = stack[-1]
            if type(top) is list:
                top.append(value)
            else:
                top[keys[-1]] = value
            i = ws(s, i).end()
            ch = s[i : i + 1]
            if ch == ",":
                i = ws(s, i + 1).end()
                if type(top) is dict:
                    i = _key(s, i, keys)
                break
            if ch != ("]" if type(top) is list else "}"):
                raise ValueError(f"not JSON at character {i}")
            i += 1
            value = stack.pop()
            keys.pop()


def _whole(s: str, i: int, window: int) -> tuple[Any, int]:
    """The container at ``i`` and its end, if it ends within a window of at most 64 KiB
    (tried with growing windows from ``window``); (None, 0) if not (or not valid: the walk
    then says where)."""
    n = len(s)
    while window <= _MAX_WINDOW:
        try:
            value, end = _scan(s[i : i + window], 0)
        except _NOT_JSON:
            if i + window >= n:
                return None, 0
            window *= 2
            continue
        return value, i + end
    return None, 0


def _key(s: str, i: int, keys: list[str]) -> int:
    if s[i : i + 1] != '"':
        raise ValueError(f"not JSON at character {i}: expected a key")
    key, i = scanstring(s, i + 1, True)
    i = _WS(s, i).end()
    if s[i : i + 1] != ":":
        raise ValueError(f"not JSON at character {i}: expected ':'")
    keys[-1] = key
    end: int = _WS(s, i + 1).end()
    return end


def canonical_chunks(value: Any, depth: int = 0) -> Iterator[str]:
    """The text of ``json.dumps(value, sort_keys=True, separators=(",", ":"))``, in pieces
    (one scalar per C call)."""
    if depth > MAX_DEPTH:
        raise RecursionError("JSON nested too deep")
    if isinstance(value, dict):
        yield "{"
        for n, key in enumerate(sorted(value)):
            yield ("," if n else "") + json.dumps(key) + ":"
            yield from canonical_chunks(value[key], depth + 1)
        yield "}"
    elif isinstance(value, list):
        yield "["
        for n, item in enumerate(value):
            if n:
                yield ","
            yield from canonical_chunks(item, depth + 1)
        yield "]"
    else:
        yield json.dumps(value)


def more_values_than(value: Any, limit: int) -> bool:
    """Does ``value`` hold more than ``limit`` JSON values (containers and scalars; a long
    string is one)? Stops counting at the limit."""
    count = 0
    todo = [value]
    while todo:
        item = todo.pop()
        count += 1
        if count > limit:
            return True
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False
