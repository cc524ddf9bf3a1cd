"""Use cases for leases: claim, heartbeat, release, read, list, and atomic allocation.

Every operation is one write transaction that holds the change's lock (``BEGIN IMMEDIATE`` on
SQLite, ``SELECT … FOR UPDATE`` on the change row on PostgreSQL) while the pure rules in
:mod:`loom.domain.leases` decide; the server clock is the only authority on expiry.

On PostgreSQL a claim, heartbeat or release first tries the decision on the lease state this
process last stored or read for the change (``ctx.leases_seen``): the rules decide on it, and
the write is one compare-and-set statement, committed in the same round trip, that takes the
change's lock and writes only if the lease row still holds exactly that state
(:func:`loom.store.leases.compare_and_save`). The rules are a function of the lease row, the
change being live, the request and the clock, so a decision on a state the row still holds
under the lock is the decision the locked read would have led to. When the row moved on (or
the guess would refuse or change nothing), nothing is written and the locked read decides as
always: a stale guess costs a round trip, never a wrong outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from loom import metrics
from loom.domain import leases as rules
from loom.domain.timefmt import format_us
from loom.errors import ArchivedConflict, LeaseConflict, LoomError, NotFound, ValidationError
from loom.service._common import (
    change_not_found,
    require_live_change,
    server_event,
    write_pid,
)
from loom.service._context import Actor, Project, ServiceContext
from loom.store.changes import get_change
from loom.store.leases import (
    can_compare_and_save,
    compare_and_save,
    get_change_lease,
    get_lease,
    list_active,
    next_candidate,
    save_lease,
)
from loom.store.overlap_allocation import (
    busy_overlaps,
    first_without_overlap,
    held_and_overlap_possible,
    lock_requirements,
)

__all__ = [
    "AVOID_OVERLAP",
    "ON_LOOP",
    "allocate",
    "claim",
    "claim_json",
    "get_active_lease",
    "heartbeat",
    "list_leases",
    "release",
    "resolve_ttl",
]


def resolve_ttl(ctx: ServiceContext, ttl_seconds: int | None) -> int:
    policy = ctx.policy
    if ttl_seconds is None:
        return policy.lease_ttl
    if not policy.lease_ttl_min <= ttl_seconds <= policy.lease_ttl_max:
        raise ValidationError(
            f"ttl_seconds must be between {policy.lease_ttl_min} and {policy.lease_ttl_max}",
            kind="invalid_ttl",
            min=policy.lease_ttl_min,
            max=policy.lease_ttl_max,
        )
    return ttl_seconds


def _renewal_ttl(
    ctx: ServiceContext, requested: int | None, stored: rules.LeaseState | None, holder: str
) -> int:
    """The TTL of a claim or heartbeat: the requested one; without one, a holder renewing its
    own lease keeps the TTL it chose (a 60 s lease must not become the 15-minute default on
    the first bare heartbeat: a crashed agent would then hold the change 15 minutes); anyone
    else gets the server default."""
    if requested is not None:
        return requested
    policy = ctx.policy
    if stored is not None and stored.holder == holder and stored.ttl_seconds:
        return min(max(stored.ttl_seconds, policy.lease_ttl_min), policy.lease_ttl_max)
    return policy.lease_ttl


def claim_json(change_id: str, state: rules.LeaseState) -> dict[str, Any]:
    return {
        "change_id": change_id,
        "holder": state.holder,
        "acquired_at": format_us(state.acquired_us),
        "expires_at": format_us(state.expires_us),
        "ttl_seconds": state.ttl_seconds,
        "fencing_token": state.fencing_token,
    }


def _lease_events(
    now: int,
    change_id: str,
    events: Sequence[tuple[str, str]],
    by: str,
    *,
    allocate: bool,
    fencing_token: int,
) -> list[dict[str, Any]]:
    out = []
    for name, holder in events:
        op = "allocate" if (allocate and name == "claim") else name
        meta: dict[str, Any] = {"holder": holder}
        if name == "claim":
            meta["fencing_token"] = fencing_token
        out.append(server_event(now, entity="change", entity_id=change_id, op=op, by=by, meta=meta))
    return out


_SEEN_MAX = 50_000
"""At most this many remembered lease states (the map is emptied when full)."""


def _saw(ctx: ServiceContext, pid: int, change_id: str, state: rules.LeaseState) -> None:
    """Remember ``state`` as the change's lease (a guess for the next request: it may be a
    state whose transaction then rolled back, which the compare-and-set simply finds gone).
    PostgreSQL only: SQLite's lease requests take the database lock anyway."""
    if ctx.db.kind != "postgresql":
        return
    seen = ctx.leases_seen
    if len(seen) >= _SEEN_MAX:
        seen.clear()
    seen[(pid, change_id)] = state


