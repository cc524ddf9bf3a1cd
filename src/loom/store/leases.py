"""Lease rows (one per change, created lazily) and the allocation candidate query."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from loom import metrics
from loom.domain.leases import LeaseState
from loom.store import _raw
from loom.store.events import EVENT_COLUMNS, append_events, event_rows, note_appended
from loom.store.schema import leases

__all__ = [
    "ABANDONED_SQL",
    "HELD_SQL",
    "MODULE_FILTERS",
    "OPEN_SQL",
    "ActiveLease",
    "can_compare_and_save",
    "candidate_filters",
    "compare_and_save",
    "first_held",
    "get_lease",
    "held_by",
    "held_params",
    "lease_state",
    "list_active",
    "module_kind",
    "next_candidate",
    "pg_first_candidate",
    "save_lease",
]


@dataclass(frozen=True)
class ActiveLease:
    change_id: str
    holder: str
    acquired_us: int
    expires_us: int
    ttl_seconds: int
    fencing_token: int


_LEASE_COLUMNS = (
    "holder",
    "acquired_us",
    "expires_us",
    "ttl_seconds",
    "fencing_token",
    "previous_holder",
    "expiry_recorded",
)
"""A lease row's state columns, in ``_GET``/``_UPDATE``/``_INSERT`` order (the
:class:`LeaseState` fields of the same names)."""


_COLS = ", ".join(_LEASE_COLUMNS)
_GET = _raw.SQL(
    f"SELECT {_COLS} FROM leases WHERE project_id = ? AND change_id = ?",
    fast=True,
)
_UPDATE = _raw.SQL(
    "UPDATE leases SET "
    + ", ".join(f"{column} = ?" for column in _LEASE_COLUMNS)
    + " WHERE project_id = ? AND change_id = ?",
    fast=True,
)
_INSERT = _raw.SQL(
    f"INSERT INTO leases ({_COLS}, project_id, change_id)"
    f" VALUES ({', '.join('?' for _ in range(len(_LEASE_COLUMNS) + 2))})",
    fast=True,
)


def _state(row: Sequence[Any]) -> LeaseState:
    """A lease row's state from its columns in ``_GET`` order."""
    holder, acquired, expires, ttl, token, previous, recorded = row
    return LeaseState(
        holder=holder,
        acquired_us=acquired,
        expires_us=expires,
        ttl_seconds=ttl,
        fencing_token=int(token),
        previous_holder=previous,
        expiry_recorded=bool(recorded),
    )


def get_lease(conn: Connection, project_id: int, change_id: str) -> LeaseState | None:
    """The stored state, or None when the change never had a lease row (hot path: raw SQL)."""
    row = _raw.fetchone(conn, _GET, (project_id, change_id))
    return None if row is None else _state(row)


_WITH_CHANGE = _raw.SQL(
    "SELECT c.archived_us, l.change_id, l.holder, l.acquired_us, l.expires_us, l.ttl_seconds,"
    " l.fencing_token, l.previous_holder, l.expiry_recorded"
    " FROM changes c LEFT JOIN leases l"
    " ON l.project_id = c.project_id AND l.change_id = c.change_id"
    " WHERE c.project_id = ? AND c.change_id = ?"
)
# PostgreSQL: lock the change row, then read the lease (migration 0005), one round trip.
_PG_LOCK_CHANGE_LEASE = _raw.SQL(
    "SELECT archived_us, has_lease, holder, acquired_us, expires_us, ttl_seconds,"
    " fencing_token, previous_holder, expiry_recorded FROM loom_lock_change_lease(?, ?)",
    fast=True,
)


