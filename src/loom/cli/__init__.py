"""The ``loom`` command line: operator commands (serve, token, db) and agent commands."""

from __future__ import annotations

from loom.cli import changes as _changes  # noqa: F401  (registers the agent commands)
from loom.cli import config as _config  # noqa: F401
from loom.cli import db as _db  # noqa: F401  (registers db upgrade/check/backup/restore)
from loom.cli import events as _events  # noqa: F401
from loom.cli import leases as _leases  # noqa: F401
from loom.cli import server as _server  # noqa: F401  (registers serve/token/db)
from loom.cli import sync as _sync  # noqa: F401
from loom.cli import tasks as _tasks  # noqa: F401
from loom.cli import tokens as _tokens  # noqa: F401  (registers token create/list/revoke)
from loom.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
