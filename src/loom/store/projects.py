"""Projects (``org/repo``) and their per-project counters."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from loom.store import _raw
from loom.store.schema import projects

__all__ = ["ensure_project", "find_project", "lock_project", "projects_after"]


def find_project(conn: Connection, org: str, repo: str) -> int | None:
    row = conn.execute(
        select(projects.c.id).where(projects.c.org == org, projects.c.repo == repo)
    ).first()
    return None if row is None else int(row[0])


def projects_after(conn: Connection, after_id: int) -> list[tuple[int, str, str]]:
    """Projects with a row id above ``after_id``, as ``(id, org, repo)`` (primary key range)."""
    rows = conn.execute(
        select(projects.c.id, projects.c.org, projects.c.repo)
        .where(projects.c.id > after_id)
        .order_by(projects.c.id)
    )
    return [(int(r[0]), r[1], r[2]) for r in rows]


def ensure_project(conn: Connection, org: str, repo: str, now_us: int) -> int:
    """The project's id, creating the row on first write (race-safe on both databases)."""
    found = find_project(conn, org, repo)
    if found is not None:
        return found
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(
            pg_insert(projects)
            .values(org=org, repo=repo, created_us=now_us, event_seq=0)
            .on_conflict_do_nothing(index_elements=["org", "repo"])
        )
    else:
        conn.execute(insert(projects).values(org=org, repo=repo, created_us=now_us, event_seq=0))
    found = find_project(conn, org, repo)
    assert found is not None
    return found


_LOCK = _raw.SQL("SELECT id FROM projects WHERE id = ? FOR UPDATE")


def lock_project(conn: Connection, project_id: int) -> None:
    """Serialise project-wide read-modify-writes (PostgreSQL row lock; SQLite already holds
    the database write lock from ``BEGIN IMMEDIATE``). Take it after any change-row lock,
    as every writer that records events does, so lock order stays change → project."""
    if conn.dialect.name == "postgresql":
        _raw.fetchone(conn, _LOCK, (project_id,))
