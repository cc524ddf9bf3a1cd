"""Overlap-aware allocation finds the first eligible change sharing no requirement with a busy
one however many eligible changes before it overlap (there is no window), on SQLite and
PostgreSQL; and the statements it runs do not grow with how many it passes over."""

from __future__ import annotations

import pytest

from conftest import FakeClock
from loom.service import changes, leases
from loom.service._context import ServiceContext
from loom.service.changes import Bundle
from loom.store import _raw, overlap_allocation

from .conftest import ACTOR, PROJECT
from .test_allocate_fast_path import _delta, _push, _statements

AHEAD = 100  # more than the 64 changes the pass used to look at
IN_PROGRESS = "- [~] 1.1 First\n- [ ] 1.2 Second\n"


def _seed(ctx: ServiceContext, ahead: int) -> None:
    """``ahead`` ready changes touching auth/Login, a busy change touching it too, and after
    them, in canonical order, one change touching only auth/Logout, then a change without
    requirements."""
    for i in range(1, ahead + 1):
        _push(ctx, f"001-{i:03d}_login-{i}", ("auth", _delta("Login")))
    _push(ctx, "002-01_logout", ("auth", _delta("Logout")))
    _push(ctx, "003-01_notes")
    _push(ctx, "009-01_busy", ("auth", _delta("Login")))
    leases.claim(ctx, PROJECT, "009-01_busy", "busy-agent", None)


@pytest.mark.parametrize("mode", ["prefer", "strict"])
def test_the_first_change_free_of_overlap_is_found_beyond_a_hundred_overlapping(
    ctx: ServiceContext, mode: str
) -> None:
    _seed(ctx, AHEAD)
    claim = leases.allocate(ctx, PROJECT, "agent", None, avoid_overlap=mode)["claim"]
    assert claim is not None
    assert claim["change_id"] == "002-01_logout"
    assert "overlaps" not in claim
    # Then the change without requirements, still ahead of every overlapping one.
    second = leases.allocate(ctx, PROJECT, "agent-2", None, avoid_overlap=mode)["claim"]
    assert second is not None and second["change_id"] == "003-01_notes"


def test_only_when_nothing_free_remains_prefer_overlaps_and_strict_says_no_work(
    ctx: ServiceContext,
) -> None:
    _seed(ctx, AHEAD)
    for holder in ("a", "b"):
        assert leases.allocate(ctx, PROJECT, holder, None)["claim"] is not None
    assert leases.allocate(ctx, PROJECT, "strict", None, avoid_overlap="strict") == {"claim": None}
    claim = leases.allocate(ctx, PROJECT, "prefer", None)["claim"]
    assert claim["change_id"] == "001-001_login-1"
    assert claim["overlaps"] == ["009-01_busy"]


def test_filters_apply_to_the_pass(ctx: ServiceContext) -> None:
    _seed(ctx, 3)
    login = "001-002_login-2"
    strict = {"avoid_overlap": "strict"}
    assert leases.allocate(ctx, PROJECT, "x", None, changes=[login], **strict) == {"claim": None}
    only = leases.allocate(ctx, PROJECT, "y", None, changes=[login, "003-01_notes"], **strict)
    assert only["claim"]["change_id"] == "003-01_notes"
    by_module = leases.allocate(ctx, PROJECT, "z", None, module="002", **strict)
    assert by_module["claim"]["change_id"] == "002-01_logout"
    assert leases.allocate(ctx, PROJECT, "w", None, module="001", **strict) == {"claim": None}


def _push_in_progress(ctx: ServiceContext, change_id: str, requirement: str) -> None:
    bundle = Bundle("# Proposal\n", None, IN_PROGRESS, (("auth", _delta(requirement)),))
    changes.push_bundle(ctx, PROJECT, change_id, bundle, None, ACTOR)


@pytest.mark.parametrize(
    ("requirement", "expected"), [("Audit", "005-01_abandoned"), ("Login", "001-01_first")]
)
def test_abandoned_work_first_unless_it_overlaps(
    ctx: ServiceContext, clock: FakeClock, requirement: str, expected: str
) -> None:
    """Abandoned work (in progress, its lease run out) comes before canonical order, as on
    the plain path, and is passed over like any other change when it overlaps a busy one."""
    _push(ctx, "001-01_first", ("auth", _delta("Signup")))
    _push_in_progress(ctx, "005-01_abandoned", requirement)
    _push(ctx, "009-01_busy", ("auth", _delta("Login")))
    ttl = ctx.policy.lease_ttl_min
    leases.claim(ctx, PROJECT, "005-01_abandoned", "gone", ttl)
    clock.advance(ttl + 1)
    leases.claim(ctx, PROJECT, "009-01_busy", "busy-agent", None)
    claim = leases.allocate(ctx, PROJECT, "agent", None, avoid_overlap="strict")["claim"]
    assert claim["change_id"] == expected


