"""``loom events``: read (and follow) the audit log; ``loom events forward``: send a local log."""

from __future__ import annotations

import json
import time
from collections import deque
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
    table,
)
from loom.client import DEFAULT_EVENT_LOG, AuditEvent, Client, forward_events

__all__ = ["events_app", "follow_events", "latest_seq", "stream_events"]

events_app = typer.Typer(
    name="events",
    help="The project's audit log: show it, follow it, or forward a local log to it.",
)
app.add_typer(events_app)


_COLUMNS = ("SEQ", "TIME", "WHAT", "OP", "CHANGE", "BY", "NOTE")
_WIDTHS = (6, 20, 30, 14, 26, 18)


def _cells(event: AuditEvent) -> tuple[str, ...]:
    """The text view's columns of one event (notes and reasons included)."""
    what = f"{event.entity}:{event.entity_id}"
    if event.scope:
        what += f" ({event.scope})"
    change = ""
    if event.from_ is not None or event.to is not None:
        change = f"{event.from_ if event.from_ is not None else '-'} -> {event.to}"
    meta = event.meta if isinstance(event.meta, dict) else {}
    notes = [f"{k}: {meta[k]}" for k in ("note", "reason") if meta.get(k)]
    if not change and meta.get("old_revision") and meta.get("new_revision"):
        change = f"rev {meta['old_revision']} -> {meta['new_revision']}"
    if meta.get("artifacts"):
        notes.append(", ".join(map(str, meta["artifacts"])))
    if meta.get("forced"):
        notes.append("forced")
    return (
        str(event.seq if event.seq is not None else "-"),
        event.ts[:19].replace("T", " ") + "Z",
        what,
        event.op,
        change,
        event.by,
        "; ".join(notes),
    )


def _line(cells: tuple[str, ...]) -> str:
    """One aligned line (the last column is never padded or cut)."""
    padded = [c.ljust(w) for c, w in zip(cells, _WIDTHS, strict=False)]
    return "  ".join([*padded, *cells[len(_WIDTHS) :]]).rstrip()


def _for_change(change: str | None) -> Callable[[AuditEvent], bool]:
    if change is None:
        return lambda _event: True
    return lambda e: (e.entity == "change" and e.entity_id == change) or e.scope == change


def latest_seq(client: Client) -> int:
    """The seq of the newest event (0 when the log is empty): where "from now" starts."""
    last = 0
    for event in client.iter_events(page_size=5000):
        last = event.seq if event.seq is not None else last
    return last


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


_DEFAULT_TAIL = 50


@agent_group_callback(events_app)
def show(
    cx: Ctx,
    tail: Annotated[
        int | None,
        typer.Option("--tail", "-n", help="The newest N events (default 50).", min=1),
    ] = None,
    since: Annotated[
        int | None,
        typer.Option("--since", help="Every event after this seq, oldest first.", min=0),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            help="With --since: at most N events after it; alone: the newest N (as --tail).",
            min=1,
            max=5000,
        ),
    ] = None,
    change: Annotated[
        str | None,
        typer.Option("--change", help="Only the events of this change (and its tasks)."),
    ] = None,
    entity: Annotated[str | None, typer.Option("--entity", help="Filter by entity.")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="Filter by scope.")] = None,
    op: Annotated[str | None, typer.Option("--op", help="Filter by operation.")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Print new events as they come (from now, or after --since / --tail); "
            "Ctrl-C stops.",
        ),
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
    """Show the audit log (the newest 50 events by default), or follow it.

    --tail N shows the newest N, --since SEQ everything after SEQ (oldest first). The text
    view has one aligned line per event, with task notes and reasons. With --json: one JSON
    array (with --follow: one JSON object per line). `loom events forward` sends a local log.
    """
    client = cx.client
    if change is not None:
        change = client.get_change(change, lifecycle="all").id  # short ids work here too
    keep = _for_change(change)
    if tail is None and limit is not None and since is None:
        tail = limit
    if since is not None or (follow and tail is None):
        if since is None:
            items: list[AuditEvent] = []
        elif limit is not None:
            items = client.get_events(since=since, limit=limit, entity=entity, scope=scope, op=op)
        else:
            items = list(client.iter_events(since=since, entity=entity, scope=scope, op=op))
        items = [e for e in items if keep(e)]
    else:
        newest: deque[AuditEvent] = deque(maxlen=tail or _DEFAULT_TAIL)
        newest.extend(
            e
            for e in client.iter_events(entity=entity, scope=scope, op=op, page_size=5000)
            if keep(e)
        )
        items = list(newest)
    if follow:
        filters = {"entity": entity, "scope": scope, "op": op}
        return _follow(cx, items, since, keep, interval, filters)
    if cx.json:
        emit_json([e.to_json() for e in items])
        return 0
    if not items:
        err("no events")
        return 0
    table(_COLUMNS, [_cells(e) for e in items], keep=(0,))
    return 0


def _follow(
    cx: Ctx,
    first: list[AuditEvent],
    since: int | None,
    keep: Callable[[AuditEvent], bool],
    interval: float,
    filters: dict[str, str | None],
) -> int:
    """Print ``first``, then every newer event as it comes (the event stream), until Ctrl-C
    (exit 0)."""
    if not cx.json:
        out(_line(_COLUMNS))

    def emit(event: AuditEvent) -> None:
        if not keep(event):
            return
        if cx.json:
            out(json.dumps(event.to_json(), ensure_ascii=False))
        else:
            out(_line(_cells(event)))

    for event in first:
        emit(event)
    seqs = [e.seq for e in first if e.seq is not None]
    cursor = max(seqs) if seqs else since if since is not None else latest_seq(cx.client)
    err(f"following new events after seq {cursor} (Ctrl-C stops)")
    try:
        stream_events(
            cx.client,
            cursor,
            emit,
            entity=filters["entity"],
            scope=filters["scope"],
            op=filters["op"],
            reconnect_delay=interval,
        )
    except KeyboardInterrupt:
        return 0
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
