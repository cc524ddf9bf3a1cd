"""The MCP face of a :class:`Session`: tools, resources and the prompt, on the SDK's MCPServer.

One builder for both transports. ``http=True`` adds an optional ``holder`` argument to the
tools that take or write leases (the HTTP endpoint has no session of its own; the
``X-Loom-Holder`` header, when sent, wins). Every Loom error becomes a tool result with
``isError`` and Loom's envelope (``error``, ``code``, ``kind``, details) — never a protocol
error or a traceback.
"""

# No `from __future__ import annotations`: the SDK reads the tools' annotations at runtime,
# and some are built from local values (the HTTP and stdio variants differ).

import inspect
import json
import logging
import typing
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated, Any, Literal

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from loom import __version__
from loom.client import LoomError
from loom.mcp._session import Session

__all__ = ["TOOL_NAMES", "SessionScope", "build_server"]

_log = logging.getLogger("loom.mcp")

SessionScope = Callable[[Context[Any, Any], str | None], AbstractContextManager[Session]]
"""Gives the session serving one call (``holder``: the tool's argument, HTTP only)."""

TOOL_NAMES = (
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
)

ChangeId = Annotated[
    str, Field(min_length=1, max_length=128, description="Change id (short forms like 1-2 ok)")
]
TaskId = Annotated[str, Field(min_length=1, max_length=64, description="Task id, e.g. 1.2")]
OptionalChangeId = Annotated[
    str | None, Field(min_length=1, max_length=128, description="Only this change")
]
Ttl = Annotated[
    int | None, Field(ge=1, le=86400, description="Lease TTL in seconds (default: server's)")
]
Holder = Annotated[
    str | None,
    Field(min_length=1, max_length=200, description="Lease holder if no X-Loom-Holder header"),
]
Module = Annotated[
    str | None, Field(pattern=r"^\d{1,3}(\.\d{1,2})?$", description="Only module NNN[.SS]")
]
Markdown = Annotated[str | None, Field(description='New full text; "" deletes it')]

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

INSTRUCTIONS = (
    "Loom coordinates agents on one repository's Ito changes. Workflow: next_change (take "
    "work) -> read its proposal/design/tasks/specs -> update_task start/complete as you go -> "
    "save_change edited artifacts -> archive_change when every task is done. Only work on a "
    "change you hold; if a tool says your lease was lost, stop working on that change."
)

PROMPT = """Work on the next available change in this Loom project{scope}.

1. Call `next_change`{args}. If it says "no work available", stop and report that.
2. Read what it returns: the proposal (why), the design (how), the spec deltas (what must be
   true afterwards) and the tasks, with `ready` (may start now) and `blocked` (waiting).
3. For each ready task: `update_task` action=start, do the work in the repository, then
   `update_task` action=complete with a short note. Use action=shelve with a reason for a task
   you cannot do; `add_task` for work you discover.
4. When you change the proposal, design, tasks.md or a spec delta, send only what changed
   with `save_change` (it builds on the revision you last read; on a conflict, `show_change`,
   merge, and save again).
5. When every task is complete, `archive_change`. Then take the next change (step 1).

Your lease on the change {lease}. If any tool reports that your lease was lost, stop working
on that change: someone else may hold it now.
"""


def _ok(data: dict[str, Any]) -> CallToolResult:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=data)


def _error(envelope: dict[str, Any]) -> CallToolResult:
    text = json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), default=str)
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=envelope, is_error=True
    )


def _run(call: Callable[[], dict[str, Any]]) -> CallToolResult:
    try:
        return _ok(call())
    except LoomError as error:
        return _error(error.to_envelope())
    except Exception:
        _log.exception("tool failed")
        return _error(
            {
                "error": "the Loom MCP server failed to run this tool (see its log)",
                "code": "internal_error",
                "kind": "internal_error",
            }
        )


async def _loom_envelopes(ctx: Any, call_next: Callable[[Any], Any]) -> Any:
    """Middleware: a tool call the SDK itself refused (arguments that do not match the
    schema, an unknown tool) also answers with Loom's envelope, as a tool result."""
    result = await call_next(ctx)
    if (
        ctx.method != "tools/call"
        or not isinstance(result, dict)
        or not result.get("isError")
        or result.get("structuredContent") is not None
    ):
        return result
    blocks = result.get("content") or [{}]
    text = str(blocks[0].get("text", "invalid tool call"))
    lines = [line.strip() for line in text.splitlines()]
    message = "; ".join(line for line in lines if line and "errors.pydantic.dev" not in line)
    unknown = "Unknown tool" in text
    envelope = {
        "error": message,
        "code": "not_found" if unknown else "bad_request",
        "kind": "unknown_tool" if unknown else "invalid_arguments",
    }
    return _error(envelope).model_dump(mode="json", by_alias=True, exclude_none=True)


