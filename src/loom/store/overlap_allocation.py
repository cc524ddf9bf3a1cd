"""The queries of overlap-aware allocation: the first eligible change sharing no requirement
with a *busy* change (in progress, or actively leased), found by the database.

The busy changes' requirements are few (one change per working agent), so they are read
once per statement (``busy``); the changes sharing one of them with another busy change are
read once too, through the ``(project_id, capability, requirement)`` index, and every
candidate, walked in canonical order on the ``(project_id, sort_key)`` index, is probed
against that set. No window: however many eligible changes overlap a busy one, the first one
that does not is found, and the cost per change passed over is index probes, not a round
trip.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Connection

from loom.domain.leases import LeaseState
from loom.store import _raw
from loom.store.leases import (
    ABANDONED_SQL,
    HELD_SQL,
    OPEN_SQL,
    candidate_filters,
    first_held,
    held_by,
    held_params,
    lease_state,
    pg_first_candidate,
)
from loom.store.requirements import ANY_REQUIREMENT_SQL, any_busy_requirement

__all__ = [
    "RequirementLocks",
    "busy_overlaps",
    "first_without_overlap",
    "held_and_overlap_possible",
    "lock_requirements",
    "overlap_possible",
]

# The requirements of busy changes: (change_id, capability, requirement). Four parameters:
# project, project, now, project. Archived changes have no index rows, so a lease left on
# one does not count. ``CROSS JOIN`` keeps the few busy changes on the outside, each probing
# the index by primary-key prefix (SQLite otherwise scanned the project's every index row).
_BUSY_ROWS = (
    "SELECT r.change_id, r.capability, r.requirement FROM ("
    "SELECT b.change_id FROM changes b WHERE b.project_id = ?"
    " AND b.work_status = 'in-progress' AND b.archived_us IS NULL"
    " UNION SELECT l.change_id FROM leases l WHERE l.project_id = ?"
    " AND l.holder IS NOT NULL AND l.expires_us > ?) ids"
    " CROSS JOIN change_requirements r WHERE r.project_id = ? AND r.change_id = ids.change_id"
)
# The same, one row per requirement, with the least and greatest busy change touching it: a
# change is blocked by a busy requirement unless it is the only busy change touching it.
_BUSY_KEYS = (
    "SELECT capability, requirement, MIN(change_id) AS lo, MAX(change_id) AS hi"
    f" FROM ({_BUSY_ROWS}) busy_rows GROUP BY capability, requirement"
)
# A candidate ``c`` is none of the changes sharing a requirement with a busy change other
# than themselves. The set is uncorrelated: the database computes it once per statement (from
# the few busy requirements, through the ``(project_id, capability, requirement)`` index) and
# probes it by hash for each candidate walked. (A correlated NOT EXISTS let PostgreSQL's
# planner hoist the same join out of the walk and scan it whole for every candidate:
# quadratic when everything overlaps.) One parameter: project. ``{free}`` in the filters
# stands for it, in each engine's form:
# - SQLite: ``CROSS JOIN`` keeps the few busy requirements outside, and the index hint makes
#   it probe the requirement index (it preferred the covering primary key: every index row
#   of the project for each busy requirement).
# - PostgreSQL: a ``LATERAL`` subquery, fenced with ``OFFSET 0`` so it is not flattened
#   into a join, probes the index once per busy requirement. As a plain join, the planner
#   (over-estimating the busy rows) hash-joined them against a sequential scan of the
#   project's every requirement row: the largest part of an allocation at 50,000 changes.
_FREE_OF_BUSY = {
    "sqlite": (
        " AND c.change_id NOT IN (SELECT m.change_id FROM busy o CROSS JOIN change_requirements m"
        " INDEXED BY ix_change_requirements_project_id_capability_requirement"
        " WHERE m.project_id = ? AND m.capability = o.capability"
        " AND m.requirement = o.requirement AND (o.lo <> m.change_id OR o.hi <> m.change_id))"
    ),
    "postgresql": (
        " AND c.change_id NOT IN (SELECT m.change_id FROM busy o CROSS JOIN LATERAL"
        " (SELECT r.change_id FROM change_requirements r WHERE r.project_id = ?"
        " AND r.capability = o.capability AND r.requirement = o.requirement"
        " AND (o.lo <> r.change_id OR o.hi <> r.change_id) OFFSET 0) m)"
    ),
}
_LEASE_COLUMNS = (
    "l.holder, l.acquired_us, l.expires_us, l.ttl_seconds, l.fencing_token,"
    " l.previous_holder, l.expiry_recorded"
)


# A requirement another allocator holds the advisory lock of (PostgreSQL: it is claiming a
# change touching it, not yet committed), as a row of ``busy`` that no change is alone on:
# every change touching it is passed over. Two parameters: capability, requirement.
_TAKEN_KEY = " UNION ALL SELECT CAST(? AS text), CAST(? AS text), '', ''"


def _with_busy(pg: bool, taken: int = 0) -> str:
    # Materialised: the busy requirements are read once per statement.
    keys = _BUSY_KEYS + _TAKEN_KEY * taken
    return f"WITH busy AS {'MATERIALIZED ' if pg else ''}({keys}) "


def _filters(
    module: str | None, change_ids: Sequence[str] | None, exclude: Sequence[str]
) -> tuple[str, list[object]]:
    """The candidate filters after ``c.project_id = ?`` and their parameters, with
    ``{free}`` where the overlap filter goes."""
    text, params = candidate_filters(module, change_ids, exclude)
    return text + "{free}", params


@functools.lru_cache(maxsize=64)
def _sqlite_pick(filters: str) -> _raw.SQL:
    """SQLite, one statement: the first abandoned candidate, else the first open one, with its
    lease row (joined to the one row picked, so the join cannot spoil the walk's plan)."""
    filters = filters.replace("{free}", _FREE_OF_BUSY["sqlite"])
    abandoned = ABANDONED_SQL.format(filters=filters, lock="")
    open_ = OPEN_SQL.format(filters=filters, lock="")
    return _raw.SQL(
        _with_busy(False) + f"SELECT p.change_id, l.change_id, {_LEASE_COLUMNS}"
        f" FROM (SELECT 0 AS k, change_id FROM ({abandoned})"
        f" UNION ALL SELECT 1 AS k, change_id FROM ({open_})) p"
        " LEFT JOIN leases l ON l.project_id = ? AND l.change_id = p.change_id"
        " ORDER BY p.k LIMIT 1"
    )


@functools.lru_cache(maxsize=64)
def _pg_pick(filters: str, taken: int) -> _raw.SQL:
    """PostgreSQL, one statement: the abandoned candidate (``a``), and only when there is
    none (a one-time filter: the second scan does not even start) the first open one; each
    locks the one row it returns. ``taken``: how many requirements locked by other
    allocators count as busy."""
    filters = filters.replace("{free}", _FREE_OF_BUSY["postgresql"])
    return _raw.SQL(_with_busy(True, taken)[:-1] + f", {pg_first_candidate(filters)}", fast=True)


def first_without_overlap(
    conn: Connection,
    project_id: int,
    now_us: int,
    *,
    module: str | None,
    change_ids: Sequence[str] | None,
    exclude: Sequence[str] = (),
    taken: Sequence[tuple[str, str]] = (),
) -> tuple[str, LeaseState | None] | None:
    """The first eligible change, in :func:`loom.store.leases.next_candidate`'s order
    (abandoned work first, then canonical order), that shares no requirement with a busy
    change; None when there is none. Returns its stored lease with it.

    SQLite: one statement; the write transaction holds the database lock, so the answer
    stands. PostgreSQL: one statement too, locking the one row it returns (``FOR UPDATE
    OF c SKIP LOCKED``: concurrent allocators skip each other's candidate); its lease was
    read from the statement's snapshot, which may predate a competitor's commit, so the
    lease returned is None and the caller reads it again, after the lock, with
    :func:`lock_requirements`. ``taken`` (PostgreSQL): requirements whose lock another
    allocator holds, as :func:`lock_requirements` reported them; the changes touching them
    are passed over as if the requirement were busy.
    """
    if change_ids is not None and not change_ids:
        return None
    filters, extra = _filters(module, change_ids, exclude)
    busy: list[object] = [project_id, project_id, now_us, project_id]
    candidate = [project_id, *extra, project_id, now_us]
    if conn.dialect.name == "postgresql":
        busy.extend(part for key in taken for part in key)
        pick = _pg_pick(filters, len(taken))
        found = _raw.fetchone(conn, pick, [*busy, *candidate, *candidate])
        return None if found is None else (str(found[0]), None)
    params = [*busy, *candidate, *candidate, project_id]
    row = _raw.fetchone(conn, _sqlite_pick(filters), params)
    if row is None:
        return None
    return str(row[0]), None if row[1] is None else lease_state(row[2:])


# PostgreSQL, after the candidate's row lock: its lease as committed now, whether it has index
# rows, whether the lease is active (claimed and committed since the pick's snapshot), and,
# when it is not, a transaction-scoped advisory lock tried (never waiting: no deadlock) on
# each of its requirements, stopping at the first one another transaction holds, which is
# returned. Two allocators taking changes that share a requirement thus cannot both get
# through, and the one that comes after the other's commit sees its lease.
_LOCK_KEY = (
    "hashtextextended('loom-requirement' || chr(10) || r.project_id || chr(10)"
    " || r.capability || chr(10) || r.requirement, 0)"
)
_PG_LOCK_REQUIREMENTS = _raw.SQL(
    f"SELECT l.change_id, {_LEASE_COLUMNS},"
    " EXISTS (SELECT 1 FROM change_requirements r"
    " WHERE r.project_id = one.project_id AND r.change_id = one.change_id),"
    " COALESCE(l.holder IS NOT NULL AND l.expires_us > ?, false) AS held,"
    " CASE WHEN l.holder IS NOT NULL AND l.expires_us > ? THEN NULL"
    " ELSE (SELECT r.capability || chr(10) || r.requirement FROM change_requirements r"
    " WHERE r.project_id = one.project_id AND r.change_id = one.change_id"
    f" AND NOT pg_try_advisory_xact_lock({_LOCK_KEY}) LIMIT 1) END"
    " FROM (SELECT CAST(? AS integer) AS project_id, CAST(? AS text) AS change_id) one"
    " LEFT JOIN leases l ON l.project_id = one.project_id AND l.change_id = one.change_id",
    fast=True,
)


class RequirementLocks(NamedTuple):
    """What :func:`lock_requirements` found about one candidate."""

    free: bool
    """Its lease is not active and every one of its requirements is now locked by us."""
    has_requirements: bool
    stored: LeaseState | None
    """Its lease row as committed now."""
    taken: tuple[str, str] | None
    """A requirement (capability, name) whose lock another transaction holds."""
    overlaps: list[str]
    """The busy changes sharing a requirement with it, read after the locks
    (:func:`busy_overlaps`)."""


def lock_requirements(
    conn: Connection, project_id: int, change_id: str, now_us: int
) -> RequirementLocks:
    """PostgreSQL: lock the candidate's requirements (see above), then read the busy changes
    it overlaps again (:func:`busy_overlaps`): two statements in one round trip, the second
    run after the first with a snapshot of its own, so it sees every claim committed before
    our locks were taken (a competitor that commits later must take them first)."""
    locking = (now_us, now_us, project_id, change_id)
    found, overlapping = _raw.fetch_together(
        conn,
        [
            (_PG_LOCK_REQUIREMENTS, locking),
            (_OVERLAPS, _overlaps_params(project_id, change_id, now_us)),
        ],
    )
    row = found[0]
    stored = None if row[0] is None else lease_state(row[1:8])
    taken = None
    if row[10] is not None:
        # Capability names are path segments (no line break): the first one splits the two.
        capability, _, requirement = str(row[10]).partition("\n")
        taken = (capability, requirement)
    return RequirementLocks(
        not row[9] and taken is None,
        bool(row[8]),
        stored,
        taken,
        [str(r[0]) for r in overlapping],
    )


# Both sides materialised first (the change's own requirements by primary-key prefix, the busy
# ones as above), then joined: on tables not yet analysed (a project imported a moment ago)
# PostgreSQL otherwise planned one three-way nested loop over every index row of the
# project, seconds per allocation at 2,000 rows.
_OVERLAPS = _raw.SQL(
    f"WITH busy AS MATERIALIZED ({_BUSY_ROWS}), mine AS MATERIALIZED (SELECT capability,"
    " requirement FROM change_requirements WHERE project_id = ? AND change_id = ?)"
    " SELECT DISTINCT o.change_id FROM mine m JOIN busy o"
    " ON o.capability = m.capability AND o.requirement = m.requirement"
    " WHERE o.change_id <> ? ORDER BY o.change_id",
    fast=True,
)
_SQLITE_OVERLAPS = _raw.SQL(_OVERLAPS.qmark.replace(" MATERIALIZED", ""), fast=True)


def busy_overlaps(conn: Connection, project_id: int, change_id: str, now_us: int) -> list[str]:
    """The busy changes (other than ``change_id``) sharing a requirement with it (one
    statement)."""
    sql = _OVERLAPS if conn.dialect.name == "postgresql" else _SQLITE_OVERLAPS
    params = _overlaps_params(project_id, change_id, now_us)
    return [str(r[0]) for r in _raw.fetchall(conn, sql, params)]


def _overlaps_params(project_id: int, change_id: str, now_us: int) -> tuple[object, ...]:
    return (project_id, project_id, now_us, project_id, project_id, change_id, change_id)


def overlap_possible(conn: Connection, project_id: int, now_us: int) -> bool:
    """Whether an allocation could hand out a change overlapping a busy one (one statement).

    SQLite serialises writers, so only committed busy changes matter: is there a busy change
    (leased or in progress) with an indexed requirement? PostgreSQL allocators run at once
    and do not see each other's uncommitted claims: two could each take one change of an
    overlapping pair although neither was busy when they started, so any requirement row in
    the project turns the overlap pass (and its requirement try-locks) on there. A project
    without requirement rows (changes without requirement deltas) takes the plain path on
    both.
    """
    if conn.dialect.name == "postgresql":
        return bool(_raw.fetchall(conn, ANY_REQUIREMENT_SQL, (project_id,)))
    return any_busy_requirement(conn, project_id, now_us)


def held_and_overlap_possible(
    conn: Connection,
    project_id: int,
    holder: str,
    now_us: int,
    *,
    module: str | None,
    change_ids: Sequence[str] | None,
    overlaps: bool,
) -> tuple[str | None, bool]:
    """An allocation's first questions: :func:`loom.store.leases.held_by` (the change the
    holder already holds, if any) and, when ``overlaps``, :func:`overlap_possible` (False
    when not asked). On PostgreSQL the first statement of each goes in one round trip; the
    answers are the same as asking one after the other (the second does not depend on the
    first, and on PostgreSQL it reads no lease)."""
    if not overlaps or conn.dialect.name != "postgresql":
        mine = held_by(conn, project_id, holder, now_us, module=module, change_ids=change_ids)
        return mine, overlaps and overlap_possible(conn, project_id, now_us)
    held, any_requirement = _raw.fetch_together(
        conn,
        [(HELD_SQL, held_params(project_id, holder, now_us)), (ANY_REQUIREMENT_SQL, (project_id,))],
    )
    mine = first_held(conn, project_id, held, module=module, change_ids=change_ids)
    return mine, bool(any_requirement)


# The pick statements of the commonest allocations (no filter, a module filter), built at
# import: a server prepares the ``fast`` statements built so far on the connections it
# opens ahead of need (``Database.warm_loop_connections``), so its first allocations plan
# but do not parse them.
for _module in (None, "m", "m.1"):
    _pg_pick(_filters(_module, None, ())[0], 0)