def _seen(
    ctx: ServiceContext, conn: Connection, pid: int, change_id: str
) -> rules.LeaseState | None:
    """The remembered lease state of the change, when a compare-and-set can run now."""
    state = ctx.leases_seen.get((pid, change_id))
    if state is None or not can_compare_and_save(conn):
        return None
    return state


def _decide_on_seen(decide: Callable[[], rules.LeaseOutcome]) -> rules.LeaseOutcome | None:
    """The rules' decision on a remembered state, or None when they refuse (any refusal) or
    change nothing: then only the locked row may decide, so no answer is ever a guess's."""
    try:
        outcome = decide()
    except LoomError:
        return None
    return outcome if outcome.changed else None


def _renew_on_seen(
    ctx: ServiceContext,
    conn: Connection,
    pid: int,
    change_id: str,
    holder: str,
    requested: int | None,
    now: int,
    decide: Callable[..., rules.LeaseOutcome],
    by: str | None,
) -> dict[str, Any] | None:
    """A claim or heartbeat (``decide``: ``rules.claim`` or ``rules.heartbeat``) decided on
    the remembered lease and written as a compare-and-set; None when the locked path must
    decide. ``by``: whom the audit events name (None: the request records none, as a
    heartbeat on the locked path does not)."""
    seen = _seen(ctx, conn, pid, change_id)
    if seen is None:
        return None
    ttl = _renewal_ttl(ctx, requested, seen, holder)
    outcome = _decide_on_seen(
        lambda: decide(seen, change_id=change_id, holder=holder, now_us=now, ttl_seconds=ttl)
    )
    if outcome is None:
        return None
    events = [] if by is None else _outcome_events(now, change_id, outcome, by)
    if not compare_and_save(conn, pid, change_id, seen, outcome.state, events=events, now_us=now):
        return None
    metrics.count_claim(outcome.events)
    _saw(ctx, pid, change_id, outcome.state)
    return claim_json(change_id, outcome.state)


def _outcome_events(
    now: int, change_id: str, outcome: rules.LeaseOutcome, by: str
) -> list[dict[str, Any]]:
    """The audit events of a claim, heartbeat or release outcome (not an allocation)."""
    return _lease_events(
        now,
        change_id,
        outcome.events,
        by,
        allocate=False,
        fencing_token=outcome.state.fencing_token,
    )


class _Unread:
    """Marker: the lease row has not been read in this transaction yet."""


_UNREAD = _Unread()


def _live_lease(conn: Connection, pid: int, change_id: str) -> rules.LeaseState | None:
    """Lock the change, check it exists and is not archived, and return its stored lease."""
    exists, archived_us, stored = get_change_lease(conn, pid, change_id)
    if not exists:
        raise change_not_found(change_id)
    if archived_us is not None:
        raise ArchivedConflict(
            f"change '{change_id}' is archived and can no longer be changed",
            change_id=change_id,
            archived_at=format_us(archived_us),
        )
    return stored


def _apply_claim(
    ctx: ServiceContext,
    conn: Connection,
    pid: int,
    change_id: str,
    holder: str,
    ttl: int,
    now: int,
    *,
    allocate: bool,
    stored: rules.LeaseState | _Unread | None = _UNREAD,
    by: str | None = None,
) -> dict[str, Any]:
    """``by``: who the events name (a named token's name; default ``@holder``)."""
    if isinstance(stored, _Unread):
        stored = get_lease(conn, pid, change_id)
    outcome = rules.claim(
        stored or rules.LeaseState(),
        change_id=change_id,
        holder=holder,
        now_us=now,
        ttl_seconds=ttl,
    )
    metrics.count_claim(outcome.events, allocate=allocate)
    events = _lease_events(
        now,
        change_id,
        outcome.events,
        by or f"@{holder}",
        allocate=allocate,
        fencing_token=outcome.state.fencing_token,
    )
    save_lease(
        conn, pid, change_id, outcome.state, exists=stored is not None, events=events, now_us=now
    )
    _saw(ctx, pid, change_id, outcome.state)
    return claim_json(change_id, outcome.state)


