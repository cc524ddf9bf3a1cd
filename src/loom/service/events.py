"""Use cases for the audit log: validated, idempotent batch ingest and paged reads."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from loom import metrics
from loom.domain.events import canonical_event_json
from loom.errors import Unprocessable, ValidationError
from loom.service._common import write_pid
from loom.service._context import Project, ServiceContext
from loom.store.events import (
    append_events,
    events_of,
    get_batch_key,
    insert_batch_key,
    latest_seq,
    list_events,
    publish_events,
    vacuum_events,
)
from loom.store.relay import PgRelay as EventRelay

__all__ = [
    "EventRelay",
    "event_relay",
    "events_about",
    "ingest_events",
    "latest_event",
    "read_events",
]

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_log = logging.getLogger("loom.events")

# After numbering at least this many events at once (a burst of appends), VACUUM the events
# table in the background: until then every read steps over the numbered rows' dead index
# entries (see vacuum_events). Autovacuum would do it too, a cycle later, if it is on.
VACUUM_AFTER = 10_000
_vacuum_guard = threading.Lock()
_vacuum: threading.Thread | None = None


def _publish(ctx: ServiceContext, pid: int) -> None:
    """PostgreSQL: number what has been committed; after a burst, a background VACUUM."""
    global _vacuum
    with ctx.db.write() as conn:
        numbered = publish_events(conn, pid)
    if numbered < VACUUM_AFTER:
        return
    with _vacuum_guard:
        if _vacuum is not None and _vacuum.is_alive():
            return  # one at a time; the running one removes these entries too
        _vacuum = threading.Thread(
            target=_vacuum_quietly, args=(ctx,), name="loom-vacuum-events", daemon=True
        )
        _vacuum.start()


def _vacuum_quietly(ctx: ServiceContext) -> None:
    try:
        vacuum_events(ctx.db.engine)
    except Exception:  # maintenance only: reads stay correct, just slower
        _log.warning("VACUUM events after a burst of appends failed", exc_info=True)


def ingest_events(
    ctx: ServiceContext,
    project: Project,
    raw_events: Sequence[Any],
    key: str | None,
    *,
    strict_json: bool = False,
    token_name: str | None = None,
) -> dict[str, int]:
    """Validate every event first; append the batch once per key (same key + same batch →
    duplicates; same key + different batch → 422). One transaction.

    ``strict_json``: the events were decoded by ``orjson`` (see ``canonical_event_json``).
    ``token_name``: the named token the batch came with. Each event then records it in
    ``by`` (the log says which token wrote it); a different ``by`` the client sent is kept
    in ``sent_by``. The batch fingerprint is the batch as sent."""
    bodies = [
        canonical_event_json(ev, index, strict_json=strict_json)
        for index, ev in enumerate(raw_events)
    ]
    events: list[dict[str, Any]] = list(raw_events)
    if not events:
        return {"accepted": 0, "duplicates": 0}
    if not key:
        raise ValidationError("idempotency_key must not be empty", kind="invalid_idempotency_key")
    if not _KEY.fullmatch(key):
        raise ValidationError(
            "idempotency_key contains invalid characters (1-128 of [A-Za-z0-9_-])",
            kind="invalid_idempotency_key",
        )
    # The canonical texts have sorted keys: key order and whitespace do not change the batch.
    fingerprint = hashlib.sha256("\n".join(bodies).encode("utf-8")).hexdigest()
    if token_name is not None:
        events, bodies = _signed(events, bodies, token_name)
    pid = write_pid(ctx, project)
    now = ctx.now_us()
    with ctx.db.write() as conn:
        if insert_batch_key(conn, pid, key, fingerprint, len(events), now):
            append_events(conn, pid, events, now, bodies)
            metrics.EVENT_BATCHES.inc()
            metrics.EVENTS_INGESTED.inc(len(events))
            return {"accepted": len(events), "duplicates": 0}
        existing = get_batch_key(conn, pid, key)
        assert existing is not None
        if existing.fingerprint != fingerprint:
            raise Unprocessable(
                f"idempotency_key '{key}' was already used for a different batch",
                kind="idempotency_key_reused",
            )
        metrics.EVENT_BATCHES.inc()
        metrics.EVENTS_DUPLICATE.inc(len(events))
        return {"accepted": 0, "duplicates": len(events)}


def _signed(
    events: list[dict[str, Any]], bodies: list[str], token_name: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The events with ``by`` set to the token's name (``sent_by``: the client's own)."""
    out_events, out_bodies = [], []
    for event, body in zip(events, bodies, strict=True):
        if event.get("by") != token_name:
            event = {**event, "by": token_name, "sent_by": event.get("by")}
            body = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        out_events.append(event)
        out_bodies.append(body)
    return out_events, out_bodies


def read_events(
    ctx: ServiceContext,
    project: Project,
    *,
    since: int | None,
    limit: int | None,
    entity: str | None,
    scope: str | None,
    op: str | None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Events in append order; with ``limit``, also the cursor for the next page."""
    pid = _published(ctx, project)
    if pid is None:
        return [], (since or 0) if limit is not None else None
    with ctx.db.read() as conn:
        items = list_events(conn, pid, since=since, limit=limit, entity=entity, scope=scope, op=op)
    if limit is None:
        return items, None
    next_since = int(items[-1]["seq"]) if items else (since or 0)
    return items, next_since


def latest_event(ctx: ServiceContext, project: Project) -> tuple[int | None, int]:
    """(the project's row id or None, the ``seq`` of its log's last event, 0 when none).

    Reads through the same path as :func:`read_events` (PostgreSQL numbers what has been
    committed first), so "from now" on the event stream means after this ``seq``."""
    pid = _published(ctx, project)
    if pid is None:
        return None, 0
    with ctx.db.read() as conn:
        return pid, latest_seq(conn, pid)


def events_about(
    ctx: ServiceContext, project: Project, entity_id: str, limit: int
) -> list[dict[str, Any]]:
    """The last ``limit`` events about ``entity_id`` (its own, ``entity_id``, and those it
    scopes, ``scope``: a change's task events), newest first. Two index range scans, however
    long the log."""
    pid = _published(ctx, project)
    if pid is None:
        return []
    with ctx.db.read() as conn:
        return events_of(conn, pid, entity_id, limit)


def _published(ctx: ServiceContext, project: Project) -> int | None:
    """The project's row id (None: unknown), its committed events numbered first
    (PostgreSQL; see :func:`loom.store.events.publish_events`)."""
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
    if pid is not None and ctx.db.kind == "postgresql":
        _publish(ctx, pid)
    return pid


def event_relay(
    ctx: ServiceContext, wake: Callable[[Iterable[int] | None], None]
) -> EventRelay | None:
    """PostgreSQL: this server process's relay of event wake-ups to and from the other
    processes on the database (``NOTIFY``/``LISTEN``; :meth:`EventRelay.start` it on the
    event loop); ``wake`` gets the project ids another process appended events to (None:
    any). SQLite: None (one server process per database file)."""
    if ctx.db.kind != "postgresql":
        return None
    return EventRelay(ctx.db.url, wake, app_name=ctx.db.application_name)
