"""The root Typer application; command modules register themselves on it."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["app", "version"]

app = typer.Typer(
    name="loom",
    help="Loom: coordinate many agents on one repository's Ito changes (server and client).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def version() -> str:
    """The installed distribution's version (the package's own when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("ito-loom")
    except PackageNotFoundError:
        from loom import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"loom {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Loom: coordinate many agents on one repository's Ito changes (server and client)."""
