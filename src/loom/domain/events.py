"""Audit events: validation, batch fingerprints and the server's own events.

An event is one JSON object (ito-domain.md §6.1, ito-server.md §6.1, API.md §2.8)::

    {"v": 1, "ts": "2026-02-28T10:00:00.000Z", "entity": "task", "entity_id": "1.1",
     "scope": "001-01_alpha", "op": "status_change", "from": "pending", "to": "in-progress",
     "actor": "cli", "by": "@alice", "meta": {...}, "count": 2, "ctx": {"session_id": "s-1"}}

Upstream checks JSON types only and silently drops unknown fields. Loom validates values too
(``v`` must be 1, ``ts`` strict RFC 3339, required strings non-blank, ``count`` positive) and
keeps unknown fields, top level and in ``ctx``. Strings may not hold NUL or lone surrogates
and numbers must be finite, so every accepted event can be stored and re-served as JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final, NoReturn

import orjson

from loom.errors import ValidationError

__all__ = [
    "EVENT_VERSION",
    "SERVER_ACTOR",
    "SERVER_BY",
    "canonical_event_json",
    "format_event_ts",
    "make_event",
    "parse_event_ts",
    "validate_event",
]

EVENT_VERSION: Final = 1
SERVER_ACTOR: Final = "server"
SERVER_BY: Final = "@loom"

_REQUIRED_STRINGS: Final = ("entity", "entity_id", "op", "actor", "by")
_OPTIONAL_STRINGS: Final = ("scope", "from", "to")
_CTX_OPTIONAL_STRINGS: Final = ("harness_session_id", "branch", "worktree", "commit")
_RFC3339: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def _fail(index: int, field: str, problem: str) -> NoReturn:
    raise ValidationError(
        f"event {index}: {problem}", kind="invalid_event", index=index, field=field
    )


def parse_event_ts(text: str) -> datetime:
    """Parse a strict RFC 3339 timestamp (``T``, seconds and a ``Z`` or ``±HH:MM`` offset are
    required; up to 9 fraction digits, truncated to microseconds) to an aware UTC datetime.

    Raises ``ValueError`` on anything else, including leap seconds (``:60``).
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text[:60]!r}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    if match.group(8):
        tz = UTC
    else:
        off_h, off_m = int(match.group(10)), int(match.group(11))
        if off_h > 23 or off_m > 59:
            raise ValueError(f"invalid UTC offset in {text[:60]!r}")
        offset = timedelta(hours=off_h, minutes=off_m)
        tz = timezone(-offset if match.group(9) == "-" else offset)
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)
    except OverflowError as exc:  # a valid local time that falls outside years 1-9999 in UTC
        raise ValueError(f"timestamp out of range: {text[:60]!r}") from exc


