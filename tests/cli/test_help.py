"""Every command and subcommand has help text; agent commands show their env variables."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from loom.cli import app

ENV_VARS = (
    "LOOM_URL",
    "LOOM_TOKEN",
    "ITO_BACKEND_TOKEN",
    "LOOM_PROJECT",
    "LOOM_HOLDER",
    "LOOM_TIMEOUT",
    "LOOM_RETRIES",
)
AGENT_COMMANDS = {
    "status",
    "changes",
    "show",
    "claim",
    "heartbeat",
    "release",
    "allocate",
    "keepalive",
    "leases",
    "config",
    "pull",
    "push",
    "archive",
    "overlaps",
    "rebase",
    "import",
    "export",
    "events",
    "events forward",
    "config show",
    "tasks status",
    "tasks next",
    "tasks start",
    "tasks complete",
    "tasks shelve",
    "tasks unshelve",
    "tasks add",
    "tasks init",
    "tasks raw",
}


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(sub, (*path, name))


ALL = [(" ".join(p), c) for p, c in _walk(typer.main.get_command(app)) if p]


def test_all_agent_commands_exist() -> None:
    names = {name for name, _ in ALL}
    assert names >= AGENT_COMMANDS, AGENT_COMMANDS - names


@pytest.mark.parametrize(("name", "command"), ALL, ids=[n for n, _ in ALL])
def test_command_has_help(name: str, command: Any) -> None:
    assert (command.help or "").strip(), f"{name} has no help text"
    result = CliRunner().invoke(app, [*name.split(), "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    if name in AGENT_COMMANDS:
        for var in ENV_VARS:
            assert var in result.output, f"{name} --help does not mention {var}"


OPERATOR_DATA_COMMANDS = {"token project", "token init", "db check", "db upgrade"}


def test_data_commands_have_json() -> None:
    no_json = {"keepalive"}
    for name, command in ALL:
        if (name in AGENT_COMMANDS and name not in no_json) or name in OPERATOR_DATA_COMMANDS:
            opts = {o for p in command.params for o in getattr(p, "opts", [])}
            assert "--json" in opts, name


# The environment variables each operator command honours (CLI.md §1).
OPERATOR_ENV = {
    "serve": (
        "LOOM_BIND",
        "LOOM_PORT",
        "LOOM_DATA_DIR",
        "LOOM_DATABASE_URL",
        "LOOM_ADMIN_TOKENS",
        "ITO_BACKEND_ADMIN_TOKEN",
        "LOOM_TOKEN_SEED",
        "ITO_BACKEND_TOKEN_SEED",
        "LOOM_ALLOW",
        "LOOM_CONFIG",
    ),
    "token project": ("LOOM_DATA_DIR", "LOOM_TOKEN_SEED", "ITO_BACKEND_TOKEN_SEED", "LOOM_CONFIG"),
    "token init": ("LOOM_DATA_DIR",),
    "db check": ("LOOM_DATABASE_URL", "LOOM_DATA_DIR", "LOOM_CONFIG"),
    "db upgrade": ("LOOM_DATABASE_URL", "LOOM_DATA_DIR", "LOOM_CONFIG"),
}


@pytest.mark.parametrize(("name", "variables"), sorted(OPERATOR_ENV.items()))
def test_operator_help_shows_the_env_variables_it_honours(
    name: str, variables: tuple[str, ...]
) -> None:
    result = CliRunner().invoke(app, [*name.split(), "--help"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    for var in variables:
        assert var in result.output, f"{name} --help does not mention {var}"


def test_top_level_help_lists_the_agent_commands_first() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0
    listed = [
        line.split()[1]
        for line in result.stdout.splitlines()
        if line.startswith("│ ") and len(line.split()) > 2 and line.split()[1].isalpha()
    ]
    commands = [name for name in listed if name in {"status", "changes", "overlaps", "rebase"}]
    assert commands[:2] == ["status", "changes"], listed
