"""The access log formatter: uvicorn's, with query strings that cannot leak a secret."""

from __future__ import annotations

import logging
from copy import copy

from uvicorn.logging import AccessFormatter

__all__ = ["RedactingAccessFormatter", "redact_query"]

# The API's own query parameters: only these names are logged (any other name might be a
# secret a caller put in the URL, as in "?<token>" or "?<token>=1").
_KNOWN = frozenset(
    {
        "since",
        "limit",
        "entity",
        "entity_id",
        "scope",
        "op",
        "cursor",
        "status",
        "module",
        "lifecycle",
        "force",
    }
)


def redact_query(full_path: str) -> str:
    """``/p?since=5&token=abc`` → ``/p?since=***&token=***``.

    Loom never takes a secret in a URL, but a caller may put one there; the access log must
    not repeat it (CLI.md §1). Values are never logged; parameter names only when they look
    of the API (a token sent as a bare ``?<token>`` is not one).
    """
    path, sep, query = full_path.partition("?")
    if not sep:
        return full_path
    parts = []
    for item in query.split("&"):
        name = item.split("=", 1)[0]
        parts.append(f"{name}=***" if name in _KNOWN else "***")
    return f"{path}?{'&'.join(parts)}"


class RedactingAccessFormatter(AccessFormatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and "?" in str(args[2]):
            record = copy(record)
            record.args = (args[0], args[1], redact_query(str(args[2])), args[3], args[4])
        return super().formatMessage(record)