def claim(
    ctx: ServiceContext,
    project: Project,
    change_id: str,
    holder: str,
    ttl_seconds: int | None,
    *,
    token_name: str | None = None,
) -> dict[str, Any]:
    """Acquire or renew ``holder``'s lease. ``token_name``: the named token the request
    came with; its events name it (``by``) instead of ``@holder`` (``meta.holder`` keeps
    the holder)."""
    requested = None if ttl_seconds is None else resolve_ttl(ctx, ttl_seconds)
    pid = write_pid(ctx, project)
    with ctx.db.write() as conn:
        now = ctx.now_us()
        renewed = _renew_on_seen(
            ctx,
            conn,
            pid,
            change_id,
            holder,
            requested,
            now,
            rules.claim,
            token_name or f"@{holder}",
        )
        if renewed is not None:
            return renewed
        stored = _live_lease(conn, pid, change_id)
        ttl = _renewal_ttl(ctx, requested, stored, holder)
        by = token_name
        return _apply_claim(
            ctx, conn, pid, change_id, holder, ttl, now, allocate=False, stored=stored, by=by
        )


def heartbeat(
    ctx: ServiceContext, project: Project, change_id: str, holder: str, ttl_seconds: int | None
) -> dict[str, Any]:
    requested = None if ttl_seconds is None else resolve_ttl(ctx, ttl_seconds)
    pid = write_pid(ctx, project)
    with ctx.db.write() as conn:
        now = ctx.now_us()
        renewed = _renew_on_seen(
            ctx, conn, pid, change_id, holder, requested, now, rules.heartbeat, None
        )
        if renewed is not None:
            return renewed
        stored = _live_lease(conn, pid, change_id)
        ttl = _renewal_ttl(ctx, requested, stored, holder)
        outcome = rules.heartbeat(
            stored or rules.LeaseState(),
            change_id=change_id,
            holder=holder,
            now_us=now,
            ttl_seconds=ttl,
        )
        save_lease(conn, pid, change_id, outcome.state, exists=stored is not None)
        _saw(ctx, pid, change_id, outcome.state)
        metrics.count_claim(outcome.events)
        return claim_json(change_id, outcome.state)


def release(
    ctx: ServiceContext,
    project: Project,
    change_id: str,
    holder: str,
    *,
    force: bool,
    actor: Actor,
) -> dict[str, Any]:
    pid = write_pid(ctx, project)
    by = actor.by if force else (actor.token_name or f"@{holder}")
    with ctx.db.write() as conn:
        now = ctx.now_us()
        seen = _seen(ctx, conn, pid, change_id)
        if seen is not None:
            guessed = _decide_on_seen(
                lambda: rules.release(
                    seen, change_id=change_id, holder=holder, now_us=now, force=force
                )
            )
            if guessed is not None and _save_release(
                ctx, conn, pid, change_id, guessed, by, now, seen
            ):
                return _released(change_id, guessed)
        exists, _, stored = get_change_lease(conn, pid, change_id)
        if not exists:
            raise change_not_found(change_id)
        if stored is None:
            return {"change_id": change_id, "released": False}
        _saw(ctx, pid, change_id, stored)
        outcome = rules.release(stored, change_id=change_id, holder=holder, now_us=now, force=force)
        if outcome.changed:
            _save_release(ctx, conn, pid, change_id, outcome, by, now, None)
        else:
            metrics.count_release(outcome.events)
        return _released(change_id, outcome)


