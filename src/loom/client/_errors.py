"""Client-only errors, added to Loom's shared error tree (:mod:`loom.errors`)."""

from __future__ import annotations

from typing import Any

from loom.errors import Unavailable, ValidationError

__all__ = ["ConnectionFailed", "InvalidArgument"]


class ConnectionFailed(Unavailable):
    """The server could not be reached (refused, DNS, timeout, dropped connection).

    Raised after the retries are used up. Its ``http_status`` is 0: no response came back.
    """

    default_kind = "connection_failed"

    def __init__(self, message: str, *, kind: str | None = None, **details: Any) -> None:
        super().__init__(message, kind=kind, **details)
        self.http_status = 0


class InvalidArgument(ValidationError):
    """An argument was refused by the client itself, before any request was sent.

    For example a change or task id that cannot be one URL path segment (``a/b``, ``..``).
    Its ``http_status`` is 0: nothing reached the server. ``details["field"]`` names what
    was being checked (``"change id"``, ``"task id"``, ...).
    """

    default_kind = "invalid_argument"

    def __init__(self, message: str, *, kind: str | None = None, **details: Any) -> None:
        super().__init__(message, kind=kind, **details)
        self.http_status = 0
