"""Size limits of stored artifacts, checked at every entry point before anything is parsed."""

from __future__ import annotations

from collections.abc import Iterable

from loom.errors import PayloadTooLarge
from loom.service._context import Policy

__all__ = ["check_artifact", "check_artifacts"]


def _utf8_size(text: str, limit: int) -> int:
    if len(text) * 4 <= limit:  # no string of this length can exceed the limit
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def check_artifact(policy: Policy, what: str, text: str | None) -> None:
    """413 ``artifact_too_large`` when ``text`` exceeds ``policy.max_artifact_bytes``."""
    limit = policy.max_artifact_bytes
    if text is None or len(text) * 4 <= limit:
        return
    size = _utf8_size(text, limit)
    if size > limit:
        raise PayloadTooLarge(
            f"{what} is {size} bytes; the limit per artifact is {limit} bytes",
            kind="artifact_too_large",
            artifact=what,
            size=size,
            max_bytes=limit,
        )


def check_artifacts(policy: Policy, items: Iterable[tuple[str, str | None]]) -> None:
    """:func:`check_artifact` for each ``(what, text)``."""
    for what, text in items:
        check_artifact(policy, what, text)
