"""How the command line shows times and leases: one timestamp format, and how long is left."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["expires_in", "format_lease", "format_time", "parse_time"]


def format_time(value: datetime | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SSZ`` (UTC), or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (RFC 3339 text) or datetime as an aware datetime; None if neither."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def expires_in(
    value: datetime | None, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> str:
    """``in 14 min`` / ``in 40 s`` / ``2 min ago`` relative to ``now`` (``-`` for none)."""
    if value is None:
        return "-"
    seconds = int((value - now()).total_seconds())
    span = abs(seconds)
    if span < 90:
        text = f"{span} s"
    elif span < 90 * 60:
        text = f"{round(span / 60)} min"
    elif span < 36 * 3600:
        text = f"{span / 3600:.1f} h"
    else:
        text = f"{span / 86400:.1f} days"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def format_lease(holder: str | None, expires_at: datetime | None) -> str:
    """``holder (expires in 14 min)`` or ``-``."""
    if holder is None:
        return "-"
    return f"{holder} (expires {expires_in(expires_at)})"
