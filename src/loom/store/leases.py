"""Lease rows (one per change, created lazily) and the allocation candidate query."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, case, func, select

from loom.domain.leases import LeaseState
from loom.store import _raw
from loom.store.schema import changes, leases

__all__ = ["ActiveLease", "allocation_candidates", "get_lease", "list_active", "save_lease"]


@dataclass(frozen=True)
class ActiveLease:
    change_id: str
    holder: str
    acquired_us: int
    expires_us: int
    ttl_seconds: int
    fencing_token: int


_GET = _raw.SQL(
    "SELECT holder, acquired_us, expires_us, ttl_seconds, fencing_token, previous_holder,"
    " expiry_recorded FROM leases WHERE project_id = ? AND change_id = ?"
)
_UPDATE = _raw.SQL(
    "UPDATE leases SET holder = ?, acquired_us = ?, expires_us = ?, ttl_seconds = ?,"
    " fencing_token = ?, previous_holder = ?, expiry_recorded = ?"
    " WHERE project_id = ? AND change_id = ?"
)
_INSERT = _raw.SQL(
    "INSERT INTO leases (holder, acquired_us, expires_us, ttl_seconds, fencing_token,"
    " previous_holder, expiry_recorded, project_id, change_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def get_lease(conn: Connection, project_id: int, change_id: str) -> LeaseState | None:
    """The stored state, or None when the change never had a lease row (hot path: raw SQL)."""
    row = _raw.fetchone(conn, _GET, (project_id, change_id))
    if row is None:
        return None
    return LeaseState(
        holder=row[0],
        acquired_us=row[1],
        expires_us=row[2],
        ttl_seconds=row[3],
        fencing_token=int(row[4]),
        previous_holder=row[5],
        expiry_recorded=bool(row[6]),
    )


def save_lease(
    conn: Connection, project_id: int, change_id: str, state: LeaseState, *, exists: bool
) -> None:
    """Write the state. The caller holds the change's lock, so plain writes are safe."""
    params = (
        state.holder,
        state.acquired_us,
        state.expires_us,
        state.ttl_seconds,
        state.fencing_token,
        state.previous_holder,
        bool(state.expiry_recorded),
        project_id,
        change_id,
    )
    _raw.execute(conn, _UPDATE if exists else _INSERT, params)


def list_active(conn: Connection, project_id: int, now_us: int) -> list[ActiveLease]:
    rows = conn.execute(
        select(
            leases.c.change_id,
            leases.c.holder,
            leases.c.acquired_us,
            leases.c.expires_us,
            leases.c.ttl_seconds,
            leases.c.fencing_token,
        )
        .where(
            leases.c.project_id == project_id,
            leases.c.holder.is_not(None),
            leases.c.expires_us > now_us,
        )
        .order_by(leases.c.expires_us, leases.c.change_id)
    )
    return [ActiveLease(r[0], r[1], int(r[2]), int(r[3]), int(r[4] or 0), int(r[5])) for r in rows]


def active_leases_for(
    conn: Connection, project_id: int, change_ids: Sequence[str], now_us: int
) -> dict[str, ActiveLease]:
    if not change_ids:
        return {}
    rows = conn.execute(
        select(
            leases.c.change_id,
            leases.c.holder,
            leases.c.acquired_us,
            leases.c.expires_us,
            leases.c.ttl_seconds,
            leases.c.fencing_token,
        ).where(
            leases.c.project_id == project_id,
            leases.c.change_id.in_(list(change_ids)),
            leases.c.holder.is_not(None),
            leases.c.expires_us > now_us,
        )
    )
    return {
        r[0]: ActiveLease(r[0], r[1], int(r[2]), int(r[3]), int(r[4] or 0), int(r[5])) for r in rows
    }


def allocation_candidates(
    conn: Connection,
    project_id: int,
    now_us: int,
    *,
    module: str | None,
    change_ids: Sequence[str] | None,
    limit: int,
) -> list[str]:
    """Eligible change ids, abandoned in-progress work first, then canonical order.

    On PostgreSQL the chosen rows are locked with ``FOR UPDATE SKIP LOCKED`` so concurrent
    allocators skip each other's candidates instead of queueing behind them.

    The lease of each change is looked up with a correlated scalar subquery, not a join: the
    planner cannot pull it up, so it is always one primary-key probe per change. With a join,
    PostgreSQL on stale statistics (a project imported less than an autovacuum cycle ago)
    chose a nested loop that rescanned every lease of the project for every change —
    150 ms per allocation at 500 changes, seconds under contention.
    """
    lease_expiry = (
        select(leases.c.expires_us)
        .where(
            leases.c.project_id == changes.c.project_id,
            leases.c.change_id == changes.c.change_id,
            leases.c.holder.is_not(None),
        )
        .scalar_subquery()
    )
    stmt = select(changes.c.change_id).where(
        changes.c.project_id == project_id,
        changes.c.archived_us.is_(None),
        changes.c.work_status.in_(["ready", "in-progress"]),
        func.coalesce(lease_expiry, 0) <= now_us,
    )
    if module is not None:
        if "." in module:
            stmt = stmt.where(changes.c.sub_module_id == module)
        else:
            stmt = stmt.where(changes.c.module_id == module)
    if change_ids is not None:
        stmt = stmt.where(changes.c.change_id.in_(list(change_ids)))
    abandoned_first = case((changes.c.work_status == "in-progress", 0), else_=1)
    stmt = stmt.order_by(abandoned_first, changes.c.sort_key).limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=changes, skip_locked=True)
    return [r[0] for r in conn.execute(stmt)]


def held_by(
    conn: Connection,
    project_id: int,
    holder: str,
    now_us: int,
    *,
    module: str | None,
    change_ids: Sequence[str] | None,
) -> str | None:
    """The first non-archived change (within the filters) actively leased by ``holder``.

    Two small queries rather than a join, for the same reason as in
    :func:`allocation_candidates`: the holder's active leases first (usually none), then
    their changes by primary key.
    """
    mine = [
        r[0]
        for r in conn.execute(
            select(leases.c.change_id).where(
                leases.c.project_id == project_id,
                leases.c.holder == holder,
                leases.c.expires_us > now_us,
            )
        )
    ]
    if change_ids is not None:
        wanted = set(change_ids)
        mine = [c for c in mine if c in wanted]
    if not mine:
        return None
    stmt = select(changes.c.change_id).where(
        changes.c.project_id == project_id,
        changes.c.change_id.in_(mine),
        changes.c.archived_us.is_(None),
    )
    if module is not None:
        col = changes.c.sub_module_id if "." in module else changes.c.module_id
        stmt = stmt.where(col == module)
    row = conn.execute(stmt.order_by(changes.c.sort_key).limit(1)).first()
    return None if row is None else str(row[0])