def get_change_lease(
    conn: Connection, project_id: int, change_id: str
) -> tuple[bool, int | None, LeaseState | None]:
    """(change exists, its archived_us, its stored lease or None), the change locked for the
    rest of the transaction, as every lease write needs.

    SQLite: one statement (the transaction already holds the database write lock).
    PostgreSQL: one call of ``loom_lock_change_lease`` (migration 0005), which locks the
    change row and *then* reads the lease in a second statement. Under READ COMMITTED a
    statement reads the snapshot taken when it started, so a single ``SELECT … FOR UPDATE
    OF c`` joined to the lease would return the lease as it was before it waited for the
    lock — a competitor's claim committed meanwhile would be invisible and be overwritten
    (two holders). The statement after the lock sees every commit before it.
    """
    pg = conn.dialect.name == "postgresql"
    row = _raw.fetchone(
        conn, _PG_LOCK_CHANGE_LEASE if pg else _WITH_CHANGE, (project_id, change_id)
    )
    if row is None:
        return False, None, None
    if not row[1]:  # PostgreSQL: has_lease; SQLite: the lease's change_id (NULL: no row)
        return True, row[0], None
    return True, row[0], _state(row[2:])


def _lease_values(state: LeaseState) -> tuple[Any, ...]:
    return tuple(getattr(state, column) for column in _LEASE_COLUMNS)


def _lease_params(state: LeaseState, project_id: int, change_id: str) -> tuple[Any, ...]:
    """``_UPDATE``'s and ``_INSERT``'s parameters."""
    return (*_lease_values(state), project_id, change_id)


def save_lease(
    conn: Connection,
    project_id: int,
    change_id: str,
    state: LeaseState,
    *,
    exists: bool,
    events: Sequence[dict[str, Any]] = (),
    now_us: int = 0,
) -> None:
    """Write the state, and append ``events`` (stamped ``now_us``) to the audit log.

    The caller holds the change's lock, so plain writes are safe. On PostgreSQL the lease
    write and the events are one statement (a data-modifying ``WITH``), and on the event
    loop it goes with the COMMIT (or the next statement): no round trip of its own
    (:func:`loom.store._raw.execute_deferred`).
    """
    params = _lease_params(state, project_id, change_id)
    if events and conn.dialect.name == "postgresql":
        note_appended(conn, project_id)
        rows = event_rows(project_id, events, now_us)
        sql = _pg_save_with_events(exists, len(rows))
        _raw.execute_deferred(conn, sql, [*params, *(value for row in rows for value in row)])
        return
    _raw.execute_deferred(conn, _UPDATE if exists else _INSERT, params)
    if events:
        append_events(conn, project_id, events, now_us)


@functools.cache
def _pg_save_with_events(exists: bool, count: int) -> _raw.SQL:
    """``WITH saved AS (<lease write>) INSERT INTO events …``: both, one statement. The
    events are appended unnumbered, as :func:`loom.store.events.append_events` does on
    PostgreSQL (``publish_events`` numbers them)."""
    values = ", ".join("(?, ?, ?, ?, ?, ?, ?)" for _ in range(count))
    return _raw.SQL(
        f"WITH saved AS ({(_UPDATE if exists else _INSERT).qmark})"
        f" INSERT INTO events ({EVENT_COLUMNS}) VALUES {values}",
        fast=True,
    )


# A lease write with its one or two events (a claim; an expiry and the claim after it), built
# at import so that connections opened ahead of need prepare them (``prepare_known``).
for _exists in (False, True):
    for _count in (1, 2):
        _pg_save_with_events(_exists, _count)


def can_compare_and_save(conn: Connection) -> bool:
    """Whether :func:`compare_and_save` may run on ``conn`` now: PostgreSQL, on the event
    loop, before anything else of the transaction."""
    return _raw.fresh_on_loop(conn)


_EVENT_CASTS = "?::integer, ?::varchar, ?::varchar, ?::varchar, ?::text, ?::bigint, ?::varchar"
"""One appended event's parameters (:func:`loom.store.events.event_rows` order), typed: in an
``INSERT … SELECT`` PostgreSQL does not infer them from the columns."""


