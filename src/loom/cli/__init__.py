"""The ``loom`` command line: operator commands (serve, token, db) and agent commands.

Start-up cost matters (an agent runs ``loom`` dozens of times per task), so nothing heavy is
imported here: :func:`main` answers ``--version`` without importing Typer, and otherwise
imports only the module that registers the command named on the command line (``loom tasks
start`` never imports the server or its settings). An unknown first
word, ``--help`` or no argument loads every command module, so help and errors list them
all. ``from loom.cli import app`` also loads them all.
"""

from __future__ import annotations

import gc
import importlib
import sys

TYPE_CHECKING = False  # not `typing.TYPE_CHECKING`: importing typing costs --version ~10 ms
if TYPE_CHECKING:
    from typing import Any

    import typer

__all__ = ["app", "main", "version"]

# Command modules in help order; each registers its commands on loom.cli._app.app.
_MODULES = (
    "changes",
    "config",
    "events",
    "leases",
    "mcp",
    "overlaps",
    "server",
    "db",
    "tokens",
    "sync",
    "tasks",
)
# The top-level command (or group) -> the module that registers it. A command missing here
# still works: its first word is unknown, so every module is loaded.
_OWNER = {
    "status": "changes",
    "changes": "changes",
    "show": "changes",
    "config": "config",
    "events": "events",
    "claim": "leases",
    "heartbeat": "leases",
    "release": "leases",
    "allocate": "leases",
    "keepalive": "leases",
    "leases": "leases",
    "mcp": "mcp",
    "overlaps": "overlaps",
    "serve": "server",
    "token": "tokens",  # loom.cli.tokens imports loom.cli.server (token project|init)
    "db": "db",
    "pull": "sync",
    "push": "sync",
    "archive": "sync",
    "rebase": "sync",
    "import": "sync",
    "export": "sync",
    "tasks": "tasks",
}


def version() -> str:
    """The package version, ``loom.__version__``: the same string as the installed
    distribution's metadata (``importlib.metadata.version("ito-loom")``, checked by a test),
    without the ~40 ms that importing ``importlib.metadata`` costs every ``loom --version``."""
    from loom import __version__

    return __version__


def _load(command: str | None) -> typer.Typer:
    owner = _OWNER.get(command or "")
    for name in (owner,) if owner else _MODULES:
        importlib.import_module(f"loom.cli.{name}")
    from loom.cli._app import app

    if not owner:
        # Modules register commands as they import one another: `--help` lists them in the
        # order of _OWNER (status, changes, show, ... tasks) instead.
        rank = {name: i for i, name in enumerate(_OWNER)}
        app.registered_commands.sort(key=lambda c: rank.get(c.name or "", len(rank)))
        app.registered_groups.sort(key=lambda g: rank.get(g.name or "", len(rank)))
    return app


def __getattr__(name: str) -> Any:
    if name == "app":
        return _load(None)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _skip_httpx_command_line() -> None:
    """Keep httpx's own command line out of this process.

    ``import httpx`` also imports ``httpx._main`` (its ``httpx`` command: Click, Rich and
    Pygments, ~40 ms) whenever those are installed, and falls back to a stub when that import
    fails. The ``loom`` process never runs httpx's command line, so the module is marked
    absent here (a ``None`` entry in ``sys.modules`` makes its import raise ImportError).
    Only the ``loom`` process is affected: importing :mod:`loom.client` does not do this.
    """
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def main() -> None:
    """Console-script entry point."""
    args = sys.argv[1:]
    if args[:1] in (["--version"], ["-V"]):
        print(f"loom {version()}")
        return
    _skip_httpx_command_line()
    # A command's imports (Typer, httpx, Loom's modules) leave ~28,000 objects tracked by the
    # cyclic garbage collector, nearly all of them alive until the process exits. Collecting
    # while importing ran ~60 collections (~8 ms for `loom tasks start`) that freed a few
    # hundred objects, and the collections at exit walk them all again. So: no collections
    # while the command loads; then its objects move to the permanent generation
    # (`gc.freeze`, as CPython's documentation suggests for objects created at start-up) and
    # collection resumes for what the command itself allocates (`loom serve` and `loom mcp`
    # import their servers after this). `bench/cli.py`, `loom tasks start`: 115 ms median
    # wall, against 148-152 ms without this.
    gc.disable()
    try:
        command = _load(args[0] if args else None)
    finally:
        gc.freeze()
        gc.enable()
    command()
