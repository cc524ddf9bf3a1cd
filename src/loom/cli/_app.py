"""The root Typer application; command modules register themselves on it.

The root group does three things for every command before Typer runs it:

* help text: a flag shows no ``<bool>`` type label and an argument shows as ``CHANGE``
  (not ``{change}``);
* with ``--json`` anywhere on the line, a usage error (bad option, missing argument, value
  out of range) is printed as the one ``--json`` error shape on stdout (docs/cli.md), not as a
  text box on stderr;
* ``-h`` is ``--help`` everywhere, and ``--version`` prints the installed version.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

__all__ = ["EXIT_USAGE_CODE", "app", "usage_envelope"]

EXIT_USAGE_CODE = 2
_HELP = ["-h", "--help"]


def usage_envelope(message: str) -> dict[str, Any]:
    """The ``--json`` error shape of a usage error (as the API's 400 envelope)."""
    return {
        "error": message,
        "code": "bad_request",
        "kind": "usage_error",
        "exit_code": EXIT_USAGE_CODE,
    }


class _Argument(TyperArgument):
    """An argument shown as ``CHANGE`` (required) or ``[PATH]`` (optional) in usage lines."""

    __slots__ = ()

    def get_usage_pieces(self, ctx: Any) -> list[str]:
        name = self.metavar or (self.name or "arg").upper()
        return [name if self.required else f"[{name}]"]


def _tidy(command: TyperCommand | TyperGroup) -> None:
    """Help labels: no type label on flags, upper-case argument names, no braces."""
    for param in command.params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, TyperArgument):
            if param.metavar is None:
                name = (param.name or "arg").upper()
                param.metavar = f"{name}..." if param.nargs != 1 else name
            param.__class__ = _Argument
    # The help option is made (and cached) on first use; make it now to drop its label.
    help_option = command.get_help_option(typer.Context(command, help_option_names=_HELP))
    if help_option is not None:
        help_option.metavar = ""
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            if isinstance(sub, TyperCommand | TyperGroup):
                _tidy(sub)


class LoomGroup(TyperGroup):
    """The ``loom`` group: tidy help labels and ``--json`` usage errors (see the module doc)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        _tidy(self)
        argv = list(sys.argv[1:] if args is None else args)
        words = argv[: argv.index("--")] if "--" in argv else argv
        if not standalone_mode or "--json" not in words:
            return super().main(argv, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(argv, prog_name, complete_var, False, **extra)
        except typer.TyperException as error:  # Click's usage errors (vendored by Typer)
            message = error.format_message()
            typer.echo(json.dumps(usage_envelope(message), ensure_ascii=False))
            sys.exit(error.exit_code)
        except typer.Abort:
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="loom",
    cls=LoomGroup,
    help="Loom: coordinate many agents on one repository's Ito changes (server and client).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": _HELP},
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
    """Loom: coordinate many agents on one repository's Ito changes (server and client).

    Agents: `loom allocate`, `loom pull`, `loom tasks …`, `loom push`, `loom archive`.
    Operators: `loom serve`, `loom token …`, `loom db …`. `loom COMMAND -h` for details.
    """
    # `loom.cli.main` answers --version before importing Typer; this declares it for
    # --help and for callers of `app` itself.
