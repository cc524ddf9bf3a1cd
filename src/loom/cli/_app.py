"""The root Typer application; command modules register themselves on it."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(
    name="loom",
    help="Loom: coordinate many agents on one repository's Ito changes (server and client).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from loom.cli import version

        typer.echo(f"loom {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    # The root group's options (`loom.cli.main` answers --version before importing Typer;
    # this declares it for --help and for callers of `app` itself).
    pass