@functools.cache
def _compare_and_save_sql(count: int) -> _raw.SQL:
    """Lock the live change row, update its lease row only if every column still holds the
    seen state, and append ``count`` events only if it did; returns the rows updated (0/1)."""
    seen = " AND ".join(f"{column} IS NOT DISTINCT FROM ?" for column in _LEASE_COLUMNS)
    appended = ""
    if count:
        rows = " UNION ALL ".join(
            f"SELECT {_EVENT_CASTS} WHERE EXISTS (SELECT 1 FROM saved)" for _ in range(count)
        )
        appended = f", appended AS (INSERT INTO events ({EVENT_COLUMNS}) {rows})"
    return _raw.SQL(
        "WITH live AS (SELECT 1 FROM changes WHERE project_id = ? AND change_id = ?"
        " AND archived_us IS NULL FOR UPDATE),"
        f" saved AS ({_UPDATE.qmark} AND {seen} AND EXISTS (SELECT 1 FROM live) RETURNING 1)"
        f"{appended} SELECT count(*) FROM saved",
        fast=True,
    )


def compare_and_save(
    conn: Connection,
    project_id: int,
    change_id: str,
    seen: LeaseState,
    state: LeaseState,
    *,
    events: Sequence[dict[str, Any]] = (),
    now_us: int = 0,
) -> bool:
    """PostgreSQL, as the transaction's first statement (:func:`can_compare_and_save`): the
    lease write of a decision taken on ``seen``, a state read before this transaction (an
    earlier request's), made only if it still holds. One statement, committed in the same
    round trip: it takes the change row's lock as every lease write does, so it waits for a
    competitor's transaction and then compares the lease row as that one left it (a row
    updated meanwhile is re-checked by PostgreSQL against the newest version). True: ``state``
    is stored and ``events`` appended. False: nothing was written (the change is archived or
    gone, or its lease moved on); the caller decides again on the locked row."""
    rows = event_rows(project_id, events, now_us)
    params: list[Any] = [
        project_id,
        change_id,
        *_lease_params(state, project_id, change_id),
        *_lease_values(seen),
    ]
    for row in rows:
        params.extend(row)
    (written,) = _raw.commit_alone(
        conn, _compare_and_save_sql(len(rows)), params, order=(project_id, change_id)
    )
    if not written[0]:
        metrics.LEASE_GUESS_MOVED_ON.inc()
        return False
    metrics.LEASE_GUESS_WRITTEN.inc()
    if rows:
        note_appended(conn, project_id)
    return True


for _count in (0, 1, 2):
    _compare_and_save_sql(_count)

_ACTIVE = select(
    leases.c.change_id,
    leases.c.holder,
    leases.c.acquired_us,
    leases.c.expires_us,
    leases.c.ttl_seconds,
    leases.c.fencing_token,
)


def _active(r: Sequence[Any]) -> ActiveLease:
    change_id, holder, acquired, expires, ttl, token = r
    return ActiveLease(
        str(change_id),
        str(holder),
        int(acquired),
        int(expires),
        int(ttl or 0),
        int(token),
    )


def list_active(conn: Connection, project_id: int, now_us: int) -> list[ActiveLease]:
    rows = conn.execute(
        _ACTIVE.where(
            leases.c.project_id == project_id,
            leases.c.holder.is_not(None),
            leases.c.expires_us > now_us,
        ).order_by(leases.c.expires_us, leases.c.change_id)
    )
    return [_active(r) for r in rows]


def active_leases_for(
    conn: Connection, project_id: int, change_ids: Sequence[str], now_us: int
) -> dict[str, ActiveLease]:
    if not change_ids:
        return {}
    rows = conn.execute(
        _ACTIVE.where(
            leases.c.project_id == project_id,
            leases.c.change_id.in_(list(change_ids)),
            leases.c.holder.is_not(None),
            leases.c.expires_us > now_us,
        )
    )
    return {lease.change_id: lease for lease in map(_active, rows)}


