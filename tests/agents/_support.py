"""MCP test harness: a real HTTP server with an injectable clock, ``loom mcp`` sessions driven
by the SDK's own client (stdio and streamable HTTP), and the small project they work on."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import uvicorn
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from _forkserver import launcher
from conftest import ADMIN, NO_CA, FakeClock, make_settings
from e2e.test_three_agents import CHANGES, make_tree
from loom.api.app import create_app
from loom.client import Client, import_tree

__all__ = [
    "CHANGES",
    "ClockedServer",
    "McpCall",
    "call",
    "clocked_server",
    "http_session",
    "seed",
    "stdio_session",
]


@dataclass
class ClockedServer:
    """A Loom server on a real loopback port: the app under uvicorn with a fake clock, or a
    ``loom serve`` process (``clock`` None)."""

    url: str
    clock: FakeClock | None

    def get(self, project: str, path: str, token: str = ADMIN, **params: Any) -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=30, trust_env=False, verify=NO_CA) as http:
            return http.get(
                f"/api/v1/projects/{project}{path}",
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            )

    def json(self, project: str, path: str, **params: Any) -> Any:
        response = self.get(project, path, **params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def lease(self, project: str, change_id: str) -> dict[str, Any] | None:
        response = self.get(project, f"/changes/{change_id}/lease")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def client(self, project: str, holder: str = "operator") -> Client:
        return Client(self.url, ADMIN, project, holder=holder, retries=0)


@contextmanager
def clocked_server(database_url: str, data_dir: Path, **overrides: Any) -> Iterator[ClockedServer]:
    """``create_app`` with a :class:`FakeClock`, served by uvicorn on 127.0.0.1, port 0."""
    clock = FakeClock()
    app = create_app(make_settings(database_url, data_dir, **overrides), clock=clock)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield ClockedServer(f"http://127.0.0.1:{port}", clock)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def seed(server_url: str, project: str, root: Path) -> None:
    """Import the e2e walkthrough's tree (a module, four ready changes, a base spec)."""
    source = make_tree(root / project.replace("/", "_") / ".ito")
    with Client(server_url, ADMIN, project, holder="operator", retries=0) as client:
        import_tree(client, source)


@dataclass
class McpCall:
    """A tool call's outcome: ``error`` (isError) and the JSON data it carried."""

    error: bool
    data: dict[str, Any]


async def call(session: ClientSession, tool: str, **arguments: Any) -> McpCall:
    result = await session.call_tool(tool, arguments)
    text = result.content[0].text  # type: ignore[union-attr]
    data = json.loads(text)
    assert result.structured_content == data
    return McpCall(bool(result.is_error), data)


def mcp_env(url: str, project: str, holder: str, home: Path, token: str = ADMIN) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "LOOM_URL": url,
        "LOOM_TOKEN": token,
        "LOOM_PROJECT": project,
        "LOOM_HOLDER": holder,
        "LOOM_CONFIG_HOME": str(home / "config"),
        "LOOM_STATE_DIR": str(home / "state"),
    }


# ``loom mcp`` started through a tiny launcher that records its pid, then execs (same pid),
# so a test can SIGKILL exactly that process.
_LAUNCH = (
    "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
    "os.execv(sys.executable, [sys.executable, '-m', 'loom', 'mcp'])"
)


@dataclass
class StdioProcess:
    pid_file: Path

    @property
    def pid(self) -> int:
        return int(self.pid_file.read_text())

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)


@asynccontextmanager
async def stdio_session(
    url: str, project: str, holder: str, home: Path, token: str = ADMIN
) -> AsyncIterator[tuple[ClientSession, StdioProcess]]:
    """A ``loom mcp`` subprocess and an initialised SDK client session on its stdio."""
    env = mcp_env(url, project, holder, home, token)
    pid_file = home / "mcp.pid"
    # A child of the test fork server, which has the MCP SDK imported already (tests/
    # _forkserver.py); with LOOM_TEST_FORKSERVER=0, a new interpreter.
    command = launcher(["mcp"], pid_file) or [sys.executable, "-c", _LAUNCH, str(pid_file)]
    params = StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(home))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session, StdioProcess(pid_file)


@asynccontextmanager
async def http_session(
    url: str, project: str, token: str = ADMIN, holder: str | None = None
) -> AsyncIterator[ClientSession]:
    """An SDK client session on the server's streamable HTTP endpoint of ``project``."""
    headers = {"Authorization": f"Bearer {token}"}
    if holder is not None:
        headers["X-Loom-Holder"] = holder
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        streamable_http_client(f"{url}/api/v1/projects/{project}/mcp", http_client=http) as (
            read,
            write,
        ),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session
