"""The ``loom`` command line: operator commands (serve, token, db) and agent commands."""

from __future__ import annotations

from loom.cli import server as _server  # noqa: F401  (registers serve/token/db)
from loom.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    app()
