"""The root Typer application; command modules register themselves on it."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    name="loom",
    help="Loom: coordinate many agents on one repository's Ito changes (server and client).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
