"""The agent workflow through MCP leaves the server exactly as the CLI walkthrough does.

Three projects on one server get the same tree. In ``acme/cli`` an agent runs the README
walkthrough with real ``loom`` processes (allocate, pull, start/complete each task with a
note, edit the proposal and push, archive); in ``acme/stdio`` the same agent does it through
``loom mcp`` (next_change, update_task, save_change, archive_change), and in ``acme/http``
through the server's MCP endpoint. The server clock is fixed, so the three exports and audit
logs must be equal, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession

from conftest import ADMIN
from e2e._support import LoomProcess, clean_env
from e2e.test_three_agents import note, signature

from ._support import CHANGES, ClockedServer, call, clocked_server, http_session, seed
from ._support import stdio_session as stdio

pytestmark = pytest.mark.slow

HOLDER = "agent-1"
CHANGE = sorted(CHANGES)[0]


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ClockedServer]:
    with clocked_server(database_url, tmp_path) as srv:
        for project in ("acme/cli", "acme/stdio", "acme/http"):
            seed(srv.url, project, tmp_path / "trees")
        yield srv


def _cli_walkthrough(server: ClockedServer, root: Path) -> None:
    (root / ".ito").mkdir(parents=True)
    env = clean_env(
        LOOM_URL=server.url,
        LOOM_TOKEN=ADMIN,
        LOOM_PROJECT="acme/cli",
        LOOM_HOLDER=HOLDER,
        LOOM_CONFIG_HOME=str(root / "config"),
        LOOM_STATE_DIR=str(root / "state"),
    )
    loom = LoomProcess(env, root)
    claim = loom.json("allocate", "--ttl", "300")["claim"]
    assert claim["change_id"] == CHANGE
    loom.json("pull", CHANGE)
    for task_id in ("1.1", "1.2"):
        loom.json("tasks", "start", CHANGE, task_id)
        loom.json("tasks", "complete", CHANGE, task_id, "--note", note(HOLDER, task_id))
    proposal = root / ".ito" / "changes" / CHANGE / "proposal.md"
    proposal.write_text(proposal.read_text() + signature(HOLDER))
    loom.json("push", CHANGE)
    loom.json("archive", CHANGE)


async def _mcp_walkthrough(s: ClientSession) -> None:
    taken = await call(s, "next_change", ttl_seconds=300)
    assert not taken.error, taken.data
    assert taken.data["change_id"] == CHANGE
    revision = taken.data["revision"]
    for task_id in ("1.1", "1.2"):
        started = await call(s, "update_task", change_id=CHANGE, task_id=task_id, action="start")
        assert not started.error, started.data
        done = await call(
            s,
            "update_task",
            change_id=CHANGE,
            task_id=task_id,
            action="complete",
            note=note(HOLDER, task_id),
        )
        assert not done.error, done.data
        revision = done.data["revision"]
    saved = await call(
        s,
        "save_change",
        change_id=CHANGE,
        proposal=taken.data["proposal"] + signature(HOLDER),
        revision=revision,
    )
    assert not saved.error, saved.data
    assert saved.data["saved"] == ["proposal"]
    archived = await call(s, "archive_change", change_id=CHANGE)
    assert not archived.error, archived.data
    assert (await call(s, "next_change", changes=[CHANGE])).data["change_id"] is None


def _state(server: ClockedServer, project: str) -> dict[str, Any]:
    events = server.json(project, "/events")
    for event in events:  # the import's summary event names its own project
        if event["entity"] == "project" and event["entity_id"] == project:
            event["entity_id"] = "<project>"
    return {"export": server.json(project, "/export"), "events": events}


def test_mcp_workflow_leaves_the_cli_walkthrough_state(
    server: ClockedServer, tmp_path: Path
) -> None:
    _cli_walkthrough(server, tmp_path / "cli")

    async def over_stdio() -> None:
        async with stdio(server.url, "acme/stdio", HOLDER, tmp_path / "stdio") as (s, _):
            await _mcp_walkthrough(s)

    async def over_http() -> None:
        async with http_session(server.url, "acme/http", holder=HOLDER) as s:
            await _mcp_walkthrough(s)

    anyio.run(over_stdio)
    anyio.run(over_http)

    cli = _state(server, "acme/cli")
    archived = [c for c in cli["export"]["changes"] if c["id"] == CHANGE]
    assert archived[0]["archived_at"] is not None
    assert archived[0]["proposal"].endswith(signature(HOLDER))
    assert [e["op"] for e in cli["events"] if e["entity"] == "task"] == ["status_change"] * 4
    assert _state(server, "acme/stdio") == cli
    assert _state(server, "acme/http") == cli
