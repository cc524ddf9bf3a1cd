"""``loom mcp``: an MCP server over stdio whose leases follow the agent's session."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import anyio

from loom.client import Client
from loom.mcp._server import build_server
from loom.mcp._session import Session

__all__ = ["run_stdio"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_stdio(client: Client) -> None:
    """Serve the tools on stdin/stdout until the host closes stdin (or SIGTERM/SIGINT).

    Leases taken in the session are heartbeated at a third of their TTL while it runs and
    released when it ends normally; if the process is killed they simply expire.
    """
    session = Session(client, keep_alive=True)

    @contextmanager
    def scope(ctx: Any, holder: str | None) -> Iterator[Session]:
        yield session

    server = build_server(scope, http=False)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        anyio.run(server.run_stdio_async)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        session.close()
