"""The server's MCP endpoint (streamable HTTP, stateless) with the SDK's client: auth through
the project access path, Host/Origin protection, holders, ``--workers``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from conftest import ADMIN, NO_CA, LiveServer, project_token, start_server

from ._support import CHANGES, ClockedServer, call, clocked_server, http_session, seed

pytestmark = pytest.mark.slow

PROJECT = "acme/widgets"
MCP = f"/api/v1/projects/{PROJECT}/mcp"
FIRST, SECOND = sorted(CHANGES)[:2]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ClockedServer]:
    with clocked_server(f"sqlite:///{tmp_path / 'loom.db'}", tmp_path) as srv:
        seed(srv.url, PROJECT, tmp_path / "trees")
        yield srv


def _post(url: str, path: str, token: str | None, **headers: str) -> httpx.Response:
    sent = {**ACCEPT, **headers}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    with httpx.Client(base_url=url, timeout=30, trust_env=False, verify=NO_CA) as http:
        return http.post(path, json=INITIALIZE, headers=sent)


def test_a_project_token_works_only_for_its_own_project(server: ClockedServer) -> None:
    own = project_token("acme", "widgets")
    ok = _post(server.url, MCP, own)
    assert ok.status_code == 200, ok.text
    assert ok.json()["result"]["serverInfo"]["name"] == "loom"

    other = _post(server.url, "/api/v1/projects/acme/other/mcp", own)
    assert other.status_code == 403
    assert (other.json()["code"], other.json()["kind"]) == ("forbidden", "forbidden")

    missing = _post(server.url, MCP, None)
    assert (missing.status_code, missing.json()["code"]) == (401, "unauthorized")
    wrong = _post(server.url, MCP, "not-a-token")
    assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthorized")
    bad_path = _post(server.url, "/api/v1/projects/acme/bad%20repo/mcp", own)
    assert (bad_path.status_code, bad_path.json()["kind"]) == (400, "invalid_id")

    async def main() -> Any:
        async with http_session(server.url, PROJECT, own, holder="agent-1") as s:
            return await call(s, "list_changes")

    listed = anyio.run(main)
    assert [c["id"] for c in listed.data["changes"]] == sorted(CHANGES)


def test_host_and_origin_are_checked(server: ClockedServer) -> None:
    assert _post(server.url, MCP, ADMIN, Host="evil.example").status_code == 421
    assert _post(server.url, MCP, ADMIN, Origin="http://evil.example").status_code == 403
    host = server.url.removeprefix("http://")
    allowed = _post(server.url, MCP, ADMIN, Origin=f"http://{host}")
    assert allowed.status_code == 200, allowed.text


def test_leases_follow_the_holder_header_or_argument(server: ClockedServer) -> None:
    async def main() -> list[Any]:
        out = []
        async with http_session(server.url, PROJECT) as s:  # no X-Loom-Holder
            out.append(await call(s, "next_change"))
            out.append(await call(s, "next_change", holder="arg-holder", ttl_seconds=60))
        async with http_session(server.url, PROJECT, holder="header-holder") as s:
            out.append(await call(s, "next_change", holder="ignored", ttl_seconds=60))
            out.append(await call(s, "save_change", change_id=SECOND, proposal="# x\n"))
        return out

    no_holder, by_arg, by_header, no_revision = anyio.run(main)
    assert no_holder.error and no_holder.data["kind"] == "holder_missing"
    assert (by_arg.data["change_id"], by_arg.data["lease"]["holder"]) == (FIRST, "arg-holder")
    assert by_arg.data["lease"]["note"].startswith("renew with claim_change")
    assert (by_header.data["change_id"], by_header.data["lease"]["holder"]) == (
        SECOND,
        "header-holder",
    )
    # Stateless: no session memory of the revision read; it must be passed.
    assert no_revision.error and no_revision.data["kind"] == "revision_required"


def test_writes_are_enforced_for_the_lease_holder(server: ClockedServer) -> None:
    async def main() -> list[Any]:
        async with http_session(server.url, PROJECT, holder="owner") as s:
            taken = await call(s, "claim_change", change_id=FIRST, ttl_seconds=60)
        async with http_session(server.url, PROJECT, holder="intruder") as s:
            refused = await call(s, "update_task", change_id=FIRST, task_id="1.1", action="start")
            stolen = await call(s, "claim_change", change_id=FIRST)
        return [taken, refused, stolen]

    taken, refused, stolen = anyio.run(main)
    assert not taken.error
    assert refused.error and refused.data["kind"] == "lease_conflict"
    assert refused.data["holder"] == "owner"
    assert stolen.error and stolen.data["kind"] == "lease_conflict"


def test_concurrent_http_sessions_get_different_changes(server: ClockedServer) -> None:
    got: list[str] = []

    async def agent(holder: str) -> None:
        async with http_session(server.url, PROJECT, holder=holder) as s:
            result = await call(s, "next_change", ttl_seconds=60)
            got.append(result.data["change_id"])

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(agent, f"agent-{n}")

    anyio.run(main)
    assert sorted(got) == sorted(CHANGES)[:3]


@pytest.mark.postgres
def test_the_endpoint_works_with_several_workers(tmp_path: Path, pg_url: str) -> None:
    # Several processes need PostgreSQL (`serve` refuses --workers > 1 on SQLite).
    live: LiveServer = start_server(tmp_path / "server", pg_url, "--workers", "2")
    try:
        seed(live.url, PROJECT, tmp_path / "trees")
        got: list[str] = []

        async def agent(holder: str) -> None:
            # Several connections and requests: any worker may answer any of them.
            for _ in range(2):
                async with http_session(live.url, PROJECT, holder=holder) as s:
                    listed = await call(s, "list_changes")
                    assert not listed.error
            async with http_session(live.url, PROJECT, holder=holder) as s:
                result = await call(s, "next_change", ttl_seconds=60)
                assert not result.error, result.data
                got.append(result.data["change_id"])
                renewed = await call(s, "claim_change", change_id=result.data["change_id"])
                assert not renewed.error

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                for n in range(4):
                    tg.start_soon(agent, f"agent-{n}")

        anyio.run(main)
        assert sorted(got) == sorted(CHANGES)
    finally:
        live.stop()


def test_the_mcp_sdk_is_not_imported_by_the_cli_or_at_server_start(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "import loom.cli\n"
        "from loom.api.app import create_app\n"
        "from loom.settings import Settings\n"
        f"create_app(Settings(data_dir=Path({str(tmp_path)!r}), database_url='sqlite://'))\n"
        "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith('mcp.')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout.replace("'", '"')) == []


def test_tool_list_over_http_is_small_and_takes_a_holder(server: ClockedServer) -> None:
    async def main() -> Any:
        async with http_session(server.url, PROJECT) as s:
            return (await s.list_tools()).tools

    tools = anyio.run(main)
    listing = json.dumps(
        [
            {"name": t.name, "description": t.description, "inputSchema": t.input_schema}
            for t in tools
        ]
    )
    assert len(listing) < 8000, len(listing)
    takes_holder = sorted(t.name for t in tools if "holder" in t.input_schema["properties"])
    assert takes_holder == sorted(
        [
            "next_change",
            "claim_change",
            "release_change",
            "update_task",
            "add_task",
            "save_change",
            "archive_change",
        ]
    )
    assert all("\n" not in (t.description or "") for t in tools)


def test_a_large_mcp_message_is_checked_off_the_event_loop(server: ClockedServer) -> None:
    """The SDK decodes a message in one C call on the event loop: megabytes of small values
    are refused (decoded first on a worker thread, in steps); long strings still pass."""
    own = {**ACCEPT, "Authorization": f"Bearer {project_token('acme', 'widgets')}"}
    many = {**INITIALIZE, "params": {**INITIALIZE["params"], "pad": list(range(200_000))}}
    long = {**INITIALIZE, "params": {**INITIALIZE["params"], "pad": "x" * 2_000_000}}
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False, verify=NO_CA) as http:
        refused = http.post(MCP, json=many, headers=own)
        assert refused.status_code == 400, refused.text
        assert refused.json()["kind"] == "mcp_message_too_complex"
        broken = http.post(MCP, content=json.dumps(long).encode()[:-1], headers=own)
        assert (broken.status_code, broken.json()["kind"]) == (400, "invalid_json")
        served = http.post(MCP, json=long, headers=own)
        assert served.status_code == 200, served.text
        assert served.json()["result"]["serverInfo"]["name"] == "loom"
