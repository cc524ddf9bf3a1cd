"""``loom.mcp``: Loom's tools for coding agents over the Model Context Protocol.

Two transports share one implementation (the tool logic in ``_session`` over
:class:`loom.client.Client`, the MCP surface in ``_server``):

- :mod:`loom.mcp.stdio` — ``loom mcp``, the command an agent host starts; leases follow the
  session (heartbeats at a third of the TTL, released when the session ends);
- :mod:`loom.mcp.http` — the server's streamable HTTP endpoint
  ``/api/v1/projects/{org}/{repo}/mcp`` (stateless); each call goes through the server's own
  HTTP routes in-process, with the caller's token, so auth, lease enforcement, idempotency
  and audit events are exactly those of the REST API.

Importing this package is cheap; the MCP SDK is imported by the two transport modules only.
"""

from __future__ import annotations

__all__: list[str] = []
