"""``loom events``: read (and follow) the audit log; ``loom events forward``: send a local log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from loom.cli._app import app
from loom.cli._common import (
    Ctx,
    agent_command,
    agent_group_callback,
    emit_json,
    err,
    out,
    stdout_is_tty,
)
from loom.client import DEFAULT_EVENT_LOG, AuditEvent, Client, forward_events

__all__ = ["events_app", "follow_events", "stream_events"]

events_app = typer.Typer(
    name="events",
    help="The project's audit log: show it, follow it, or forward a local log to it.",
)
app.add_typer(events_app)


def _line(event: AuditEvent) -> str:
    scope = f" {event.scope}" if event.scope else ""
    change = ""
    if event.from_ is not None or event.to is not None:
        change = f" {event.from_ if event.from_ is not None else '-'} -> {event.to}"
    return (
        f"{event.seq if event.seq is not None else '-'}  {event.ts}  {event.entity}:"
        f"{event.entity_id}{scope}  {event.op}{change}  by {event.by} ({event.actor})"
    )


def follow_events(
    client: Client,
    since: int | None,
    emit: Callable[[AuditEvent], None],
    *,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    page_size: int = 1000,
) -> None:
    """Poll ``GET /events?since=…`` every ``interval`` seconds and emit new events, forever.

    Stops only by an exception (Ctrl-C raises KeyboardInterrupt).
    """
    cursor = since
    while True:
        for event in client.iter_events(since=cursor, page_size=page_size):
            emit(event)
            if event.seq is not None:
                cursor = event.seq
        sleep(interval)


def stream_events(
    client: Client,
    since: int | None,
    emit: Callable[[AuditEvent], None],
    *,
    entity: str | None = None,
    scope: str | None = None,
    op: str | None = None,
    reconnect_delay: float = 1.0,
) -> None:
    """Follow the event stream (``GET /events/stream``) and emit each event, forever.

    The client reconnects by itself and resumes after the last event emitted (nothing lost
    or repeated). Stops only by an exception (Ctrl-C raises KeyboardInterrupt)."""
    for event in client.follow_events(
        since, entity=entity, scope=scope, op=op, reconnect_delay=reconnect_delay
    ):
        emit(event)


@agent_group_callback(events_app)
def show(
    cx: Ctx,
    since: Annotated[
        int | None, typer.Option("--since", help="Only events after this seq.", min=0)
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="At most this many events.", min=1, max=5000)
    ] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="Filter by entity.")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="Filter by scope.")] = None,
    op: Annotated[str | None, typer.Option("--op", help="Filter by operation.")] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Stream new events as they happen (Ctrl-C stops)."),
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            help="With --follow: seconds before reconnecting a dropped stream.",
            min=0.01,
        ),
    ] = 1.0,
) -> int:
    """Show the audit log, or follow it; `loom events forward` sends a local log.

    With --json: one JSON array (with --follow: one JSON object per line).
    """
    client = cx.client
    if follow:

        def emit(event: AuditEvent) -> None:
            if cx.json:
                out(json.dumps(event.to_json(), ensure_ascii=False))
            else:
                out(_line(event))

        try:
            start = since if since is not None else 0  # the whole log, then live
            stream_events(
                client, start, emit, entity=entity, scope=scope, op=op, reconnect_delay=interval
            )
        except KeyboardInterrupt:
            return 0
        return 0
    if limit is not None:
        items = client.get_events(since=since, limit=limit, entity=entity, scope=scope, op=op)
    else:
        items = list(client.iter_events(since=since, entity=entity, scope=scope, op=op))
    if cx.json:
        emit_json([e.to_json() for e in items])
        return 0
    if not items:
        err("no events")
    for event in items:
        out(_line(event))
    return 0


@agent_command(events_app, "forward")
def forward(
    cx: Ctx,
    file: Annotated[
        Path | None,
        typer.Argument(help="JSONL audit log (default .ito/.state/audit/events.jsonl)."),
    ] = None,
    ito_dir: Annotated[
        Path | None,
        typer.Option("--ito-dir", envvar="LOOM_ITO_DIR", help="The .ito directory."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Events per request.", min=1, max=5000)
    ] = 500,
) -> None:
    """Send a local JSONL audit log to the server in batches, with a checkpoint; safe to re-run.

    The checkpoint is .ito/.state/event-forward-offset (lines already sent).
    """
    ito = cx.ito_dir(ito_dir)
    source = file if file is not None else ito / DEFAULT_EVENT_LOG
    progress: Callable[[int, int], None] | None = None
    if stdout_is_tty() and not cx.json:

        def progress(done: int, total: int) -> None:
            err(f"forwarded {done}/{total} lines")

    result = forward_events(cx.client, source, ito, batch_size=batch_size, on_batch=progress)
    data = {
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "batches": result.batches,
        "offset": result.offset,
        "total_lines": result.total_lines,
    }
    if cx.json:
        emit_json(data)
        return
    out(
        f"forwarded {result.accepted} events ({result.duplicates} duplicates) in "
        f"{result.batches} batches; checkpoint {result.offset}/{result.total_lines} lines"
    )