@pytest.mark.parametrize("ahead", [1, AHEAD])
def test_statements_do_not_grow_with_the_overlapping_changes_passed_over(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch, ahead: int
) -> None:
    _seed(ctx, ahead)
    with _statements(ctx, monkeypatch) as seen:
        claim = leases.allocate(ctx, PROJECT, "agent", None, avoid_overlap="strict")["claim"]
    assert claim["change_id"] == "002-01_logout"
    # held_by, the overlap check, the pick (one statement on both), the lease write and
    # its events; PostgreSQL also reads the lease after the row lock while try-locking the
    # requirements, and reads the busy requirements again after those locks.
    if ctx.db.engine.dialect.name == "postgresql":
        assert len(seen) == 6, seen
    else:
        assert len(seen) == 5, seen
    leases.release(ctx, PROJECT, claim["change_id"], "agent", force=False, actor=ACTOR)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_pick_plan_is_driven_by_the_busy_changes(ctx: ServiceContext) -> None:
    """The pick statement reads the busy changes' index rows by primary-key prefix and the
    changes sharing their requirements through the requirement index: no step scans every
    index row of the project (SQLite chose exactly that without the join order and hint)."""
    _seed(ctx, 3)
    with ctx.db.write() as conn:
        sql = overlap_allocation._sqlite_pick(overlap_allocation._filters(None, None, ())[0])
        params = [1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1]
        plan = [
            str(r[3])
            for r in _raw.fetchall(conn, _raw.SQL("EXPLAIN QUERY PLAN " + sql.qmark), params)
        ]
    searches = [p for p in plan if " r " in f" {p} " or " m " in f" {p} "]
    assert any("SEARCH r USING COVERING INDEX" in p and "change_id=?" in p for p in plan), plan
    assert any(
        "SEARCH m USING INDEX ix_change_requirements_project_id_capability_requirement" in p
        for p in plan
    ), plan
    assert not any(p.endswith("(project_id=?)") for p in searches), plan


def _seed_unbusy(ctx: ServiceContext, ahead: int) -> None:
    """``_seed`` without the busy change: nothing is leased or in progress."""
    for i in range(1, ahead + 1):
        _push(ctx, f"001-{i:03d}_login-{i}", ("auth", _delta("Login")))
    _push(ctx, "002-01_logout", ("auth", _delta("Logout")))
    _push(ctx, "003-01_notes")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("mode", ["prefer", "strict"])
def test_a_requirement_another_allocator_is_locking_passes_over_its_changes_at_once(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Another allocator, mid-transaction, holds the lock of auth/Login (it is claiming a
    change touching it). An allocation passes over all the changes touching auth/Login with
    one more statement, not one round of statements per change (the cause of PostgreSQL's
    allocate tail when everything overlaps), and takes the first change free of it."""
    _seed_unbusy(ctx, AHEAD)
    key = overlap_allocation._LOCK_KEY
    with ctx.db.engine.connect() as other:
        locked = other.exec_driver_sql(
            f"SELECT pg_try_advisory_xact_lock({key}) FROM change_requirements r"
            " WHERE r.change_id = '001-001_login-1'"
        ).scalar_one()
        assert locked is True
        with _statements(ctx, monkeypatch) as seen:
            claim = leases.allocate(ctx, PROJECT, "agent", None, avoid_overlap=mode)["claim"]
        assert claim is not None and claim["change_id"] == "002-01_logout"
        # held_by, the overlap check, the pick (001-001), its lock attempt (auth/Login is
        # taken) with the busy requirements read again (sent with it, unused), the pick with
        # auth/Login counted busy (002-01), its locks and the busy requirements read again,
        # the lease write.
        assert len(seen) == 9, seen
        second = leases.allocate(ctx, PROJECT, "agent-2", None, avoid_overlap=mode)["claim"]
        assert second is not None and second["change_id"] == "003-01_notes"
        third = leases.allocate(ctx, PROJECT, "agent-3", None, avoid_overlap=mode)["claim"]
        if mode == "strict":
            assert third is None
        else:  # Nothing free of overlap: the first in order, as before.
            assert third is not None and third["change_id"] == "001-001_login-1"
        other.rollback()
    # The lock released, the Login changes are free again (nothing touching it is busy).
    fourth = leases.allocate(ctx, PROJECT, "agent-4", None, avoid_overlap=mode)["claim"]
    expected = "001-001_login-1" if mode == "strict" else "001-002_login-2"
    assert fourth is not None and fourth["change_id"] == expected
