"""Bad arguments are usage errors (exit 2) caught before any request is sent.

The server URL points at a closed port: a command that got as far as sending a request
would exit 5 (unreachable), so exit 2 proves the argument was refused locally.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ._support import Loom


@pytest.fixture
def server(shared_server: Any) -> Any:
    """These tests need *a* server: one for the module, a project per test."""
    return shared_server


@pytest.fixture
def project(own_project: str) -> str:
    return own_project


BAD_IDS = ["a/b", "../x", "..", ".", "a\\b", "x\ny", "nul\x00"]
GOOD = "001-01_alpha"
# Every command that takes a CHANGE (and TASK) argument, with a placeholder for the bad id.
CHANGE_COMMANDS = [
    ["show", "{}"],
    ["pull", "{}"],
    ["push", "{}"],
    ["claim", "{}"],
    ["heartbeat", "{}"],
    ["release", "{}"],
    ["keepalive", "{}", "--", "true"],
    ["archive", "{}"],
    ["tasks", "status", "{}"],
    ["tasks", "next", "{}"],
    ["tasks", "raw", "{}"],
    ["tasks", "init", "{}"],
    ["tasks", "add", "{}", "a title"],
    ["tasks", "start", "{}", "1.1"],
    ["tasks", "complete", "{}", "1.1"],
    ["tasks", "shelve", "{}", "1.1"],
    ["tasks", "unshelve", "{}", "1.1"],
]
TASK_COMMANDS = ["start", "complete", "shelve", "unshelve"]


@pytest.fixture
def offline(base_env: dict[str, str]) -> Loom:
    return Loom(
        {**base_env, "LOOM_URL": "http://127.0.0.1:1", "LOOM_PROJECT": "a/b", "LOOM_RETRIES": "0"}
    )


def _fill(args: list[str], value: str) -> list[str]:
    return [value if a == "{}" else a for a in args]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("args", CHANGE_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_unsafe_change_ids_are_usage_errors_naming_the_id(
    offline: Loom, args: list[str], bad: str
) -> None:
    result = offline(*_fill(args, bad), code=2)
    assert f"invalid change id {bad!r}" in result.stderr
    assert "cannot reach" not in result.stderr


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("action", TASK_COMMANDS)
def test_unsafe_task_ids_are_usage_errors_naming_the_id(
    offline: Loom, action: str, bad: str
) -> None:
    result = offline("tasks", action, GOOD, bad, code=2)
    assert f"invalid task id {bad!r}" in result.stderr


def test_safe_ids_reach_the_server(offline: Loom) -> None:
    for args in (["show", "1-2"], ["show", GOOD], ["tasks", "start", GOOD, "1.1"]):
        offline(*args, code=5)


def test_bad_status_and_module_are_usage_errors(offline: Loom) -> None:
    result = offline("changes", "--status", "bogus", code=2)
    assert "--status" in result.stderr and "'bogus'" in result.stderr
    assert "in-progress" in result.stderr  # the allowed values are listed
    offline("changes", "--status", "ready,bogus", code=2)
    offline("changes", "--status", "ready", "--status", "bogus", code=2)
    offline("changes", "--status", "ready,in-progress", "--status", "paused", code=5)
    result = offline("changes", "--module", "abc", code=2)
    assert "--module" in result.stderr and "'abc'" in result.stderr
    offline("allocate", "--module", "1000", code=2)
    offline("changes", "--module", "1", code=5)
    offline("changes", "--module", "001.02", code=5)


@pytest.mark.parametrize("bad", ["notaurl", "ftp://h", "http://", "127.0.0.1:9010"])
def test_bad_server_url_is_a_usage_error(offline: Loom, bad: str) -> None:
    for args in (["changes"], ["show", GOOD], ["status"], ["claim", GOOD]):
        result = offline(*args, "--url", bad, code=2)
        assert "--url" in result.stderr and repr(bad) in result.stderr
    offline("changes", LOOM_URL=bad, code=2)  # from the environment


def test_bad_server_url_from_a_project_file_is_a_usage_error(base_env: dict[str, str]) -> None:
    (Path.cwd() / ".ito").mkdir()
    (Path.cwd() / ".ito" / "config.json").write_text(json.dumps({"backend": {"url": "notaurl"}}))
    result = Loom({**base_env, "LOOM_PROJECT": "a/b"})("changes", code=2)
    assert "config.json" in result.stderr and "invalid server URL" in result.stderr


def test_missing_project_names_the_cli_ways_to_set_it(base_env: dict[str, str]) -> None:
    loom = Loom({**base_env, "LOOM_URL": "http://127.0.0.1:1"})
    result = loom("changes", code=2)
    assert "--project ORG/REPO" in result.stderr and "LOOM_PROJECT" in result.stderr
    assert ".loom.toml" in result.stderr and ".ito/config.json" in result.stderr
    assert "project='" not in result.stderr  # no Python keyword arguments
    envelope = json.loads(loom("show", GOOD, "--json", code=2).stdout)
    assert envelope["kind"] == "project_missing" and "--project" in envelope["error"]


def test_the_cli_knows_the_servers_work_statuses() -> None:
    from loom.api import routes_changes
    from loom.cli._common import WORK_STATUSES
    from loom.domain import statuses

    # One definition, shared by the CLI's --status check and the server's ?status= check.
    assert WORK_STATUSES is statuses.WORK_STATUSES is routes_changes.WORK_STATUSES
