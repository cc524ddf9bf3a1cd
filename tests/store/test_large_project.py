"""What keeps a large project (tens of thousands of changes) fast: the statements a bulk
import and a change read run do not grow with the number of changes; PostgreSQL's planner
gets statistics after a large import (bench/large.py measures the latencies)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from loom.service import imports
from loom.service._context import ServiceContext
from loom.store import _raw
from loom.store.changes import list_summary_rows
from loom.store.leases import next_candidate
from loom.store.overlap_allocation import first_without_overlap
from loom.store.requirements import any_busy_requirement

from ._statements import statements
from .conftest import ACTOR, PROJECT

DELTA = "## ADDED Requirements\n\n### Requirement: R{n}\nR{n} works.\n"


def _changes(first: int, count: int) -> list[imports.ImportChange]:
    return [
        imports.ImportChange(
            f"{1 + n // 100:03d}-{n % 100 + 1:02d}_c{n}",
            "# P\n",
            None,
            "- [ ] 1.1 Do it\n",
            ((f"cap-{n % 3}", DELTA.format(n=n)),),
            None,
            None if n % 2 else 1_700_000_000_000_000,
        )
        for n in range(first, first + count)
    ]


def _import(ctx: ServiceContext, changes: list[imports.ImportChange]) -> dict[str, object]:
    return imports.import_tree(
        ctx, PROJECT, mode="create-only", modules=[], specs=[], changes=changes, actor=ACTOR
    )


def test_a_bulk_import_runs_as_many_statements_for_40_new_changes_as_for_4(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Statistics upkeep after an import (PostgreSQL) depends on the cumulative statistics'
    # timing; tested on its own below.
    monkeypatch.setattr(imports, "analyze_stale", lambda *_: [])
    # Both imports land in one module (001) that the first import created.
    _import(ctx, _changes(0, 1))
    with statements(ctx, monkeypatch) as few:
        assert _import(ctx, _changes(1, 4))["created"] == 4
    with statements(ctx, monkeypatch) as many:
        assert _import(ctx, _changes(5, 40))["created"] == 40
    assert len(many) == len(few), (few, many)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_large_import_leaves_postgresql_statistics(ctx: ServiceContext) -> None:
    def reltuples() -> float:
        with ctx.db.read() as conn:
            sql = "SELECT reltuples FROM pg_class WHERE oid = to_regclass('changes')"
            return float(conn.exec_driver_sql(sql).scalar_one())

    # The run's database is emptied with DELETE between tests and may carry an earlier
    # test's statistics: start from analysed-while-empty (0 rows), as a new project is.
    with ctx.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE changes")
    assert reltuples() <= 0  # empty (PostgreSQL 14+ says 0 once analysed, -1 before)
    _import(ctx, _changes(0, 300))
    assert reltuples() == 300


def _plan(ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch, call: Any) -> str:
    """The query plan of every statement ``call`` runs (EXPLAIN on the same database;
    PostgreSQL without sequential scans)."""
    ran: list[tuple[_raw.SQL, Any]] = []
    real = _raw._cursor

    def capture(conn: Any, stmt: _raw.SQL, params: Any) -> Any:
        ran.append((stmt, list(params)))
        return real(conn, stmt, params)

    with monkeypatch.context() as patch:
        patch.setattr(_raw, "_cursor", capture)
        with ctx.db.read() as conn:
            call(conn)
    pg = ctx.db.engine.dialect.name == "postgresql"
    plans: list[str] = []
    with ctx.db.read() as conn:
        if pg:
            # A test-sized table is a few dozen pages, where a sequential scan costs about
            # the same as any index: ask which index the query can use, not whether this
            # size is worth one.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        for stmt, params in ran:
            explain = _raw.SQL(("EXPLAIN " if pg else "EXPLAIN QUERY PLAN ") + stmt.qmark)
            plans.extend(" ".join(map(str, row)) for row in _raw.fetchall(conn, explain, params))
    return "\n".join(plans)


def test_allocation_candidates_and_active_pages_walk_only_active_changes(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Mostly archived, as a large project is: 1,000 changes, every tenth active.
    rows = [
        dataclasses.replace(c, archived_us=None if n % 10 == 0 else 1_700_000_000_000_000)
        for n, c in enumerate(_changes(0, 1000))
    ]
    if ctx.db.engine.dialect.name == "postgresql":
        # The run's database is emptied with DELETE between tests: clear the dead rows an
        # earlier test left, so the planner sees this project as a new database would.
        with ctx.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM changes")
    _import(ctx, rows)  # analyses PostgreSQL's statistics, as any large import does
    with ctx.db.read() as conn:
        pid = ctx.project_id(conn, PROJECT, create=False)
    assert pid is not None
    now = ctx.now_us()

    plain = _plan(
        ctx,
        monkeypatch,
        lambda conn: next_candidate(conn, pid, now, module=None, change_ids=None),
    )
    assert "ix_changes_eligible" in plain, plain
    overlap_free = _plan(
        ctx,
        monkeypatch,
        lambda conn: first_without_overlap(conn, pid, now, module=None, change_ids=None),
    )
    assert "ix_changes_eligible" in overlap_free, overlap_free
    page = _plan(
        ctx,
        monkeypatch,
        lambda conn: list_summary_rows(conn, pid, now, lifecycle="active", limit=100),
    )
    assert "ix_changes_active" in page, page
    if ctx.db.engine.dialect.name == "sqlite":
        # The "could anything overlap a busy change" check (SQLite's, before every
        # allocation): from the few busy changes to their requirement rows, never a walk
        # over the project's every requirement row.
        busy = _plan(ctx, monkeypatch, lambda conn: any_busy_requirement(conn, pid, now))
        probes = [line for line in busy.splitlines() if "SEARCH r " in line]
        assert len(probes) == 2 and all("change_id=?" in p for p in probes), busy


def _event(n: int) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-01-01T00:00:00.000Z",
        "entity": "task",
        "entity_id": "1.1",
        "scope": "001-01_c0",
        "op": "status_change",
        "from": "pending",
        "to": "in-progress",
        "actor": "cli",
        "by": f"@agent-{n % 7}",
        "ctx": {"session_id": "burst"},
    }


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_after_numbering_a_burst_of_events_postgresql_vacuums_their_dead_index_entries(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loom.service import events

    monkeypatch.setattr(events, "VACUUM_AFTER", 1000)
    events.ingest_events(ctx, PROJECT, [_event(n) for n in range(3000)], "burst")
    items, _ = events.read_events(
        ctx, PROJECT, since=None, limit=1, entity=None, scope=None, op=None
    )
    assert items[0]["seq"] == 1
    assert events._vacuum is not None
    events._vacuum.join(timeout=60)
    # The pending-events probe every read runs: without the VACUUM it steps over 3,000 dead
    # entries of the partial index (9 or so leaf pages); after it, the index is empty. The
    # project's id is a literal: the test database is emptied with DELETEs between tests, so
    # a subquery on `projects` would also read the earlier tests' dead rows (that made this
    # test read 5 pages once in a serial run).
    with ctx.db.read() as conn:
        pid = conn.exec_driver_sql("SELECT id FROM projects").scalar_one()
        sql = (
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)"
            f" SELECT 1 FROM events WHERE project_id = {int(pid)} AND seq IS NULL LIMIT 1"
        )
        plan = conn.exec_driver_sql(sql).scalar_one()
    node = plan[0]["Plan"]
    pages = node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0)
    assert pages <= 4, plan
