"""Changes, their spec deltas, and the derived summary columns."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from loom.store import _raw
from loom.store.schema import change_specs, changes

__all__ = [
    "ChangeRow",
    "Derived",
    "existing_change_ids",
    "get_change",
    "get_change_archived",
    "get_spec_bases",
    "get_specs",
    "insert_change",
    "insert_changes",
    "insert_new_specs",
    "list_change_ids",
    "list_changes",
    "list_summary_rows",
    "replace_specs",
    "update_change",
]


@dataclass(frozen=True)
class Derived:
    """Columns computed from the artifacts by the service on every write."""

    sort_key: str
    module_id: str | None
    sub_module_id: str | None
    tasks_format: str
    total_tasks: int
    completed_tasks: int
    shelved_tasks: int
    in_progress_tasks: int
    pending_tasks: int
    has_proposal: bool
    has_design: bool
    has_specs: bool
    work_status: str

    def values(self) -> dict[str, Any]:
        return {
            "sort_key": self.sort_key,
            "module_id": self.module_id,
            "sub_module_id": self.sub_module_id,
            "tasks_format": self.tasks_format,
            "total_tasks": self.total_tasks,
            "completed_tasks": self.completed_tasks,
            "shelved_tasks": self.shelved_tasks,
            "in_progress_tasks": self.in_progress_tasks,
            "pending_tasks": self.pending_tasks,
            "has_proposal": self.has_proposal,
            "has_design": self.has_design,
            "has_specs": self.has_specs,
            "work_status": self.work_status,
        }


@dataclass(frozen=True)
class ChangeRow:
    change_id: str
    sort_key: str
    module_id: str | None
    sub_module_id: str | None
    proposal: str | None
    design: str | None
    tasks: str | None
    metadata: str | None
    revision: int
    tasks_format: str
    total_tasks: int
    completed_tasks: int
    shelved_tasks: int
    in_progress_tasks: int
    pending_tasks: int
    has_proposal: bool
    has_design: bool
    has_specs: bool
    work_status: str
    archived_us: int | None
    created_us: int
    updated_us: int


_SUMMARY_COLS = [c for c in changes.c if c.name != "project_id"]


def _row(mapping: Any) -> ChangeRow:
    return ChangeRow(**{c.name: mapping[c.name] for c in _SUMMARY_COLS})


_COL_NAMES = [c.name for c in _SUMMARY_COLS]
_BOOL_COLS = {"has_proposal", "has_design", "has_specs"}
_GET = _raw.SQL(
    f"SELECT {', '.join(_COL_NAMES)} FROM changes WHERE project_id = ? AND change_id = ?"
)
_GET_FOR_UPDATE = _raw.SQL(_GET.qmark + " FOR UPDATE")


def get_change(
    conn: Connection, project_id: int, change_id: str, *, for_update: bool = False
) -> ChangeRow | None:
    """One change (hot path: raw SQL). ``for_update`` locks the row on PostgreSQL."""
    stmt = _GET_FOR_UPDATE if for_update and conn.dialect.name == "postgresql" else _GET
    row = _raw.fetchone(conn, stmt, (project_id, change_id))
    if row is None:
        return None
    data = dict(zip(_COL_NAMES, row, strict=True))
    for name in _BOOL_COLS:
        data[name] = bool(data[name])
    return ChangeRow(**data)


_STATE = _raw.SQL(
    "SELECT archived_us FROM changes WHERE project_id = ? AND change_id = ?", fast=True
)
_STATE_FOR_UPDATE = _raw.SQL(_STATE.qmark + " FOR UPDATE", fast=True)


def get_change_archived(
    conn: Connection, project_id: int, change_id: str, *, for_update: bool = False
) -> tuple[bool, int | None]:
    """(exists, archived_us) without loading the artifacts; ``for_update`` locks (PostgreSQL)."""
    stmt = _STATE_FOR_UPDATE if for_update and conn.dialect.name == "postgresql" else _STATE
    row = _raw.fetchone(conn, stmt, (project_id, change_id))
    if row is None:
        return False, None
    return True, row[0]


def list_change_ids(conn: Connection, project_id: int, lifecycle: str) -> list[str]:
    stmt = select(changes.c.change_id).where(changes.c.project_id == project_id)
    if lifecycle == "active":
        stmt = stmt.where(changes.c.archived_us.is_(None))
    elif lifecycle == "archived":
        stmt = stmt.where(changes.c.archived_us.is_not(None))
    return [r[0] for r in conn.execute(stmt.order_by(changes.c.sort_key))]


def list_changes(
    conn: Connection,
    project_id: int,
    *,
    lifecycle: str,
    module: str | None = None,
    statuses: Sequence[str] | None = None,
    after_sort_key: str | None = None,
    limit: int | None = None,
    with_artifacts: bool = False,
) -> list[ChangeRow]:
    cols = _SUMMARY_COLS
    if not with_artifacts:
        cols = [c for c in _SUMMARY_COLS if c.name not in ("proposal", "design", "tasks")]
    stmt = select(*cols).where(changes.c.project_id == project_id)
    if lifecycle == "active":
        stmt = stmt.where(changes.c.archived_us.is_(None))
    elif lifecycle == "archived":
        stmt = stmt.where(changes.c.archived_us.is_not(None))
    if module is not None:
        if "." in module:
            stmt = stmt.where(changes.c.sub_module_id == module)
        else:
            stmt = stmt.where(changes.c.module_id == module)
    if statuses:
        stmt = stmt.where(changes.c.work_status.in_(list(statuses)))
    if after_sort_key is not None:
        stmt = stmt.where(changes.c.sort_key > after_sort_key)
    stmt = stmt.order_by(changes.c.sort_key)
    if limit is not None:
        stmt = stmt.limit(limit)
    out: list[ChangeRow] = []
    for m in conn.execute(stmt).mappings():
        data = dict(m)
        data.setdefault("proposal", None)
        data.setdefault("design", None)
        data.setdefault("tasks", None)
        out.append(_row(data))
    return out


def insert_change(
    conn: Connection,
    project_id: int,
    change_id: str,
    *,
    proposal: str | None,
    design: str | None,
    tasks: str | None,
    metadata: str | None,
    derived: Derived,
    revision: int,
    now_us: int,
    archived_us: int | None = None,
) -> bool:
    """Insert a change; False (and nothing written) if it already exists.

    ``ON CONFLICT DO NOTHING``: on PostgreSQL two transactions creating the same change both
    see no row; the second insert then waits for the first and reports the conflict instead
    of failing with a duplicate-key error.
    """
    params = {
        "project_id": project_id,
        "change_id": change_id,
        "proposal": proposal,
        "design": design,
        "tasks": tasks,
        "metadata": metadata,
        "revision": revision,
        "archived_us": archived_us,
        "created_us": now_us,
        "updated_us": now_us,
        **derived.values(),
    }
    return conn.execute(_insert_if_absent(conn.dialect.name), params).first() is not None


def insert_changes(
    conn: Connection, project_id: int, rows: Sequence[tuple[str, Mapping[str, Any]]], now_us: int
) -> set[str]:
    """Insert new changes in one statement (a bulk import): ``rows`` are (change id, column
    values: the artifacts, ``archived_us`` and :meth:`Derived.values`), at revision 1. Returns
    the ids inserted; an id that exists (created concurrently) is skipped, as
    :func:`insert_change` does. Sorted by id, so concurrent imports lock in one order."""
    if not rows:
        return set()
    params = [
        {
            "project_id": project_id,
            "change_id": change_id,
            "revision": 1,
            "created_us": now_us,
            "updated_us": now_us,
            **values,
        }
        for change_id, values in sorted(rows, key=lambda r: r[0])
    ]
    result = conn.execute(_insert_if_absent(conn.dialect.name), params)
    return {r[0] for r in result}


_CHUNK = 500  # ids per IN (...) list


def existing_change_ids(conn: Connection, project_id: int, change_ids: Sequence[str]) -> set[str]:
    """Which of these changes exist (one query per 500 ids; no lock)."""
    found: set[str] = set()
    unique = list(dict.fromkeys(change_ids))
    for start in range(0, len(unique), _CHUNK):
        chunk = unique[start : start + _CHUNK]
        stmt = _raw.SQL(
            "SELECT change_id FROM changes WHERE project_id = ?"
            f" AND change_id IN ({', '.join('?' for _ in chunk)})"
        )
        found.update(r[0] for r in _raw.fetchall(conn, stmt, [project_id, *chunk]))
    return found


@functools.cache
def _insert_if_absent(dialect: str) -> Any:
    """One constant statement per dialect (parameters at execute time: the statement is
    built and its cache key computed once, not per row as ``.values(**row)`` does)."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return (
        module.insert(changes)
        .on_conflict_do_nothing(index_elements=["project_id", "change_id"])
        .returning(changes.c.change_id)
    )


