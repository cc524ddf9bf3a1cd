"""Retry policy: which failures are retried and how long to wait before the next attempt.

Exponential backoff with *full jitter* (a uniformly random wait between zero and the capped
exponential), except that a server's ``Retry-After`` (seconds or an HTTP date) is honoured.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["RETRY_STATUSES", "RetryPolicy", "parse_retry_after"]

#: Statuses that mean "try again later" (the request was not applied, or is replayable).
RETRY_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when absent or unparseable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN check
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


@dataclass
class RetryPolicy:
    """How many times to retry, and how long to wait between attempts.

    ``retries`` is the number of *extra* attempts (so at most ``retries + 1`` requests).
    The n-th retry (n = 0, 1, ...) waits ``uniform(0, min(max_delay, base_delay * 2**n))``,
    or the server's ``Retry-After`` when it sent one (capped at ``max_retry_after``).
    """

    retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    random: Callable[[float, float], float] = field(default=random.uniform)

    def should_retry_status(self, status: int) -> bool:
        """True for 429, 502, 503 and 504."""
        return status in RETRY_STATUSES

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        cap = min(self.max_delay, self.base_delay * (2**attempt))
        return self.random(0.0, cap)