def format_event_ts(ts: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC (Ito's event timestamp form)."""
    if ts.tzinfo is None:
        raise ValueError("event timestamps must be timezone-aware")
    utc = ts.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _ts_ok(text: str) -> bool:
    """True if ``text`` is a strict RFC 3339 timestamp (fast path via ``fromisoformat``)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return False
    fraction = match.group(7)
    if (fraction is None or len(fraction) <= 6) and match.group(8) == "Z" and "t" not in text:
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return False
        return True
    try:
        parse_event_ts(text)
    except ValueError:
        return False
    return True


def _bad_string(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate"
    return None


MAX_DEPTH: Final = 64
"""How deeply a field's JSON value may nest (lists and objects): deeper values were stored and
then failed every read that rendered them (RecursionError)."""


def _check_json(value: object, index: int, field: str) -> None:
    """Iteratively check that ``value`` is plain, storable JSON nested at most
    :data:`MAX_DEPTH` deep."""
    stack: list[tuple[object, str, int]] = [(value, field, 1)]
    while stack:
        item, path, depth = stack.pop()
        if item is None or isinstance(item, bool | int):
            continue
        if depth > MAX_DEPTH and isinstance(item, list | dict):
            _fail(index, path, f"{path} nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, float):
            if not math.isfinite(item):
                _fail(index, path, f"{path} contains a non-finite number")
        elif isinstance(item, str):
            problem = _bad_string(item)
            if problem:
                _fail(index, path, f"{path} {problem}")
        elif isinstance(item, list):
            stack.extend((child, path, depth + 1) for child in item)
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str) or _bad_string(key):
                    _fail(index, path, f"{path} has an invalid key")
                stack.append((child, path, depth + 1))
        else:
            _fail(index, path, f"{path} is not JSON ({type(item).__name__})")


def _required_string(obj: Mapping[str, Any], key: str, index: int, field: str) -> None:
    if key not in obj:
        _fail(index, field, f"missing required field '{field}'")
    value = obj[key]
    if not isinstance(value, str):
        _fail(index, field, f"'{field}' must be a string")
    if not value.strip():
        _fail(index, field, f"'{field}' must not be empty")


def _optional_string(obj: Mapping[str, Any], key: str, index: int, field: str) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        _fail(index, field, f"'{field}' must be a string or null")


def validate_event(obj: object, index: int) -> dict[str, Any]:
    """Check one event of a batch (``index`` is its position) and return it unchanged.

    Required: ``v`` == 1 (an integer, not a boolean), ``ts`` (strict RFC 3339), non-blank
    strings ``entity``, ``entity_id``, ``op``, ``actor``, ``by``, and ``ctx`` an object with a
    non-blank string ``session_id``. Optional: ``scope``/``from``/``to`` (string or null),
    ``meta`` (any JSON), ``count`` (positive integer), and in ``ctx`` ``harness_session_id``,
    ``branch``, ``worktree``, ``commit`` (string or null). Unknown fields are kept.

    Raises ``ValidationError(kind="invalid_event", index=index, field=<field>)``.
    """
    event = _validate_fields(obj, index)
    _check_values(event, index)
    return event


def _validate_fields(obj: object, index: int) -> dict[str, Any]:
    if not isinstance(obj, dict):
        _fail(index, "event", "must be a JSON object")
    if "v" not in obj:
        _fail(index, "v", "missing required field 'v'")
    version = obj["v"]
    if isinstance(version, bool) or not isinstance(version, int):
        _fail(index, "v", "'v' must be an integer")
    if version != EVENT_VERSION:
        _fail(index, "v", f"unsupported event version {version} (expected {EVENT_VERSION})")
    _required_string(obj, "ts", index, "ts")
    if not _ts_ok(obj["ts"]):
        _fail(index, "ts", f"'ts' is not an RFC 3339 timestamp: {obj['ts'][:60]!r}")
    for key in _REQUIRED_STRINGS:
        value = obj.get(key)
        # Fast path for the common valid case; the helper names the exact problem.
        if value.__class__ is not str or not value.strip():
            _required_string(obj, key, index, key)
    for key in _OPTIONAL_STRINGS:
        value = obj.get(key)
        if value is not None and value.__class__ is not str:
            _optional_string(obj, key, index, key)
    if "count" in obj:
        count = obj["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            _fail(index, "count", "'count' must be a positive integer")
    if "ctx" not in obj:
        _fail(index, "ctx", "missing required field 'ctx'")
    ctx = obj["ctx"]
    if not isinstance(ctx, dict):
        _fail(index, "ctx", "'ctx' must be an object")
    _required_string(ctx, "session_id", index, "ctx.session_id")
    for key in _CTX_OPTIONAL_STRINGS:
        _optional_string(ctx, key, index, f"ctx.{key}")
    return obj


def _check_values(obj: dict[str, Any], index: int) -> None:
    for key, value in obj.items():
        if not isinstance(key, str) or _bad_string(key):
            _fail(index, "event", "has an invalid field name")
        _check_json(value, index, key)


_CANONICAL: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_event_json(obj: object, index: int, *, strict_json: bool = False) -> str:
    """Validate one event decoded from JSON and return its canonical text (sorted keys,
    compact), which is what the server stores and fingerprints.

    The same rules as :func:`validate_event`, with the storability check done by one
    C-accelerated ``json.dumps`` (non-finite numbers and lone surrogates make it fail, a NUL
    shows up as ``\\u0000``); only a failing event takes the slow path that names the field.
    Keys are strings by construction for decoded JSON.

    ``strict_json``: the event was decoded by ``orjson`` (which refuses ``NaN``/``Infinity``
    and lone surrogates), so it holds no non-finite number and is encoded by ``orjson`` too,
    ~9x faster. ``orjson`` writes a non-finite float as ``null``, hence the flag; anything it
    cannot encode (integers beyond 64 bits) goes the standard way.
    """
    event = _validate_fields(obj, index)
    if strict_json:
        try:
            out = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
        else:
            # (More brackets than MAX_DEPTH is necessary for nesting that deep: only then walk.)
            if b"\\u0000" in out or out.count(b"[") + out.count(b"{") > MAX_DEPTH:
                _check_values(event, index)
            return out.decode("utf-8")
    try:
        text = _CANONICAL.encode(event)
        text.encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        _check_values(event, index)
        raise  # pragma: no cover - _check_values always names the problem first
    if "\\u0000" in text or text.count("[") + text.count("{") > MAX_DEPTH:
        _check_values(event, index)
    return text


def make_event(
    *,
    ts: datetime | str,
    entity: str,
    entity_id: str,
    op: str,
    session_id: str,
    scope: str | None = None,
    from_: str | None = None,
    to: str | None = None,
    meta: Any = None,
    count: int = 1,
    actor: str = SERVER_ACTOR,
    by: str = SERVER_BY,
    check: bool = True,
) -> dict[str, Any]:
    """Build an event the server records itself, in Ito's field order.

    ``ts`` must be timezone-aware; it is written as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (a string is
    taken as already in that form). None fields
    are omitted and ``count`` is omitted when it is 1, as Ito writes them. The result passes
    :func:`validate_event` (a ``ValidationError`` otherwise); ``check=False`` skips that
    check for callers whose inputs are already validated (the server's hot paths).
    """
    event: dict[str, Any] = {
        "v": EVENT_VERSION,
        "ts": ts if isinstance(ts, str) else format_event_ts(ts),
        "entity": entity,
        "entity_id": entity_id,
    }
    if scope is not None:
        event["scope"] = scope
    event["op"] = op
    if from_ is not None:
        event["from"] = from_
    if to is not None:
        event["to"] = to
    event["actor"] = actor
    event["by"] = by
    if meta is not None:
        event["meta"] = meta
    if count < 1:
        raise ValueError("count must be positive")
    if count > 1:
        event["count"] = count
    event["ctx"] = {"session_id": session_id}
    return validate_event(event, 0) if check else event
