"""The ``loom`` command starts light: ``--version`` imports no CLI framework, and a command
imports only the module that registers it (agents run ``loom`` dozens of times per task)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from typer.testing import CliRunner

import loom
from loom.cli import app


def _python(code: str, *argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


_MODULES_AFTER_MAIN = """
import sys
import loom.cli
try:
    loom.cli.main()
except SystemExit:
    pass
print(sorted(m for m in sys.modules if m.split(".")[0] in ("loom", "typer", "httpx")))
"""


def test_version_is_the_installed_distribution_version() -> None:
    assert loom.__version__ == importlib.metadata.version("ito-loom")
    out = _python("import sys; sys.argv[0] = 'loom'; import loom.cli; loom.cli.main()", "--version")
    assert out == f"loom {loom.__version__}\n"


def test_version_imports_neither_typer_nor_the_client() -> None:
    loaded = _python(_MODULES_AFTER_MAIN, "--version")
    assert "'typer'" not in loaded and "'httpx'" not in loaded and "loom.client" not in loaded


def test_a_command_loads_only_its_own_module() -> None:
    loaded = _python(_MODULES_AFTER_MAIN, "tasks", "--help")
    assert "'loom.cli.tasks'" in loaded
    for other in ("loom.cli.server", "loom.cli.sync", "loom.cli.events", "loom.settings"):
        assert f"'{other}'" not in loaded, other


def test_serve_does_not_load_the_agent_commands() -> None:
    loaded = _python(_MODULES_AFTER_MAIN, "serve", "--help")
    assert "'loom.cli.server'" in loaded
    assert "'loom.cli.tasks'" not in loaded and "'loom.cli.sync'" not in loaded


def test_help_and_unknown_commands_still_list_every_command() -> None:
    listed = _python(_MODULES_AFTER_MAIN, "no-such-command")
    for module in ("changes", "config", "events", "leases", "server", "sync", "tasks"):
        assert f"'loom.cli.{module}'" in listed


def test_version_option_through_the_typer_app() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"loom {loom.__version__}\n"


def test_every_command_module_is_loaded_for_help() -> None:
    """A command module missing from the loader's list would silently lose its commands."""
    import pkgutil

    import loom.cli as cli

    modules = {m.name for m in pkgutil.iter_modules(cli.__path__) if not m.name.startswith("_")}
    assert modules == set(cli._MODULES)
    assert set(cli._OWNER.values()) <= modules