def _save_release(
    ctx: ServiceContext,
    conn: Connection,
    pid: int,
    change_id: str,
    outcome: rules.LeaseOutcome,
    by: str,
    now: int,
    seen: rules.LeaseState | None,
) -> bool:
    """Store a release's outcome: on the locked row (``seen`` None), or as a compare-and-set
    on ``seen`` (False: nothing written)."""
    events = _outcome_events(now, change_id, outcome, by)
    if seen is None:
        save_lease(conn, pid, change_id, outcome.state, exists=True, events=events, now_us=now)
    elif not compare_and_save(conn, pid, change_id, seen, outcome.state, events=events, now_us=now):
        return False
    metrics.count_release(outcome.events)
    _saw(ctx, pid, change_id, outcome.state)
    return True


def _released(change_id: str, outcome: rules.LeaseOutcome) -> dict[str, Any]:
    released = any(name in ("release", "force_release") for name, _ in outcome.events)
    return {"change_id": change_id, "released": released}


def get_active_lease(ctx: ServiceContext, project: Project, change_id: str) -> dict[str, Any]:
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        if pid is None or get_change(conn, pid, change_id) is None:
            raise NotFound(
                f"change not found: {change_id}", kind="change_not_found", change_id=change_id
            )
        state = get_lease(conn, pid, change_id)
    if state is None or not state.is_active(ctx.now_us()):
        raise NotFound(
            f"change '{change_id}' has no active lease",
            kind="lease_not_found",
            change_id=change_id,
        )
    return claim_json(change_id, state)


def list_leases(ctx: ServiceContext, project: Project) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, project, create=False)
        if pid is None:
            return []
        active = list_active(conn, pid, ctx.now_us())
    return [
        claim_json(
            a.change_id,
            rules.LeaseState(
                holder=a.holder,
                acquired_us=a.acquired_us,
                expires_us=a.expires_us,
                ttl_seconds=a.ttl_seconds,
                fencing_token=a.fencing_token,
            ),
        )
        for a in active
    ]


AVOID_OVERLAP = ("prefer", "strict", "off")


def allocate(
    ctx: ServiceContext,
    project: Project,
    holder: str,
    ttl_seconds: int | None,
    *,
    module: str | None = None,
    changes: Sequence[str] | None = None,
    avoid_overlap: str = "prefer",
    token_name: str | None = None,
) -> dict[str, Any]:
    """Pick the first eligible change and lease it to ``holder`` in the same transaction.

    A holder that already holds an active lease within the filters gets that lease back
    (renewed) instead of a second one: an agent that restarts resumes its work, and no agent
    ever holds two changes through allocation.

    ``avoid_overlap``: ``prefer`` (default) offers changes without a strong overlap with a
    busy change (leased or in progress) first, and an overlapping one only when nothing else
    is eligible; ``strict`` never offers an overlapping one (``claim: null`` instead); ``off``
    ignores overlaps. The claim names the busy changes it overlaps (``overlaps``).
    ``token_name``: as for :func:`claim`.
    """
    if avoid_overlap not in AVOID_OVERLAP:
        raise ValidationError(
            "avoid_overlap must be prefer, strict or off",
            kind="invalid_request",
            allowed=list(AVOID_OVERLAP),
        )
    requested = None if ttl_seconds is None else resolve_ttl(ctx, ttl_seconds)
    ttl = ctx.policy.lease_ttl if requested is None else requested
    by = token_name or f"@{holder}"
    pid = write_pid(ctx, project)
    with ctx.db.write() as conn:
        now = ctx.now_us()
        # One cheap check with the first; when it says no overlap is possible, allocation is
        # exactly the plain path.
        mine, overlap = held_and_overlap_possible(
            conn,
            pid,
            holder,
            now,
            module=module,
            change_ids=changes,
            overlaps=avoid_overlap != "off",
        )
        if mine is not None:
            require_live_change(conn, pid, mine)
            stored = get_lease(conn, pid, mine)
            renewal = _renewal_ttl(ctx, requested, stored, holder)
            metrics.ALLOCATIONS.labels("granted").inc()
            renewed = _apply_claim(
                ctx, conn, pid, mine, holder, renewal, now, allocate=True, stored=stored, by=by
            )
            if overlap:
                renewed = _with_overlaps(conn, pid, renewed, now)
            return {"claim": renewed}
        if overlap:
            picked = _pick_without_overlap(ctx, conn, pid, holder, ttl, now, module, changes, by)
            if picked is not None:
                metrics.ALLOCATIONS.labels("granted").inc()
                return {"claim": picked}
            if avoid_overlap == "strict":
                metrics.ALLOCATIONS.labels("no_work").inc()
                return {"claim": None}
            claimed = _next_free(ctx, conn, pid, holder, ttl, now, module, changes, by)
            if claimed is not None:
                claimed = _with_overlaps(conn, pid, claimed, now)
        else:
            claimed = _next_free(ctx, conn, pid, holder, ttl, now, module, changes, by)
        metrics.ALLOCATIONS.labels("no_work" if claimed is None else "granted").inc()
        return {"claim": claimed}