# Eligible changes, in canonical order, not actively leased. The lease is looked up with a
# correlated scalar subquery, not a join: the planner cannot pull it up, so it is one
# primary-key probe per change visited. With a join, PostgreSQL on stale statistics (a
# project imported less than an autovacuum cycle ago) chose a nested loop that rescanned
# every lease of the project for every change: 150 ms per allocation at 500 changes.
_ACTIVE_UNTIL = (
    "COALESCE((SELECT l.expires_us FROM leases l WHERE l.project_id = c.project_id"
    " AND l.change_id = c.change_id AND l.holder IS NOT NULL), 0)"
)
# Abandoned work: in progress, and its lease ran out without being released or taken over.
_ABANDONED = (
    "SELECT c.change_id FROM changes c"
    " WHERE c.project_id = ? AND c.work_status = 'in-progress' AND c.archived_us IS NULL{filters}"
    f" AND {_ACTIVE_UNTIL} BETWEEN 1 AND ?"
    " ORDER BY {order} LIMIT 1{lock}"
)
# Everything else that may be offered: ready, or in progress without an active lease.
_OPEN = (
    "SELECT c.change_id FROM changes c"
    " WHERE c.project_id = ? AND c.work_status IN ('ready', 'in-progress')"
    " AND c.archived_us IS NULL{filters}"
    f" AND {_ACTIVE_UNTIL} <= ?"
    " ORDER BY {order} LIMIT 1{lock}"
)
# The canonical order (PRODUCT.md §3.3). A preference key goes in front of it.
_ORDER = "c.sort_key"
_PG_LOCK = " FOR UPDATE OF c SKIP LOCKED"
_MODULE_FILTERS = {
    None: "",
    "module": " AND c.module_id = ?",
    "sub_module": " AND c.sub_module_id = ?",
}


def module_kind(module: str | None) -> str | None:
    """The key of :data:`MODULE_FILTERS` for a module filter: a sub-module id has a dot."""
    return None if module is None else ("sub_module" if "." in module else "module")


def candidate_filters(
    module: str | None, change_ids: Sequence[str] | None, exclude: Sequence[str]
) -> tuple[str, list[object]]:
    """The candidate filters after ``c.project_id = ?`` and their parameters: the module
    (:data:`MODULE_FILTERS`), the changes asked for, the changes to pass over."""
    text = _MODULE_FILTERS[module_kind(module)]
    params: list[object] = [] if module is None else [module]
    if change_ids is not None:
        text += f" AND c.change_id IN ({', '.join('?' for _ in change_ids)})"
        params.extend(change_ids)
    if exclude:
        text += f" AND c.change_id NOT IN ({', '.join('?' for _ in exclude)})"
        params.extend(exclude)
    return text, params


def _candidate_sql(template: str, filters: str) -> _raw.SQL:
    """SQLite's candidate statement (PostgreSQL's: :func:`_pg_candidate`)."""
    return _raw.SQL(template.format(filters=filters, order=_ORDER, lock=""), fast=True)


# The candidate statements with the filters and the lock left open (``{filters}``,
# ``{lock}``), for the overlap-aware pass (:mod:`loom.store.overlap_allocation`).
ABANDONED_SQL = _ABANDONED.format(filters="{filters}", order=_ORDER, lock="{lock}")
OPEN_SQL = _OPEN.format(filters="{filters}", order=_ORDER, lock="{lock}")
MODULE_FILTERS = _MODULE_FILTERS
lease_state = _state

_CANDIDATE_SQL = {
    (template, kind): _candidate_sql(template, f)
    for template in (_ABANDONED, _OPEN)
    for kind, f in _MODULE_FILTERS.items()
}


def next_candidate(
    conn: Connection,
    project_id: int,
    now_us: int,
    *,
    module: str | None,
    change_ids: Sequence[str] | None,
    exclude: Sequence[str] = (),
) -> str | None:
    """The first eligible change id: abandoned work first (in progress, its lease expired and
    never released or taken over), then every other ready or in-progress change without an
    active lease, in canonical order (PRODUCT.md §3.3); None when there is none.

    Two statements (one on PostgreSQL, :func:`_pg_candidate`), each ``ORDER BY sort_key
    LIMIT 1``: they walk the
    ``(project_id, sort_key)`` index and stop at the first eligible row instead of sorting
    the whole project (3 ms → 0.3 ms at 1,000 changes).

    On PostgreSQL the one row returned is locked (``FOR UPDATE OF c SKIP LOCKED``) until the
    transaction ends: concurrent allocators skip each other's candidate instead of queueing
    behind it, and each locks *exactly one* row, so no change is hidden from a concurrent
    caller unless some transaction is leasing it right now (locking a batch and leasing one
    answered "no work" to others while work remained). The caller re-reads the lease under
    the lock; if it was taken meanwhile, it asks again with that id in ``exclude``.
    """
    if change_ids is not None and not change_ids:
        return None
    pg = conn.dialect.name == "postgresql"
    kind = module_kind(module)
    filters, extra = candidate_filters(module, change_ids, exclude)
    params = [project_id, *extra, now_us]
    fixed = change_ids is None and not exclude  # the statement is built already
    if pg:
        both = _PG_CANDIDATE[kind] if fixed else _pg_candidate(filters)
        row = _raw.fetchone(conn, both, [*params, *params])
        return None if row is None else str(row[0])
    for template in (_ABANDONED, _OPEN):
        sql = _CANDIDATE_SQL[(template, kind)] if fixed else _candidate_sql(template, filters)
        row = _raw.fetchone(conn, sql, params)
        if row is not None:
            return str(row[0])
    return None


