"""The ``loom`` command starts light: ``--version`` imports no CLI framework, and a command
imports only the module that registers it (agents run ``loom`` dozens of times per task)."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import loom
from loom.cli import app

from ._support import Loom, make_tree


def _python(code: str, *argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=None if env is None else {**os.environ, **env},
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


# Everything a task write by the `loom` command must not import (it did before: pydantic via
# the client's models, Click, Rich and Pygments via httpx's own command line, tomllib, the
# sync helpers); each would cost it start-up time.
_HEAVY = ("pydantic", "rich", "click", "pygments", "mcp", "tomllib", "loom.models", "loom.tree")
_HEAVY_AFTER_MAIN = f"""
import sys
import loom.cli
try:
    loom.cli.main()
except SystemExit:
    pass
print(sorted(m for m in sys.modules if m.partition(".")[0] in {_HEAVY!r} or m in {_HEAVY!r}))
"""


def test_version_imports_no_heavy_library() -> None:
    loaded = ast.literal_eval(_python(_HEAVY_AFTER_MAIN, "--version").splitlines()[-1])
    assert loaded == []


@pytest.mark.slow
def test_a_task_write_imports_no_models_and_no_rich(loom: Loom, tmp_path: Path) -> None:
    loom("import", str(make_tree(tmp_path / "src")))
    change = "001-01_alpha"
    loom("claim", change)  # remembered: the write below sends its fencing token
    out = _python(_HEAVY_AFTER_MAIN, "tasks", "start", change, "1.1", env=loom.env)
    lines = out.splitlines()
    assert lines[0] == f"started {change} task 1.1: First task [in-progress] (revision 2)"
    assert ast.literal_eval(lines[-1]) == []
    # --json still shows the whole model, with the fields the server left out as null.
    started = loom.json("tasks", "complete", change, "1.1")
    assert started["task"]["status"] == "complete" and "verify" in started["task"]


def test_the_client_package_loads_its_names_on_first_use() -> None:
    code = (
        "import sys, loom.client\n"
        "before = 'loom.client._sync' in sys.modules or 'pydantic' in sys.modules\n"
        "loom.client.local_copy, loom.client.TaskItem\n"
        "print(before, 'loom.client._sync' in sys.modules, 'pydantic' in sys.modules)"
    )
    assert _python(code).split() == ["False", "True", "True"]
    import loom.client as client

    assert sorted(client._OWNER) == sorted(client.__all__)


def test_a_command_loads_only_its_own_module() -> None:
    loaded = _python(_MODULES_AFTER_MAIN, "tasks", "--help")
    assert "'loom.cli.tasks'" in loaded
    for other in ("loom.cli.server", "loom.cli.sync", "loom.cli.events", "loom.settings"):
        assert f"'{other}'" not in loaded, other


# The command runs with garbage collection on (a long-running command, `loom mcp` or
# `loom serve`, must collect what it allocates), and what its loading created is frozen.
_GC_WHEN_THE_COMMAND_RUNS = """
import gc
import sys
import loom.cli
loaded = loom.cli._load
seen = {}
def load(command):
    app = loaded(command)
    def run():
        seen.update(enabled=gc.isenabled(), frozen=gc.get_freeze_count())
    return run
loom.cli._load = load
loom.cli.main()
print(seen["enabled"], seen["frozen"] > 10_000)
"""


def test_a_command_runs_with_garbage_collection_on_and_its_imports_frozen() -> None:
    assert _python(_GC_WHEN_THE_COMMAND_RUNS, "tasks", "start") == "True True\n"


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
