"""The requirement index (``change_requirements``) and the overlap queries built on it."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from loom.domain.specs import RequirementRef
from loom.store import _raw

__all__ = [
    "ActiveIndex",
    "active_index",
    "any_busy_requirement",
    "any_requirement",
    "busy_requirements",
    "delete_requirements",
    "insert_requirements",
    "overlapping",
    "replace_requirements",
    "requirements_for",
    "requirements_of",
    "shared_requirements",
    "try_lock_requirements",
]

_DELETE = _raw.SQL("DELETE FROM change_requirements WHERE project_id = ? AND change_id = ?")
_INSERT = _raw.SQL(
    "INSERT INTO change_requirements (project_id, change_id, capability, requirement, op,"
    " from_name, to_name) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_OF = _raw.SQL(
    "SELECT capability, requirement, op, from_name, to_name FROM change_requirements"
    " WHERE project_id = ? AND change_id = ? ORDER BY capability, requirement, op"
)


def delete_requirements(conn: Connection, project_id: int, change_id: str) -> None:
    _raw.execute(conn, _DELETE, (project_id, change_id))


def replace_requirements(
    conn: Connection, project_id: int, change_id: str, refs: Sequence[RequirementRef]
) -> None:
    """Rewrite one change's index rows (the caller holds the change's lock)."""
    delete_requirements(conn, project_id, change_id)
    if refs:
        _raw.executemany(
            conn,
            _INSERT,
            [
                (project_id, change_id, r.capability, r.requirement, r.op, r.from_name, r.to_name)
                for r in refs
            ],
        )


def insert_requirements(
    conn: Connection, project_id: int, rows: Sequence[tuple[str, RequirementRef]]
) -> None:
    """Index rows of changes that have none yet (a bulk import): (change id, ref) pairs."""
    if rows:
        _raw.executemany(
            conn,
            _INSERT,
            [
                (project_id, cid, r.capability, r.requirement, r.op, r.from_name, r.to_name)
                for cid, r in rows
            ],
        )


def requirements_of(conn: Connection, project_id: int, change_id: str) -> list[RequirementRef]:
    return [RequirementRef(*row) for row in _raw.fetchall(conn, _OF, (project_id, change_id))]


@dataclass(frozen=True)
class ActiveIndex:
    """Every unarchived change's index rows and delta capabilities, with the change's
    sort key, work status and active lease holder."""

    refs: dict[str, list[RequirementRef]]
    capabilities: dict[str, list[str]]
    sort_keys: dict[str, str]
    statuses: dict[str, str]
    holders: dict[str, str]


_ACTIVE_CHANGES = _raw.SQL(
    "SELECT c.change_id, c.sort_key, c.work_status, l.holder FROM changes c"
    " LEFT JOIN leases l ON l.project_id = c.project_id AND l.change_id = c.change_id"
    " AND l.holder IS NOT NULL AND l.expires_us > ?"
    " WHERE c.project_id = ? AND c.archived_us IS NULL"
)
_ACTIVE_CAPS = _raw.SQL(
    "SELECT cs.change_id, cs.capability FROM change_specs cs JOIN changes c"
    " ON c.project_id = cs.project_id AND c.change_id = cs.change_id"
    " WHERE cs.project_id = ? AND c.archived_us IS NULL ORDER BY cs.capability"
)
_ACTIVE_REFS = _raw.SQL(
    "SELECT r.change_id, r.capability, r.requirement, r.op, r.from_name, r.to_name"
    " FROM change_requirements r JOIN changes c"
    " ON c.project_id = r.project_id AND c.change_id = r.change_id"
    " WHERE r.project_id = ? AND c.archived_us IS NULL"
)


def active_index(conn: Connection, project_id: int, now_us: int) -> ActiveIndex:
    sort_keys: dict[str, str] = {}
    statuses: dict[str, str] = {}
    holders: dict[str, str] = {}
    for change_id, sort_key, status, holder in _raw.fetchall(
        conn, _ACTIVE_CHANGES, (now_us, project_id)
    ):
        sort_keys[change_id] = sort_key
        statuses[change_id] = status
        if holder is not None:
            holders[change_id] = holder
    caps: dict[str, list[str]] = defaultdict(list)
    for change_id, capability in _raw.fetchall(conn, _ACTIVE_CAPS, (project_id,)):
        caps[change_id].append(capability)
    refs: dict[str, list[RequirementRef]] = defaultdict(list)
    for change_id, *ref in _raw.fetchall(conn, _ACTIVE_REFS, (project_id,)):
        refs[change_id].append(RequirementRef(*ref))
    return ActiveIndex(dict(refs), dict(caps), sort_keys, statuses, holders)


# A change is *busy* while it is in progress or actively leased; overlap-aware allocation
# avoids handing out a change that shares a requirement with a busy one. The busy changes
# are few (one per working agent), so their requirements are read once per allocation and
# the candidate filter only checks each candidate's own index rows against them.
_BUSY_REQUIREMENTS = _raw.SQL(
    "SELECT r.change_id, r.capability, r.requirement FROM change_requirements r"
    " WHERE r.project_id = ? AND r.change_id IN ("
    " SELECT b.change_id FROM changes b WHERE b.project_id = ? AND b.archived_us IS NULL"
    " AND b.work_status = 'in-progress'"
    " UNION SELECT l.change_id FROM leases l WHERE l.project_id = ?"
    " AND l.holder IS NOT NULL AND l.expires_us > ?)"
)


# Whether any busy change has an indexed requirement: the guard in front (no index rows in the
# project, one primary-key probe) settles the usual case; otherwise the busy changes (few: one
# per working agent) are probed for index rows, stopping at the first.
_ANY_BUSY_REQUIREMENT = _raw.SQL(
    "SELECT 1 WHERE EXISTS (SELECT 1 FROM change_requirements WHERE project_id = ?)"
    " AND (EXISTS (SELECT 1 FROM leases l JOIN change_requirements r"
    " ON r.project_id = l.project_id AND r.change_id = l.change_id"
    " WHERE l.project_id = ? AND l.holder IS NOT NULL AND l.expires_us > ?)"
    " OR EXISTS (SELECT 1 FROM changes b JOIN change_requirements r"
    " ON r.project_id = b.project_id AND r.change_id = b.change_id"
    " WHERE b.project_id = ? AND b.archived_us IS NULL AND b.work_status = 'in-progress'))"
)


def any_busy_requirement(conn: Connection, project_id: int, now_us: int) -> bool:
    """True when some busy change (in progress, or actively leased) has an indexed
    requirement: only then can a change overlap a busy one. One statement."""
    row = _raw.fetchone(conn, _ANY_BUSY_REQUIREMENT, (project_id, project_id, now_us, project_id))
    return row is not None


_ANY_REQUIREMENT = _raw.SQL("SELECT 1 FROM change_requirements WHERE project_id = ? LIMIT 1")


def any_requirement(conn: Connection, project_id: int) -> bool:
    """True when some change of the project has an indexed requirement (one index probe)."""
    return _raw.fetchone(conn, _ANY_REQUIREMENT, (project_id,)) is not None


def busy_requirements(
    conn: Connection, project_id: int, now_us: int
) -> dict[str, set[tuple[str, str]]]:
    """Each busy change's (capability, requirement) pairs. Archived changes have no index
    rows, so a lease left on one does not count."""
    busy: dict[str, set[tuple[str, str]]] = defaultdict(set)
    rows = _raw.fetchall(conn, _BUSY_REQUIREMENTS, (project_id, project_id, project_id, now_us))
    for change_id, capability, requirement in rows:
        busy[change_id].add((capability, requirement))
    return dict(busy)


def overlapping(
    busy: dict[str, set[tuple[str, str]]], change_id: str, refs: Sequence[RequirementRef]
) -> list[str]:
    """The busy changes (other than ``change_id``) sharing a requirement with ``refs``."""
    mine = {(r.capability, r.requirement) for r in refs}
    return sorted(b for b, keys in busy.items() if b != change_id and keys & mine)


_TRY_LOCK = _raw.SQL("SELECT pg_try_advisory_xact_lock(?)")


def _lock_key(project_id: int, capability: str, requirement: str) -> int:
    digest = hashlib.blake2b(
        f"loom-requirement:{project_id}\0{capability}\0{requirement}".encode(), digest_size=8
    )
    return int.from_bytes(digest.digest(), "big", signed=True)


def try_lock_requirements(
    conn: Connection, project_id: int, keys: Iterable[tuple[str, str]]
) -> bool:
    """PostgreSQL: try to take a transaction-scoped advisory lock on each requirement; False
    as soon as one is taken by another transaction (never waits, so it cannot deadlock).
    Two allocators choosing changes that share a requirement thus cannot both proceed, and
    the one that comes after the other's commit sees its lease. SQLite: True (writers are
    serialised already)."""
    if conn.dialect.name != "postgresql":
        return True
    for key in sorted({_lock_key(project_id, cap, req) for cap, req in keys}):
        row = _raw.fetchone(conn, _TRY_LOCK, (key,))
        if row is None or not row[0]:
            return False
    return True


def requirements_for(
    conn: Connection, project_id: int, change_ids: Sequence[str]
) -> dict[str, list[RequirementRef]]:
    """The index rows of several changes (one query)."""
    if not change_ids:
        return {}
    marks = ", ".join("?" for _ in change_ids)
    rows = _raw.fetchall(
        conn,
        _raw.SQL(
            "SELECT change_id, capability, requirement, op, from_name, to_name"
            f" FROM change_requirements WHERE project_id = ? AND change_id IN ({marks})"
        ),
        [project_id, *change_ids],
    )
    out: dict[str, list[RequirementRef]] = defaultdict(list)
    for change_id, *ref in rows:
        out[change_id].append(RequirementRef(*ref))
    return dict(out)


_SHARED_WITH = _raw.SQL(
    "SELECT o.change_id, r.capability, r.requirement FROM change_requirements r"
    " JOIN change_requirements o ON o.project_id = r.project_id"
    " AND o.capability = r.capability AND o.requirement = r.requirement"
    " AND o.change_id <> r.change_id"
    " JOIN changes b ON b.project_id = o.project_id AND b.change_id = o.change_id"
    " WHERE r.project_id = ? AND r.change_id = ? AND b.archived_us IS NULL"
)


def shared_requirements(
    conn: Connection, project_id: int, change_id: str
) -> set[tuple[str, str, str]]:
    """(other change, capability, requirement) for every unarchived change that touches a
    requirement ``change_id`` touches."""
    return {(r[0], r[1], r[2]) for r in _raw.fetchall(conn, _SHARED_WITH, (project_id, change_id))}
