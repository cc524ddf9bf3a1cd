"""Projects (``org/repo``) and their per-project counters."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from loom.store.schema import projects

__all__ = ["ensure_project", "find_project", "reserve_event_seqs"]


def find_project(conn: Connection, org: str, repo: str) -> int | None:
    row = conn.execute(
        select(projects.c.id).where(projects.c.org == org, projects.c.repo == repo)
    ).first()
    return None if row is None else int(row[0])


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


def reserve_event_seqs(conn: Connection, project_id: int, count: int) -> int:
    """Reserve ``count`` consecutive event numbers; returns the first. Locks the project row."""
    new_last = conn.execute(
        update(projects)
        .where(projects.c.id == project_id)
        .values(event_seq=projects.c.event_seq + count)
        .returning(projects.c.event_seq)
    ).scalar_one()
    return int(new_last) - count + 1