def update_change(
    conn: Connection,
    project_id: int,
    change_id: str,
    *,
    expected_revision: int | None = None,
    **values: Any,
) -> bool:
    """Update one change; with ``expected_revision`` only if it still matches. True if done."""
    cond = and_(changes.c.project_id == project_id, changes.c.change_id == change_id)
    if expected_revision is not None:
        cond = and_(cond, changes.c.revision == expected_revision)
    result = conn.execute(update(changes).where(cond).values(**values))
    return bool(result.rowcount == 1)


def get_specs(conn: Connection, project_id: int, change_id: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        select(change_specs.c.capability, change_specs.c.content)
        .where(change_specs.c.project_id == project_id, change_specs.c.change_id == change_id)
        .order_by(change_specs.c.capability)
    )
    return [(r[0], r[1]) for r in rows]


def get_spec_bases(conn: Connection, project_id: int, change_id: str) -> dict[str, int | None]:
    """Each delta's base spec revision (None: not recorded)."""
    rows = conn.execute(
        select(change_specs.c.capability, change_specs.c.base_revision).where(
            change_specs.c.project_id == project_id, change_specs.c.change_id == change_id
        )
    )
    return {r[0]: None if r[1] is None else int(r[1]) for r in rows}


def replace_specs(
    conn: Connection,
    project_id: int,
    change_id: str,
    specs: Sequence[tuple[str, str]],
    bases: Mapping[str, int] | None = None,
) -> None:
    conn.execute(
        delete(change_specs).where(
            change_specs.c.project_id == project_id, change_specs.c.change_id == change_id
        )
    )
    if specs:
        conn.execute(
            insert(change_specs),
            [
                {
                    "project_id": project_id,
                    "change_id": change_id,
                    "capability": c,
                    "content": m,
                    "base_revision": None if bases is None else bases.get(c),
                }
                for c, m in specs
            ],
        )


