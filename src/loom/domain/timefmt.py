"""RFC 3339 formatting of the integer-microsecond UTC timestamps Loom stores."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta

__all__ = ["date_of_us", "datetime_to_us", "format_us", "format_us_millis", "parse_rfc3339_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


def format_us(us: int | None) -> str | None:
    """``2026-11-27T10:00:00.123456Z`` (microsecond precision, ``Z``), or None."""
    if us is None:
        return None
    seconds, micro = divmod(us, 1_000_000)
    return f"{_second(seconds)}.{micro:06d}Z"


def format_us_millis(us: int) -> str:
    """``2026-11-27T10:00:00.123Z`` (millisecond precision, truncated): Ito's event ``ts``."""
    seconds, micro = divmod(us, 1_000_000)
    return f"{_second(seconds)}.{micro // 1000:03d}Z"


@functools.lru_cache(maxsize=8192)
def _second(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` for a Unix second (cached: lists format thousands of times
    that mostly share a few seconds)."""
    return (_EPOCH_NAIVE + timedelta(seconds=seconds)).isoformat()


def datetime_to_us(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("timestamp must carry a timezone")
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_rfc3339_us(text: str) -> int:
    """Parse an RFC 3339 timestamp (``Z`` or offset required) to microseconds."""
    value = text.strip()
    if value.endswith(("z", "Z")):
        value = value[:-1] + "+00:00"
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError(f"timestamp without timezone: {text!r}")
    try:
        # The same range every reader formats (years 1-9999 in UTC): "0001-01-01T00:00:00+23:59"
        # is a valid local time whose UTC instant is not, and was stored, then failed every read.
        utc = dt.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"timestamp out of range: {text[:60]!r}") from exc
    return datetime_to_us(utc)


def date_of_us(us: int) -> date:
    """The UTC calendar date of a timestamp."""
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).date()
