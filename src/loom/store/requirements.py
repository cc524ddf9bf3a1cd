"""The requirement index (``change_requirements``) and the overlap queries built on it."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from loom.domain.specs import RequirementRef
from loom.store import _raw

__all__ = [
    "ActiveIndex",
    "active_index",
    "busy_requirements",
    "delete_requirements",
    "has_requirements",
    "lock_overlap_allocation",
    "overlap_filter",
    "overlapping",
    "replace_requirements",
    "requirements_of",
    "shared_requirements",
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


def overlap_filter(busy: Mapping[str, set[tuple[str, str]]]) -> tuple[str, list[str]]:
    """A candidate-query condition (``c`` is the candidate) leaving out changes that touch a
    requirement of a busy change other than themselves, and its parameters; ``("", [])``
    when nothing is busy. One term per distinct requirement (a requirement only one busy
    change touches does not exclude that change itself)."""
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)
    for owner, keys in busy.items():
        for key in keys:
            owners[key].add(owner)
    if not owners:
        return "", []
    terms: list[str] = []
    params: list[str] = []
    for (cap, req), who in sorted(owners.items()):
        if len(who) == 1:
            terms.append("(r.capability = ? AND r.requirement = ? AND c.change_id <> ?)")
            params.extend((cap, req, next(iter(who))))
        else:
            terms.append("(r.capability = ? AND r.requirement = ?)")
            params.extend((cap, req))
    sql = (
        " AND NOT EXISTS (SELECT 1 FROM change_requirements r WHERE r.project_id = c.project_id"
        f" AND r.change_id = c.change_id AND ({' OR '.join(terms)}))"
    )
    return sql, params


def overlapping(
    busy: dict[str, set[tuple[str, str]]], change_id: str, refs: Sequence[RequirementRef]
) -> list[str]:
    """The busy changes (other than ``change_id``) sharing a requirement with ``refs``."""
    mine = {(r.capability, r.requirement) for r in refs}
    return sorted(b for b, keys in busy.items() if b != change_id and keys & mine)


_LOCK = _raw.SQL("SELECT pg_advisory_xact_lock(?)")
_HAS = _raw.SQL("SELECT 1 FROM change_requirements WHERE project_id = ? AND change_id = ? LIMIT 1")


def has_requirements(conn: Connection, project_id: int, change_id: str) -> bool:
    return _raw.fetchone(conn, _HAS, (project_id, change_id)) is not None


def _lock_key(project_id: int) -> int:
    digest = hashlib.blake2b(f"loom-overlap-allocation:{project_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def lock_overlap_allocation(conn: Connection, project_id: int) -> None:
    """PostgreSQL: the project's overlap-allocation lock, until the transaction ends (a
    transaction-scoped advisory lock; take it holding no candidate row lock). SQLite
    writers are serialised already."""
    if conn.dialect.name == "postgresql":
        _raw.fetchone(conn, _LOCK, (_lock_key(project_id),))


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