_INSERT_SPEC = _raw.SQL(
    "INSERT INTO change_specs (project_id, change_id, capability, content, base_revision)"
    " VALUES (?, ?, ?, ?, ?)"
)


def insert_new_specs(
    conn: Connection, project_id: int, rows: Sequence[tuple[str, str, str, int | None]]
) -> None:
    """The deltas of changes just inserted (no rows to replace): (change id, capability,
    content, base revision) rows, in one batch."""
    if rows:
        _raw.executemany(conn, _INSERT_SPEC, [(project_id, *r) for r in rows])


SUMMARY_COLUMNS = (
    "change_id",
    "module_id",
    "sub_module_id",
    "completed_tasks",
    "shelved_tasks",
    "in_progress_tasks",
    "pending_tasks",
    "total_tasks",
    "has_proposal",
    "has_design",
    "has_specs",
    "work_status",
    "updated_us",
    "revision",
    "archived_us",
    "sort_key",
)


def list_summary_rows(
    conn: Connection,
    project_id: int,
    now_us: int,
    *,
    lifecycle: str,
    module: str | None = None,
    statuses: Sequence[str] | None = None,
    after_sort_key: str | None = None,
    limit: int | None = None,
) -> list[tuple[Any, ...]]:
    """Summary rows in canonical order, each followed by its active lease columns (holder,
    acquired_us, expires_us, fencing_token; NULLs without one). One raw query: this is the
    list endpoint's whole cost for thousands of changes."""
    cols = ", ".join(f"c.{name}" for name in SUMMARY_COLUMNS)
    sql = [
        f"SELECT {cols}, l.holder, l.acquired_us, l.expires_us, l.fencing_token",
        "FROM changes c LEFT JOIN leases l ON l.project_id = c.project_id",
        "AND l.change_id = c.change_id AND l.holder IS NOT NULL AND l.expires_us > ?",
        "WHERE c.project_id = ?",
    ]
    params: list[Any] = [now_us, project_id]
    if lifecycle == "active":
        sql.append("AND c.archived_us IS NULL")
    elif lifecycle == "archived":
        sql.append("AND c.archived_us IS NOT NULL")
    if module is not None:
        sql.append("AND c.sub_module_id = ?" if "." in module else "AND c.module_id = ?")
        params.append(module)
    if statuses:
        sql.append(f"AND c.work_status IN ({', '.join('?' for _ in statuses)})")
        params.extend(statuses)
    if after_sort_key is not None:
        sql.append("AND c.sort_key > ?")
        params.append(after_sort_key)
    sql.append("ORDER BY c.sort_key")
    if limit is not None:
        sql.append("LIMIT ?")
        params.append(limit)
    return _raw.fetchall(conn, _raw.SQL(" ".join(sql)), params)
