"""The requirement index (``change_requirements``) and the overlap queries built on it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from loom.domain.specs import RequirementRef
from loom.store import _raw

__all__ = [
    "ANY_REQUIREMENT_SQL",
    "ActiveIndex",
    "active_index",
    "any_busy_requirement",
    "any_requirement",
    "delete_requirements",
    "insert_requirements",
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


# Whether any *busy* change (in progress, or actively leased) has an indexed requirement: the
# guard in front (no index rows in the project, one primary-key probe) settles the usual case;
# otherwise the busy changes (few: one per working agent) are probed for index rows, stopping
# at the first. ``CROSS JOIN`` keeps the busy changes on the outside (SQLite otherwise walked
# every index row of the project and probed leases and changes for each: the largest part of
# an allocation in a 50,000-change project).
_ANY_BUSY_REQUIREMENT = _raw.SQL(
    "SELECT 1 WHERE EXISTS (SELECT 1 FROM change_requirements WHERE project_id = ?)"
    " AND (EXISTS (SELECT 1 FROM leases l CROSS JOIN change_requirements r"
    " WHERE l.project_id = ? AND l.holder IS NOT NULL AND l.expires_us > ?"
    " AND r.project_id = l.project_id AND r.change_id = l.change_id)"
    " OR EXISTS (SELECT 1 FROM changes b CROSS JOIN change_requirements r"
    " WHERE b.project_id = ? AND b.work_status = 'in-progress' AND b.archived_us IS NULL"
    " AND r.project_id = b.project_id AND r.change_id = b.change_id))"
)


def any_busy_requirement(conn: Connection, project_id: int, now_us: int) -> bool:
    """True when some busy change (in progress, or actively leased) has an indexed
    requirement: only then can a change overlap a busy one. One statement."""
    row = _raw.fetchone(conn, _ANY_BUSY_REQUIREMENT, (project_id, project_id, now_us, project_id))
    return row is not None


ANY_REQUIREMENT_SQL = _raw.SQL(
    "SELECT 1 FROM change_requirements WHERE project_id = ? LIMIT 1", fast=True
)
"""Some change of the project has an indexed requirement (a row or none). One parameter:
the project."""


def any_requirement(conn: Connection, project_id: int) -> bool:
    """True when some change of the project has an indexed requirement (one index probe)."""
    return _raw.fetchone(conn, ANY_REQUIREMENT_SQL, (project_id,)) is not None


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