def _signature_without(fn: Callable[..., Any], drop: set[str]) -> Callable[..., Any]:
    """``fn`` with the parameters in ``drop`` hidden from the SDK (they keep their default)."""
    hints = typing.get_type_hints(fn, include_extras=True)
    sig = inspect.signature(fn)
    params = [
        p.replace(annotation=hints.get(name, p.annotation))
        for name, p in sig.parameters.items()
        if name not in drop
    ]

    def call(**kwargs: Any) -> Any:
        return fn(**kwargs)

    call.__name__ = fn.__name__
    call.__doc__ = fn.__doc__
    call.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=hints.get("return", sig.return_annotation)
    )
    call.__annotations__ = {p.name: p.annotation for p in params}
    call.__annotations__["return"] = hints.get("return")
    return call


def build_server(scope: SessionScope, *, http: bool) -> MCPServer[Any]:
    """An MCPServer with Loom's ten tools, the artifact resources and the prompt."""
    server: MCPServer[Any] = MCPServer(
        "loom",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        middleware=[_loom_envelopes],
    )

    def tool(description: str, annotations: ToolAnnotations) -> Callable[[Any], Any]:
        def register(fn: Callable[..., CallToolResult]) -> Callable[..., CallToolResult]:
            exposed = fn if http else _signature_without(fn, {"holder"})
            server.add_tool(
                exposed,
                name=fn.__name__,
                description=description,
                annotations=annotations,
                structured_output=False,
            )
            return fn

        return register

    renew = (
        "renew by calling claim_change again before it expires"
        if http
        else "kept alive while this session lasts"
    )

    @tool(
        f"Take the next available change: its lease ({renew}), artifacts, tasks with "
        "ready/blocked, revision.",
        _WRITE,
    )
    def next_change(
        ctx: Context[Any, Any],
        module: Module = None,
        changes: Annotated[
            list[str] | None, Field(max_length=100, description="Only these change ids")
        ] = None,
        ttl_seconds: Ttl = None,
        holder: Holder = None,
    ) -> CallToolResult:
        with scope(ctx, holder) as s:
            return _run(lambda: s.next_change(module, changes, ttl_seconds))

    @tool(f"Take or renew the lease on a change ({renew}).", _WRITE)
    def claim_change(
        ctx: Context[Any, Any], change_id: ChangeId, ttl_seconds: Ttl = None, holder: Holder = None
    ) -> CallToolResult:
        with scope(ctx, holder) as s:
            return _run(lambda: s.claim_change(change_id, ttl_seconds))

    @tool("Release your lease on a change.", _WRITE)
    def release_change(
        ctx: Context[Any, Any], change_id: ChangeId, holder: Holder = None
    ) -> CallToolResult:
        with scope(ctx, holder) as s:
            return _run(lambda: s.release_change(change_id))

    @tool("List active changes: id, title, work status, task progress, lease holder.", _READ)
    def list_changes(
        ctx: Context[Any, Any],
        status: Annotated[
            list[Literal["draft", "ready", "in-progress", "paused", "complete"]] | None,
            Field(description="Only these work statuses"),
        ] = None,
        module: Module = None,
    ) -> CallToolResult:
        with scope(ctx, None) as s:
            return _run(lambda: s.list_changes(status, module))

    @tool("Read one change: artifacts, tasks with ready/blocked, lease, revision.", _READ)
    def show_change(ctx: Context[Any, Any], change_id: ChangeId) -> CallToolResult:
        with scope(ctx, None) as s:
            return _run(lambda: s.show_change(change_id))

    @tool("Start, complete, shelve or unshelve a task of a change.", _WRITE)
    def update_task(
        ctx: Context[Any, Any],
        change_id: ChangeId,
        task_id: Annotated[
            str, Field(min_length=1, max_length=64, description="Task id, e.g. 1.2")
        ],
        action: Literal["start", "complete", "shelve", "unshelve"],
        note: Annotated[str | None, Field(max_length=2000, description="complete: note")] = None,
        reason: Annotated[str | None, Field(max_length=2000, description="shelve: why")] = None,
        holder: Holder = None,
    ) -> CallToolResult:
        with scope(ctx, holder) as s:
            return _run(lambda: s.update_task(change_id, task_id, action, note, reason))

    @tool("Add a task to a change's tasks.md.", _WRITE)
    def add_task(
        ctx: Context[Any, Any],
        change_id: ChangeId,
        title: Annotated[str, Field(min_length=1, max_length=500)],
        wave: Annotated[int | None, Field(ge=1, le=999, description="Wave (default 1)")] = None,
        holder: Holder = None,
    ) -> CallToolResult:
        with scope(ctx, holder) as s:
            return _run(lambda: s.add_task(change_id, title, wave))

    base = (
        "Revision your edits build on (required here)"
        if http
        else "Revision your edits build on (default: the one you last read)"
    )

    @tool(
        "Save edited artifacts of a change; only those given change. A conflict names what "
        "changed and the current revision.",
        _WRITE,
    )
    def save_change(
        ctx: Context[Any, Any],
        change_id: ChangeId,
        proposal: Markdown = None,
        design: Markdown = None,
        tasks: Markdown = None,
        specs: Annotated[
            dict[str, str] | None, Field(description="Spec deltas: capability -> full text")
        ] = None,
        revision: Annotated[str | None, Field(pattern=r"^\d{1,18}$", description=base)] = None,
        holder: Holder = None,
    ) -> CallToolResult:
        with scope(ctx, holder) as s:
            return _run(
                lambda: s.save_change(
                    change_id,
                    proposal=proposal,
                    design=design,
                    tasks=tasks,
                    specs=specs,
                    revision=revision,
                )
            )

    @tool("Archive a finished change: merge its spec deltas, release its lease.", _WRITE)
    def archive_change(
        ctx: Context[Any, Any], change_id: ChangeId, holder: Holder = None
    ) -> CallToolResult:
        with scope(ctx, holder) as s:
            return _run(lambda: s.archive_change(change_id))

    @tool("The last audit events of the project, or of one change.", _READ)
    def recent_events(
        ctx: Context[Any, Any],
        change_id: Annotated[
            str | None, Field(max_length=128, description="Only this change")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> CallToolResult:
        with scope(ctx, None) as s:
            return _run(lambda: s.recent_events(change_id, limit))

    _add_resources(server, scope)

    @server.prompt(
        "work_on_next_change", description="The Loom workflow: take, read, tasks, save, archive."
    )
    def work_on_next_change(
        module: Annotated[str | None, Field(description="Only module NNN")] = None,
    ) -> str:
        lease = (
            "must be renewed: call claim_change again before it expires"
            if http
            else "is kept alive by this MCP session and released when it ends"
        )
        return PROMPT.format(
            scope=f" (module {module})" if module else "",
            args=f" with module={module!r}" if module else "",
            lease=lease,
        )

    return server


_ARTIFACTS = {"proposal.md": "proposal", "design.md": "design", "tasks.md": "tasks"}


def _add_resources(server: MCPServer[Any], scope: SessionScope) -> None:
    def read(ctx: Context[Any, Any], org: str, repo: str, change_id: str, name: str) -> str:
        with scope(ctx, None) as s:
            project = s.client.project
            if project != f"{org}/{repo}":
                raise ResourceError(f"this server serves project {project}, not {org}/{repo}")
            try:
                bundle = s.client.pull(s.resolve(change_id))
            except LoomError as error:
                raise ResourceError(error.message) from None
        if name.startswith("specs/"):
            text = dict(bundle.specs).get(name[6:])
        else:
            text = getattr(bundle, name)
        if text is None:
            raise ResourceError(f"{change_id} has no {name}")
        return str(text)

    def reader(field: str) -> Callable[..., Any]:
        async def artifact(org: str, repo: str, change_id: str, ctx: Context[Any, Any]) -> str:
            return await anyio.to_thread.run_sync(read, ctx, org, repo, change_id, field)

        return artifact

    for filename, field in _ARTIFACTS.items():
        server.resource(
            f"loom://{{org}}/{{repo}}/changes/{{change_id}}/{filename}",
            name=filename,
            description=f"The {field} of a change",
            mime_type="text/markdown",
        )(reader(field))

    async def spec_delta(
        org: str, repo: str, change_id: str, capability: str, ctx: Context[Any, Any]
    ) -> str:
        return await anyio.to_thread.run_sync(
            read, ctx, org, repo, change_id, f"specs/{capability}"
        )

    server.resource(
        "loom://{org}/{repo}/changes/{change_id}/specs/{capability}/spec.md",
        name="spec delta",
        description="A spec delta of a change",
        mime_type="text/markdown",
    )(spec_delta)
