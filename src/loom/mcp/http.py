"""The server's MCP endpoint: the SDK's streamable HTTP transport, stateless, in-process.

Each MCP request is served by a fresh :class:`Session` whose :class:`loom.client.Client`
talks to this same server through :class:`Loopback` (an httpx transport that calls the ASGI
app directly, no socket): the tools run exactly the code the REST API runs — access checks
with the caller's own bearer token, lease enforcement with the caller's holder, idempotency
keys, audit events. One implementation of the tools serves ``loom mcp`` and this endpoint.

Stateless (no MCP session id, nothing kept between requests), so any worker of
``loom serve --workers N`` can answer any request. Heartbeats are the agent's job here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.from_thread
import httpx
from anyio.abc import TaskStatus
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from loom.client import Client
from loom.mcp._server import build_server
from loom.mcp._session import Session

__all__ = ["Binding", "Loopback", "McpHttp"]

_KEY = "loom.mcp.binding"
_BASE = "http://loom.loopback"


@dataclass(frozen=True)
class Binding:
    """Who is calling: the project of the endpoint, the caller's bearer token (already
    accepted by the access check) and the ``X-Loom-Holder`` header, if any."""

    project: str
    token: str
    holder: str | None

    def __repr__(self) -> str:
        return f"Binding(project={self.project!r}, holder={self.holder!r}, token='***')"


class Loopback(httpx.BaseTransport):
    """A synchronous httpx transport into an ASGI app running on this thread's event loop.

    Used from the SDK's worker threads (synchronous tools run there): each request hops
    back to the loop with :func:`anyio.from_thread.run` and goes through the whole app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        status, headers, content = anyio.from_thread.run(
            self._send, request.method, str(request.url), request.headers.raw, body
        )
        return httpx.Response(status, headers=headers, content=content, request=request)

    async def _send(
        self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        request = httpx.Request(method, url, headers=headers, content=body)
        response = await self._asgi.handle_async_request(request)
        content = await response.aread()
        return response.status_code, list(response.headers.raw), content


class McpHttp:
    """The MCP server and its stateless streamable-HTTP session manager for one app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Sequence[str],
        allowed_origins: Sequence[str],
        max_body_bytes: int,
    ) -> None:
        self._app = app
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=bool(allowed_hosts),
            allowed_hosts=list(allowed_hosts),
            allowed_origins=list(allowed_origins),
        )
        self.server = build_server(self._session, http=True)
        self.server.streamable_http_app(
            stateless_http=True,
            json_response=True,
            transport_security=security,
            max_request_body_size=max_body_bytes,
        )
        self.manager = self.server.session_manager

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the session manager until cancelled (a task of the app's lifespan)."""
        async with self.manager.run():
            task_status.started()
            await anyio.sleep_forever()

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        project: str,
        token: str,
        holder: str | None,
    ) -> None:
        """Serve one MCP request of a caller the access check accepted."""
        scope[_KEY] = Binding(project, token, holder)
        await self.manager.handle_request(scope, receive, send)

    @contextmanager
    def _session(self, ctx: Any, holder: str | None) -> Iterator[Session]:
        binding: Binding = ctx.request_context.request.scope[_KEY]
        client = Client(
            _BASE,
            binding.token,
            binding.project,
            holder=binding.holder or holder,
            transport=Loopback(self._app),
            retries=0,
        )
        try:
            yield Session(client, keep_alive=False)
        finally:
            client.close()
