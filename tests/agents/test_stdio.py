"""``loom mcp`` as a subprocess, driven by the MCP SDK's own client, against a real server.

The server is the Loom app on a real loopback port with a fake clock, so lease expiry is
decided by advancing the clock, never by sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import ADMIN, LiveServer

from ._support import CHANGES, ClockedServer, call, clocked_server, seed, stdio_session

pytestmark = pytest.mark.slow

PROJECT = "acme/widgets"
FIRST, SECOND = sorted(CHANGES)[:2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ClockedServer]:
    # lease_ttl_min=1: short TTLs make the session's heartbeats (at TTL/3) come quickly.
    with clocked_server(f"sqlite:///{tmp_path / 'loom.db'}", tmp_path, lease_ttl_min=1) as srv:
        seed(srv.url, PROJECT, tmp_path / "trees")
        yield srv


@pytest.fixture
def real(live_server: LiveServer, tmp_path: Path) -> ClockedServer:
    """A real ``loom serve`` process (its own clock: for tests that need no expiry)."""
    seed(live_server.url, PROJECT, tmp_path / "trees")
    return ClockedServer(live_server.url, clock=None)


def run(fn: Any) -> Any:
    return anyio.run(fn)


def test_tool_list_over_stdio(server: ClockedServer, tmp_path: Path) -> None:
    async def main() -> list[Any]:
        async with stdio_session(server.url, PROJECT, "agent-1", tmp_path / "a") as (s, _):
            tools = (await s.list_tools()).tools
            templates = (await s.list_resource_templates()).resource_templates
            prompts = (await s.list_prompts()).prompts
            return [tools, templates, prompts]

    tools, templates, prompts = run(main)
    assert [t.name for t in tools] == [
        "next_change",
        "claim_change",
        "release_change",
        "list_changes",
        "show_change",
        "update_task",
        "add_task",
        "save_change",
        "archive_change",
        "recent_events",
    ]
    listing = json.dumps(
        [
            {"name": t.name, "description": t.description, "inputSchema": t.input_schema}
            for t in tools
        ]
    )
    assert len(listing) < 8000, len(listing)
    # stdio: the session is the holder; no tool takes one.
    assert all("holder" not in t.input_schema["properties"] for t in tools)
    assert sorted(t.uri_template for t in templates) == sorted(
        f"loom://{{org}}/{{repo}}/changes/{{change_id}}/{name}"
        for name in ("proposal.md", "design.md", "tasks.md", "specs/{capability}/spec.md")
    )
    assert [p.name for p in prompts] == ["work_on_next_change"]


def test_two_sessions_get_different_changes_and_normal_end_releases(
    real: ClockedServer, tmp_path: Path
) -> None:
    server = real
    got: dict[str, str] = {}

    async def agent(holder: str, ready: anyio.Event, go: anyio.Event) -> None:
        async with stdio_session(server.url, PROJECT, holder, tmp_path / holder) as (s, _):
            ready.set()
            await go.wait()
            result = await call(s, "next_change", ttl_seconds=60)
            assert not result.error, result.data
            got[holder] = result.data["change_id"]
            lease = server.lease(PROJECT, got[holder])
            assert lease is not None and lease["holder"] == holder

    async def main() -> None:
        go = anyio.Event()
        ready = [anyio.Event(), anyio.Event()]
        async with anyio.create_task_group() as tg:
            tg.start_soon(agent, "agent-1", ready[0], go)
            tg.start_soon(agent, "agent-2", ready[1], go)
            for event in ready:
                await event.wait()
            go.set()

    run(main)
    assert sorted(got.values()) == [FIRST, SECOND]
    # Both sessions ended normally: their leases are released, not left to expire.
    assert server.lease(PROJECT, FIRST) is None
    assert server.lease(PROJECT, SECOND) is None


def test_next_change_returns_lease_artifacts_and_tasks(
    server: ClockedServer, tmp_path: Path
) -> None:
    async def main() -> Any:
        async with stdio_session(server.url, PROJECT, "agent-1", tmp_path / "a") as (s, _):
            return await call(s, "next_change", ttl_seconds=120)

    result = run(main)
    assert not result.error
    data = result.data
    assert data["change_id"] == FIRST
    assert data["lease"]["holder"] == "agent-1"
    assert data["lease"]["fencing_token"] >= 1
    assert data["proposal"].startswith(f"# Proposal: {FIRST}")
    cap, requirement = CHANGES[FIRST]
    assert f"### Requirement: {requirement}" in data["specs"][cap]
    assert data["tasks"]["ready"] == ["1.1"]
    assert data["tasks"]["blocked"] == {"1.2": [data["tasks"]["blocked"]["1.2"][0]]}
    assert [t["id"] for t in data["tasks"]["items"]] == ["1.1", "1.2"]
    assert data["revision"] == "1"


def test_sigkilled_session_leaves_its_lease_to_expire(
    server: ClockedServer, tmp_path: Path
) -> None:
    async def taken_then_killed() -> str:
        async with stdio_session(server.url, PROJECT, "doomed", tmp_path / "d") as (s, proc):
            result = await call(s, "next_change", ttl_seconds=10)
            proc.kill()
            return str(result.data["change_id"])

    change_id = run(taken_then_killed)
    # Killed: nothing released the lease; it is still held until the TTL runs out.
    lease = server.lease(PROJECT, change_id)
    assert lease is not None and lease["holder"] == "doomed"

    async def next_for(holder: str) -> Any:
        async with stdio_session(server.url, PROJECT, holder, tmp_path / holder) as (s, _):
            return (await call(s, "next_change", changes=[change_id])).data

    assert run(lambda: next_for("agent-2")) == {"change_id": None, "message": "no work available"}
    server.clock.advance(11)
    offered = run(lambda: next_for("agent-3"))
    assert offered["change_id"] == change_id
    assert offered["lease"]["holder"] == "agent-3"


def test_the_session_heartbeats_its_leases(server: ClockedServer, tmp_path: Path) -> None:
    async def main() -> None:
        async with stdio_session(server.url, PROJECT, "agent-1", tmp_path / "a") as (s, _):
            taken = await call(s, "next_change", ttl_seconds=3)  # heartbeat every second
            change_id = taken.data["change_id"]
            first = server.lease(PROJECT, change_id)
            assert first is not None
            server.clock.advance(2)
            # Wait for a heartbeat: it moves the expiry to (fake) now + 3 s.
            with anyio.fail_after(30):
                while True:
                    lease = server.lease(PROJECT, change_id)
                    assert lease is not None
                    if lease["expires_at"] != first["expires_at"]:
                        break
                    await anyio.sleep(0.1)
            server.clock.advance(2)  # past the first expiry: still held, thanks to the renewal
            held = server.lease(PROJECT, change_id)
            assert held is not None and held["holder"] == "agent-1"
            assert held["fencing_token"] == first["fencing_token"]

    run(main)


@pytest.mark.parametrize("how", ["force-released", "taken over after expiry"])
def test_a_lost_lease_is_said_plainly_and_nothing_is_written(
    server: ClockedServer, tmp_path: Path, how: str
) -> None:
    async def main() -> Any:
        async with stdio_session(server.url, PROJECT, "agent-1", tmp_path / "a") as (s, _):
            # TTL 600: the session's next heartbeat is 200 s away.
            taken = await call(s, "next_change", ttl_seconds=600)
            change_id = taken.data["change_id"]
            if how == "force-released":
                with server.client(PROJECT) as admin:
                    admin.release(change_id, force=True)
            else:
                server.clock.advance(601)
                with server.client(PROJECT, "agent-2") as other:
                    other.claim(change_id, ttl_seconds=600)
            before = server.json(PROJECT, f"/changes/{change_id}/sync")
            writes = [
                await call(s, "update_task", change_id=change_id, task_id="1.1", action="start"),
                await call(s, "add_task", change_id=change_id, title="More"),
            ]
            after = server.json(PROJECT, f"/changes/{change_id}/sync")
            shown = await call(s, "show_change", change_id=change_id)
            return change_id, writes, before, after, shown

    change_id, writes, before, after, shown = run(main)
    for write in writes:
        assert write.error
        assert write.data["kind"] == "lease_lost"
        assert f"your lease on {change_id} was lost" in write.data["error"]
        assert "nothing was written" in write.data["error"]
        if how != "force-released":
            assert "taken by 'agent-2'" in write.data["error"]
    assert after == before
    assert not shown.error and "was lost" in shown.data["warning"]


def test_a_stale_save_is_a_tool_result_naming_what_changed(
    real: ClockedServer, tmp_path: Path
) -> None:
    server = real

    async def main() -> Any:
        async with stdio_session(server.url, PROJECT, "agent-1", tmp_path / "a") as (s, _):
            shown = await call(s, "show_change", change_id="1-2")
            assert shown.data["change_id"] == SECOND
            # Somebody else edits the proposal meanwhile (the change is not leased).
            with server.client(PROJECT, "someone-else") as other:
                bundle = other.pull(SECOND)
                other.push(
                    SECOND,
                    revision=bundle.revision,
                    proposal="# Theirs\n",
                    design=bundle.design,
                    tasks=bundle.tasks,
                    specs=bundle.specs,
                )
            stale = await call(s, "save_change", change_id=SECOND, design="# My design\n")
            reread = await call(s, "show_change", change_id=SECOND)
            saved = await call(s, "save_change", change_id=SECOND, design="# My design\n")
            return stale, reread, saved

    stale, reread, saved = run(main)
    assert stale.error
    assert stale.data["code"] == "conflict"
    assert stale.data["kind"] == "revision_conflict"
    assert stale.data["server_revision"] == "2"
    assert stale.data["changed"] == ["proposal"]
    assert "nothing was saved" in stale.data["error"]
    assert reread.data["revision"] == "2"
    assert not saved.error and saved.data["revision"] == "3"
    bundle = server.json(PROJECT, f"/changes/{SECOND}/sync")
    assert (bundle["proposal"], bundle["design"]) == ("# Theirs\n", "# My design\n")


def test_errors_are_tool_results_with_loom_kind(server: ClockedServer, tmp_path: Path) -> None:
    async def main() -> Any:
        async with stdio_session(server.url, PROJECT, "agent-1", tmp_path / "a") as (s, _):
            missing = await call(s, "show_change", change_id="999-99_nope")
            blocked = await call(s, "update_task", change_id=FIRST, task_id="1.2", action="start")
            nothing = await call(s, "save_change", change_id=FIRST)
            bad = await call(s, "update_task", change_id=FIRST, task_id="1.1", action="bogus")
            short = await call(s, "claim_change", change_id=FIRST, ttl_seconds=0)
            return missing, blocked, nothing, bad, short

    missing, blocked, nothing, bad, short = run(main)
    # Arguments the schema refuses: still a tool result with Loom's envelope.
    for refused, field in ((bad, "action"), (short, "ttl_seconds")):
        assert refused.error
        assert (refused.data["code"], refused.data["kind"]) == ("bad_request", "invalid_arguments")
        assert field in refused.data["error"]
    assert missing.error and missing.data["code"] == "not_found"
    assert missing.data["kind"] == "change_not_found"
    assert blocked.error and blocked.data["code"] == "bad_request"
    assert nothing.error and nothing.data["kind"] == "nothing_to_save"


def test_resources_and_prompt(server: ClockedServer, tmp_path: Path) -> None:
    cap = CHANGES[FIRST][0]

    async def main() -> Any:
        async with stdio_session(server.url, PROJECT, "agent-1", tmp_path / "a") as (s, _):
            base = f"loom://{PROJECT}/changes/{FIRST}"
            proposal = await s.read_resource(f"{base}/proposal.md")
            tasks = await s.read_resource(f"{base}/tasks.md")
            delta = await s.read_resource(f"{base}/specs/{cap}/spec.md")
            prompt = await s.get_prompt("work_on_next_change", {})
            return proposal, tasks, delta, prompt

    proposal, tasks, delta, prompt = run(main)
    bundle = ClockedServer.json(server, PROJECT, f"/changes/{FIRST}/sync")
    assert proposal.contents[0].text == bundle["proposal"]
    assert tasks.contents[0].text == bundle["tasks"]
    assert delta.contents[0].text == dict(bundle["specs"])[cap]
    text = prompt.messages[0].content.text
    for step in ("next_change", "update_task", "save_change", "archive_change"):
        assert step in text


def test_admin_token_is_not_required(server: ClockedServer, tmp_path: Path) -> None:
    # A project token is enough for an agent: the session works with it.
    from conftest import project_token

    async def main() -> Any:
        token = project_token("acme", "widgets")
        async with stdio_session(server.url, PROJECT, "agent-1", tmp_path / "a", token) as (s, _):
            return await call(s, "list_changes")

    listed = run(main)
    assert not listed.error
    assert [c["id"] for c in listed.data["changes"]] == sorted(CHANGES)
    assert ADMIN not in json.dumps(listed.data)


def test_list_changes_and_recent_events(server: ClockedServer, tmp_path: Path) -> None:
    async def main() -> Any:
        async with stdio_session(server.url, PROJECT, "agent-1", tmp_path / "a") as (s, _):
            await call(s, "next_change", ttl_seconds=120)
            await call(s, "update_task", change_id=FIRST, task_id="1.1", action="start")
            listed = await call(s, "list_changes", status=["in-progress"])
            mine = await call(s, "recent_events", change_id="1-1", limit=2)
            everything = await call(s, "recent_events", limit=200)
            return listed, mine, everything

    listed, mine, everything = run(main)
    assert listed.data["changes"] == [
        {
            "id": FIRST,
            "title": FIRST.split("_", 1)[1],
            "status": "in-progress",
            "progress": "0/2",
            "holder": "agent-1",
        }
    ]
    all_events = server.json(PROJECT, "/events")
    ours = [e for e in all_events if FIRST in (e["entity_id"], e.get("scope"))]
    # The last one came after: the session's end released the lease.
    assert (ours[-1]["op"], ours[-1]["meta"]["holder"]) == ("release", "agent-1")
    assert [e["seq"] for e in mine.data["events"]] == [e["seq"] for e in ours[-3:-1]]
    assert [(e["op"], e["entity"]) for e in mine.data["events"]] == [
        ("allocate", "change"),
        ("status_change", "task"),
    ]
    assert [e["seq"] for e in everything.data["events"]] == [e["seq"] for e in all_events[:-1]]
