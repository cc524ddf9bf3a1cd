"""``loom mcp``: Loom's tools for an agent host, over MCP on stdin/stdout."""

from __future__ import annotations

from loom.cli._app import app
from loom.cli._common import Ctx, agent_command
from loom.errors import ValidationError

__all__: list[str] = []


@agent_command(app, "mcp", data=False)
def mcp(cx: Ctx) -> None:
    """Serve Loom's tools to an agent host over MCP (stdio), e.g. `claude mcp add loom -- loom mcp`.

    Tools: next_change, claim_change, release_change, list_changes, show_change, update_task,
    add_task, save_change, archive_change, recent_events. Leases taken in the session are
    renewed at a third of their TTL and released when the host ends the session; if the
    process dies they expire. Configuration as for every command (flags, LOOM_*, .ito/config.json,
    .loom.toml, user config). See docs/agents.md.
    """
    client = cx.client
    if not client.project:
        raise ValidationError("no project configured", kind="project_missing")
    from loom.mcp.stdio import run_stdio

    run_stdio(client)
