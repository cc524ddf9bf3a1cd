"""Helpers shared by the use cases: id resolution, lease checks, server audit events."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from loom.domain.events import make_event
from loom.domain.ids import resolve_change_target
from loom.domain.leases import LeaseState, check_write, release
from loom.domain.timefmt import format_us, format_us_millis
from loom.errors import ArchivedConflict, LeaseConflict, NotFound
from loom.service._context import Actor, Project, ServiceContext
from loom.store.changes import ChangeRow, get_change, get_change_archived, list_change_ids
from loom.store.events import append_events
from loom.store.leases import get_lease, save_lease

__all__ = [
    "SERVER_SESSION",
    "audit",
    "change_not_found",
    "check_lease",
    "record",
    "release_on_archive",
    "require_change",
    "require_live_change",
    "resolve_read_target",
    "server_event",
    "write_pid",
]

SERVER_SESSION = "loom-server"


def change_not_found(change_id: str) -> NotFound:
    return NotFound(f"change not found: {change_id}", kind="change_not_found", change_id=change_id)


def write_pid(ctx: ServiceContext, project: Project) -> int:
    """The project id for a write, creating the project row in its own small transaction."""
    key = (project.org, project.repo)
    cached = ctx._project_ids.get(key)
    if cached is not None:
        return cached
    with ctx.db.write() as conn:
        pid = ctx.project_id(conn, project, create=True)
    assert pid is not None
    ctx.remember_project(project, pid)
    return pid


def require_change(
    conn: Connection, pid: int, change_id: str, *, for_update: bool = True, writable: bool = True
) -> ChangeRow:
    row = get_change(conn, pid, change_id, for_update=for_update)
    if row is None:
        raise change_not_found(change_id)
    if writable and row.archived_us is not None:
        raise ArchivedConflict(
            f"change '{change_id}' is archived and can no longer be changed",
            change_id=change_id,
            archived_at=format_us(row.archived_us),
        )
    return row


def require_live_change(conn: Connection, pid: int, change_id: str) -> None:
    """Lock the change (PostgreSQL row lock) and check it exists and is not archived."""
    exists, archived_us = get_change_archived(conn, pid, change_id, for_update=True)
    if not exists:
        raise change_not_found(change_id)
    if archived_us is not None:
        raise ArchivedConflict(
            f"change '{change_id}' is archived and can no longer be changed",
            change_id=change_id,
            archived_at=format_us(archived_us),
        )


def resolve_read_target(conn: Connection, pid: int | None, target: str, lifecycle: str) -> str:
    """Exact id first, then Ito's short-form resolution among the lifecycle's ids."""
    if pid is None:
        raise change_not_found(target)
    exists, archived_us = get_change_archived(conn, pid, target)  # not the artifacts
    if exists:
        archived = archived_us is not None
        if lifecycle == "all" or (lifecycle == "archived") == archived:
            return target
    try:
        return resolve_change_target(target, list_change_ids(conn, pid, lifecycle))
    except NotFound:
        # One 404 body whether or not the project has rows (the resolver's own message
        # differs, which told a caller whether the project existed).
        raise change_not_found(target) from None


def check_lease(
    ctx: ServiceContext, conn: Connection, pid: int, change_id: str, actor: Actor
) -> LeaseState | None:
    """Strict mode: refuse a write that is not from the active holder or has a stale token.

    With ``require_lease`` (either mode), a write to a change nobody holds is refused too.
    """
    state = get_lease(conn, pid, change_id)
    now = ctx.now_us()
    if ctx.policy.require_lease and (state is None or not state.is_active(now)):
        raise LeaseConflict(
            f"change '{change_id}' has no active lease and this server requires one for "
            f"writes: take it first (`loom claim {change_id}`)",
            kind="lease_required",
            change_id=change_id,
            holder=None,
        )
    if ctx.policy.lease_enforcement == "advisory":
        return state
    check_write(
        state or LeaseState(),
        change_id=change_id,
        holder=actor.holder,
        fencing_token=actor.fencing_token,
        now_us=now,
    )
    return state


def server_event(
    now_us: int,
    *,
    entity: str,
    entity_id: str,
    op: str,
    by: str,
    scope: str | None = None,
    from_: str | None = None,
    to: str | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An audit event written by the server itself (actor ``server``).

    Not re-validated: every part is an id, holder, status or op the server already checked
    (the check cost a fifth of a claim).
    """
    return make_event(
        check=False,
        ts=format_us_millis(now_us),
        entity=entity,
        entity_id=entity_id,
        op=op,
        session_id=SERVER_SESSION,
        scope=scope,
        from_=from_,
        to=to,
        meta=meta or None,
        by=by,
    )


def release_on_archive(
    conn: Connection, pid: int, change_id: str, lease: LeaseState | None, now_us: int, by: str
) -> list[dict[str, Any]]:
    """Drop whatever lease a change being archived has; returns the audit events to record
    (an archived change can never be held)."""
    if lease is None or lease.holder is None:
        return []
    outcome = release(lease, change_id=change_id, holder=lease.holder, now_us=now_us, force=True)
    save_lease(conn, pid, change_id, outcome.state, exists=True)
    return [
        server_event(
            now_us,
            entity="change",
            entity_id=change_id,
            op=name if name != "force_release" else "release",
            by=by,
            meta={"holder": holder, "reason": "archived"},
        )
        for name, holder in outcome.events
    ]


def record(conn: Connection, pid: int, now_us: int, *events: dict[str, Any]) -> None:
    append_events(conn, pid, list(events), now_us)


def audit(conn: Connection, pid: int, now_us: int, **event: Any) -> None:
    """Record one server event (the keyword arguments of :func:`server_event`)."""
    record(conn, pid, now_us, server_event(now_us, **event))