ON_LOOP: frozenset[Callable[..., Any]] = frozenset({claim, heartbeat, release, allocate})
"""The use cases whose every statement is a ``fast`` one of :mod:`loom.store._raw` (once the
project id is known): on PostgreSQL they may run on the event loop without blocking it
(:meth:`loom.store.engine.Database.run_write` ``on_loop``). tests/store/test_loop_writes.py
checks that they run no blocking statement there."""


def _next_free(
    ctx: ServiceContext,
    conn: Connection,
    pid: int,
    holder: str,
    ttl: int,
    now: int,
    module: str | None,
    changes: Sequence[str] | None,
    by: str,
) -> dict[str, Any] | None:
    """Claim the first eligible change in the usual order (None: no work)."""
    tried: list[str] = []
    while True:
        change_id = next_candidate(conn, pid, now, module=module, change_ids=changes, exclude=tried)
        if change_id is None:
            return None
        try:
            return _apply_claim(ctx, conn, pid, change_id, holder, ttl, now, allocate=True, by=by)
        except LeaseConflict:
            # Claimed and committed between the candidate's snapshot and its row lock
            # (PostgreSQL only); the lease was re-read under the lock. Ask again.
            tried.append(change_id)


def _pick_without_overlap(
    ctx: ServiceContext,
    conn: Connection,
    pid: int,
    holder: str,
    ttl: int,
    now: int,
    module: str | None,
    changes: Sequence[str] | None,
    by: str,
) -> dict[str, Any] | None:
    """Claim the first eligible change sharing no requirement with a busy one (None: none).

    The database finds it (:func:`loom.store.overlap_allocation.first_without_overlap`),
    however many eligible changes before it overlap a busy one. SQLite: its writers are
    serialised, so the answer stands and is claimed at once. PostgreSQL: the candidate's
    row is locked without waiting (SKIP LOCKED: every allocator walks the same order, and
    waiting would queue them all behind the first); allocators read from their own
    snapshots, so two of them could each take one change of an overlapping pair: its lease
    is read again after the lock, its requirements are try-locked (advisory, never waiting)
    and the busy changes' requirements are read again after those locks, before the claim.
    A candidate that fails any of these is passed over and the next one asked for; when a
    requirement's lock was taken, so is every change touching that requirement (one more
    statement, however many there are).
    """
    pg = conn.dialect.name == "postgresql"
    tried: list[str] = []
    taken: list[tuple[str, str]] = []
    while True:
        found = first_without_overlap(
            conn, pid, now, module=module, change_ids=changes, exclude=tried, taken=taken
        )
        if found is None:
            return None
        change_id, stored = found
        if pg:
            locks = lock_requirements(conn, pid, change_id, now)
            stored = locks.stored
            if locks.taken is not None:
                # Another allocator is claiming a change with this requirement: every
                # change touching it is passed over too, not tried one by one.
                taken.append(locks.taken)
            if not locks.free or (locks.has_requirements and locks.overlaps):
                tried.append(change_id)
                continue
        # Free: SQLite serialises writers; PostgreSQL read the lease after the row lock.
        return _apply_claim(
            ctx, conn, pid, change_id, holder, ttl, now, allocate=True, stored=stored, by=by
        )


def _with_overlaps(conn: Connection, pid: int, claimed: dict[str, Any], now: int) -> dict[str, Any]:
    """The claim, naming the busy changes it shares a requirement with (if any)."""
    others = busy_overlaps(conn, pid, claimed["change_id"], now)
    return {**claimed, "overlaps": others} if others else claimed
