"""Overlap-aware allocation costs one cheap check, and nothing more, when the project has no
requirement index rows, or (SQLite) no busy change (leased or in progress) has an indexed
requirement: the statements an allocation runs are counted on the real database, ``prefer``
against ``off``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from loom.service import changes, leases
from loom.service._context import ServiceContext
from loom.service.changes import Bundle
from loom.store import _raw

from .conftest import ACTOR, PROJECT

READY = "- [ ] 1.1 First\n"


def _delta(requirement: str) -> str:
    return f"## ADDED Requirements\n\n### Requirement: {requirement}\n{requirement} works.\n"


# A delta without requirement blocks: the change is ready, and has no index rows.
NO_REQUIREMENTS = ("notes", "Notes only.\n")


def _push(ctx: ServiceContext, change_id: str, *specs: tuple[str, str]) -> None:
    bundle = Bundle("# Proposal\n", None, READY, tuple(specs) or (NO_REQUIREMENTS,))
    changes.push_bundle(ctx, PROJECT, change_id, bundle, None, ACTOR)


@contextmanager
def _statements(ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement run, through SQLAlchemy or straight on the DBAPI cursor (the hot
    paths use ``loom.store._raw``, which SQLAlchemy's events do not see)."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.strip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")):
            seen.append(statement)

    real = _raw._cursor

    def counting(conn: Any, stmt: _raw.SQL, params: Any) -> Any:
        seen.append(stmt.qmark)
        return real(conn, stmt, params)

    event.listen(ctx.db.engine, "before_cursor_execute", count)
    with monkeypatch.context() as patch:
        patch.setattr(_raw, "_cursor", counting)
        try:
            yield seen
        finally:
            event.remove(ctx.db.engine, "before_cursor_execute", count)


def _cost(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch, holder: str, avoid_overlap: str
) -> tuple[str, list[str]]:
    with _statements(ctx, monkeypatch) as seen:
        result = leases.allocate(ctx, PROJECT, holder, None, avoid_overlap=avoid_overlap)
    claim = result["claim"]
    assert claim is not None
    leases.release(ctx, PROJECT, claim["change_id"], holder, force=False, actor=ACTOR)
    return claim["change_id"], seen


def _sent_along(ctx: ServiceContext) -> int:
    """How many more statements than ``off`` ``prefer`` may run: the overlap check (SQLite).
    PostgreSQL also reads the busy changes again after the requirement locks; each of the
    two goes in one round trip with another statement (the holder's leases; the locks), so
    both paths are four round trips there (tests/store/test_loop_writes.py counts them)."""
    return 2 if ctx.db.engine.dialect.name == "postgresql" else 1


def _compare(ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int, bool]:
    """(statements with prefer, statements with off, whether prefer ran the overlap pass)
    for the same allocation."""
    first, off = _cost(ctx, monkeypatch, "agent-off", "off")
    second, prefer = _cost(ctx, monkeypatch, "agent-prefer", "prefer")
    assert first == second
    passed = any(s.startswith("WITH busy AS") for s in prefer)
    return len(prefer), len(off), passed


def test_no_requirement_rows_one_extra_statement(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(1, 6):
        _push(ctx, f"001-0{i}_plain")
    _push(ctx, "001-09_busy")
    leases.claim(ctx, PROJECT, "001-09_busy", "busy-agent", None)
    prefer, off, passed = _compare(ctx, monkeypatch)
    assert not passed
    assert prefer == off + 1


def test_busy_changes_without_requirements_one_extra_statement(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Other (idle) changes have deltas; the busy one has none: nothing can overlap it.
    _push(ctx, "001-01_plain")
    _push(ctx, "001-02_idle", ("auth", _delta("Login")))
    _push(ctx, "001-03_idle", ("auth", _delta("Login")))
    _push(ctx, "001-09_busy")
    leases.claim(ctx, PROJECT, "001-09_busy", "busy-agent", None)
    prefer, off, passed = _compare(ctx, monkeypatch)
    # PostgreSQL: concurrent allocators do not see each other's uncommitted claims, so with
    # any requirement row in the project the overlap pass runs (tests/leases/
    # test_overlap_races.py races it); for a candidate without requirements it runs no more
    # round trips than the plain path (the pick, the lease read after the row lock with the
    # requirement locks and the busy changes read again).
    assert passed == (ctx.db.engine.dialect.name == "postgresql")
    assert prefer <= off + _sent_along(ctx)


def test_a_busy_requirement_turns_the_overlap_pass_on(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a busy change holding a requirement, prefer runs the overlap pass: one pick
    # statement (whose cost does not grow with the changes it passes over:
    # tests/store/test_overlap_allocation.py); PostgreSQL also reads the busy requirements
    # again after try-locking the candidate's. Still at most one statement more than off
    # (PostgreSQL: two, each sent with another one).
    _push(ctx, "001-01_plain")
    _push(ctx, "001-02_idle", ("auth", _delta("Login")))
    _push(ctx, "001-09_busy", ("auth", _delta("Login")))
    leases.claim(ctx, PROJECT, "001-09_busy", "busy-agent", None)
    prefer, off, passed = _compare(ctx, monkeypatch)
    assert passed
    assert prefer <= off + _sent_along(ctx)
