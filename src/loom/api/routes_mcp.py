"""``/api/v1/projects/{org}/{repo}/mcp``: MCP over streamable HTTP (see :mod:`loom.mcp.http`).

The request first passes the same access check as every project route (path ids 400, token
401, project scope 403, with the JSON envelope), so a project token works for its own
project only. Then the SDK's transport answers it, with its Host/Origin (DNS-rebinding)
protection set from the server's bind address. The MCP SDK is imported on the first MCP
request, not at server start.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from loom.api import _bigjson as bigjson
from loom.api._bigjson import LARGE_BODY
from loom.api._scope import BODY_KEY
from loom.api.access import project_access
from loom.api.auth import parse_bearer
from loom.api.errors import error_response
from loom.errors import LoomError, Unauthorized, ValidationError
from loom.settings import Settings

if TYPE_CHECKING:
    from loom.mcp.http import McpHttp

__all__ = ["MCP_PATH", "mcp_route", "transport_security"]

MCP_PATH = "/api/v1/projects/{org}/{repo}/mcp"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_security(settings: Settings) -> tuple[list[str], list[str]]:
    """(allowed Host values, allowed Origin values) for the MCP endpoint.

    Always the loopback names; plus the bind host when it is a specific name or address.
    A wildcard bind (``0.0.0.0``, ``::``) cannot know the names clients use: the lists are
    then empty, which turns the Host/Origin check off (every request still needs a token).
    """
    bind = settings.bind.strip()
    if bind in ("", "0.0.0.0", "::", "[::]"):
        return [], []
    names = list(_LOOPBACK_NAMES)
    if not _is_loopback(bind):
        names.append(f"[{bind}]" if ":" in bind and not bind.startswith("[") else bind)
    hosts = [h for name in names for h in (name, f"{name}:*")]
    origins = [
        o for name in names for s in ("http", "https") for o in (f"{s}://{name}", f"{s}://{name}:*")
    ]
    return hosts, origins


class _Endpoint:
    """ASGI endpoint: access check, then the MCP transport (built on first use)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._mcp: McpHttp | None = None
        self._lock: anyio.Lock | None = None

    async def _transport(self, app: Any) -> McpHttp:
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if self._mcp is None:
                from loom.mcp.http import McpHttp

                hosts, origins = transport_security(self._settings)
                mcp = McpHttp(
                    app,
                    allowed_hosts=hosts,
                    allowed_origins=origins,
                    max_body_bytes=self._settings.max_body_bytes,
                )
                await app.state.tasks.start(mcp.run)
                self._mcp = mcp
        return self._mcp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            access = await project_access(request)
            token = parse_bearer(request.headers.get("authorization"))
            if token is None:  # project_access already refused this; never reached
                raise Unauthorized("Missing bearer token", kind="missing_token")
            raw = scope.get(BODY_KEY)
            if raw is not None and len(raw) > LARGE_BODY:
                await run_in_threadpool(_check_large_message, raw)
        except LoomError as err:
            await error_response(err)(scope, receive, send)
            return
        mcp = await self._transport(request.app)
        await mcp.handle(
            scope,
            receive,
            send,
            project=access.project.name,
            token=token,
            holder=access.actor.holder,
        )


MAX_MCP_VALUES = 10_000
"""JSON values an MCP message above 256 KiB may hold (its strings may be long)."""


def _check_large_message(raw: bytes) -> None:
    """The MCP SDK decodes a message in one C call on the event loop: cheap for a few long
    strings (artifact texts), ~100 ms for megabytes of small values. A large message is
    therefore decoded here first, on a worker thread in small steps, and refused unless it
    is valid JSON of at most :data:`MAX_MCP_VALUES` values (no tool takes more)."""
    try:
        message = bigjson.loads(raw)
    except (ValueError, RecursionError):
        raise ValidationError("malformed JSON body", kind="invalid_json") from None
    if bigjson.more_values_than(message, MAX_MCP_VALUES):
        raise ValidationError(
            f"an MCP message over {LARGE_BODY} bytes may hold at most {MAX_MCP_VALUES} JSON values",
            kind="mcp_message_too_complex",
        )


def mcp_route(settings: Settings) -> Route:
    """The MCP route (all methods; not part of the OpenAPI document)."""
    return Route(MCP_PATH, endpoint=_Endpoint(settings), include_in_schema=False)