def pg_first_candidate(filters: str) -> str:
    """PostgreSQL, the candidate query after its ``WITH``: the first abandoned candidate
    (``a``), and only when there is none (a one-time filter: the second scan does not even
    start) the first open one; each locks the one row it returns (``FOR UPDATE OF c SKIP
    LOCKED``), so the query locks exactly one row. Its parameters: the candidate parameters
    twice (project, the filters', now)."""
    abandoned = _ABANDONED.format(filters=filters, order=_ORDER, lock=_PG_LOCK)
    open_ = _OPEN.format(filters=filters, order=_ORDER, lock=_PG_LOCK)
    return (
        f"a AS ({abandoned}) SELECT change_id FROM a UNION ALL SELECT change_id"
        f" FROM ({open_}) o WHERE NOT EXISTS (SELECT 1 FROM a)"
    )


@functools.lru_cache(maxsize=64)
def _pg_candidate(filters: str) -> _raw.SQL:
    """PostgreSQL, one statement (one round trip) where SQLite runs two."""
    return _raw.SQL(f"WITH {pg_first_candidate(filters)}", fast=True)


_PG_CANDIDATE = {kind: _pg_candidate(f) for kind, f in _MODULE_FILTERS.items()}


HELD_SQL = _raw.SQL(
    "SELECT change_id FROM leases WHERE project_id = ? AND holder = ? AND expires_us > ?",
    fast=True,
)
"""The holder's active leases (:func:`held_by`'s first statement; :func:`held_params`)."""


@functools.cache
def _first_live(count: int, kind: str | None) -> _raw.SQL:
    """The first of ``count`` changes (by id) not archived, in canonical order, within a
    module filter."""
    return _raw.SQL(
        "SELECT c.change_id FROM changes c WHERE c.project_id = ?"
        f" AND c.change_id IN ({', '.join('?' for _ in range(count))})"
        f" AND c.archived_us IS NULL{_MODULE_FILTERS[kind]} ORDER BY {_ORDER} LIMIT 1",
        fast=True,
    )


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
    :func:`next_candidate`: the holder's active leases first (usually none), then
    their changes by primary key.
    """
    rows = _raw.fetchall(conn, HELD_SQL, held_params(project_id, holder, now_us))
    return first_held(conn, project_id, rows, module=module, change_ids=change_ids)


def held_params(project_id: int, holder: str, now_us: int) -> tuple[int, str, int]:
    """The parameters of :data:`HELD_SQL` (the holder's active leases)."""
    return (project_id, holder, now_us)


def first_held(
    conn: Connection,
    project_id: int,
    rows: Sequence[tuple[Any, ...]],
    *,
    module: str | None,
    change_ids: Sequence[str] | None,
) -> str | None:
    """:func:`held_by`'s answer from the rows of its first statement (:data:`HELD_SQL`),
    which a caller may have sent with others."""
    mine = [str(r[0]) for r in rows]
    if change_ids is not None:
        wanted = set(change_ids)
        mine = [c for c in mine if c in wanted]
    if not mine:
        return None
    kind = module_kind(module)
    params: list[object] = [project_id, *mine]
    if module is not None:
        params.append(module)
    row = _raw.fetchone(conn, _first_live(len(mine), kind), params)
    return None if row is None else str(row[0])
