"""Spec revisions: every write of a promoted spec bumps its revision and keeps the text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from loom.store import _raw
from loom.store._upsert import upsert
from loom.store.schema import specs

__all__ = ["SpecRevision", "current_revisions", "spec_at", "spec_history", "write_spec"]


@dataclass(frozen=True)
class SpecRevision:
    spec_id: str
    revision: int
    markdown: str | None  # None: this revision deleted the spec
    change_id: str | None
    source: str
    created_us: int


_LAST = _raw.SQL(
    "SELECT COALESCE(MAX(revision), 0) FROM spec_revisions WHERE project_id = ? AND spec_id = ?"
)
_HISTORY_INSERT = _raw.SQL(
    "INSERT INTO spec_revisions (project_id, spec_id, revision, markdown, change_id, source,"
    " created_us) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_DELETE = _raw.SQL("DELETE FROM specs WHERE project_id = ? AND spec_id = ?")


def write_spec(
    conn: Connection,
    project_id: int,
    spec_id: str,
    markdown: str | None,
    now_us: int,
    *,
    source: str,
    change_id: str | None = None,
) -> int:
    """Store a new revision of a spec (None deletes it) and its history row; returns the
    revision. The caller has checked the text differs and holds the project's lock (archive)
    or the database write lock, so the next number is not raced."""
    last = _raw.fetchone(conn, _LAST, (project_id, spec_id))
    revision = int(last[0]) + 1 if last is not None else 1
    _raw.execute(
        conn,
        _HISTORY_INSERT,
        (project_id, spec_id, revision, markdown, change_id, source, now_us),
    )
    if markdown is None:
        _raw.execute(conn, _DELETE, (project_id, spec_id))
    else:
        upsert(
            conn,
            specs,
            {"project_id": project_id, "spec_id": spec_id},
            {"markdown": markdown, "updated_us": now_us, "revision": revision},
        )
    return revision


_HISTORY = _raw.SQL(
    "SELECT spec_id, revision, CASE WHEN markdown IS NULL THEN NULL ELSE '' END, change_id,"
    " source, created_us FROM spec_revisions"
    " WHERE project_id = ? AND spec_id = ? ORDER BY revision"
)
_AT = _raw.SQL(
    "SELECT spec_id, revision, markdown, change_id, source, created_us FROM spec_revisions"
    " WHERE project_id = ? AND spec_id = ? AND revision = ?"
)


def spec_history(conn: Connection, project_id: int, spec_id: str) -> list[SpecRevision]:
    """Every revision, oldest first, without the texts (``markdown`` is ``""`` for a text,
    None for a deletion)."""
    return [
        SpecRevision(r[0], int(r[1]), r[2], r[3], r[4], int(r[5]))
        for r in _raw.fetchall(conn, _HISTORY, (project_id, spec_id))
    ]


def spec_at(conn: Connection, project_id: int, spec_id: str, revision: int) -> SpecRevision | None:
    r = _raw.fetchone(conn, _AT, (project_id, spec_id, revision))
    return None if r is None else SpecRevision(r[0], int(r[1]), r[2], r[3], r[4], int(r[5]))


def current_revisions(conn: Connection, project_id: int, spec_ids: Sequence[str]) -> dict[str, int]:
    """Each spec's current revision: the last history row's (0 when it never existed; a
    deleted spec keeps the number of the revision that deleted it)."""
    if not spec_ids:
        return {}
    marks = ", ".join("?" for _ in spec_ids)
    rows = _raw.fetchall(
        conn,
        _raw.SQL(
            "SELECT spec_id, MAX(revision) FROM spec_revisions WHERE project_id = ?"
            f" AND spec_id IN ({marks}) GROUP BY spec_id"
        ),
        [project_id, *spec_ids],
    )
    found = {r[0]: int(r[1]) for r in rows}
    return {s: found.get(s, 0) for s in spec_ids}
