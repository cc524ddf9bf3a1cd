"""PostgreSQL lock-then-read: a lease write that waited for the change's row lock must see
what the lock holder committed (READ COMMITTED snapshots are per statement).

The interleaving is forced, not hoped for: transaction A holds the change's lock, B's claim
or heartbeat is observed waiting on that lock in ``pg_stat_activity``, then A commits a new
owner. B must see that owner — reading the lease in the statement that waited would return
the state from before the wait and hand the change to a second holder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from conftest import FakeClock
from loom.domain import leases as rules
from loom.errors import LeaseConflict
from loom.service import changes, leases
from loom.service._common import write_pid
from loom.service._context import Actor, Policy, Project, ServiceContext
from loom.service.changes import Bundle
from loom.store import migrate
from loom.store.engine import Database
from loom.store.leases import get_change_lease, get_lease, save_lease

PROJECT = Project("acme", "widgets")
CHANGE = "001-01_alpha"
DELTA = "## ADDED Requirements\n\n### Requirement: X\nThe system SHALL x.\n"


@pytest.fixture
def ctx(pg_url: str, clock: FakeClock) -> Iterator[ServiceContext]:
    db = Database(pg_url)
    migrate.upgrade(db)
    context = ServiceContext(db, Policy(), clock)
    changes.push_bundle(
        context,
        PROJECT,
        CHANGE,
        Bundle("# P\n", None, "- [ ] 1.1 a\n", (("auth", DELTA),)),
        None,
        Actor(),
    )
    yield context
    db.dispose()


def _wait_until_blocked(url: str) -> None:
    """Until some backend of this database waits on a lock (bounded; fails otherwise)."""
    probe = create_engine(url)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with probe.connect() as conn:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
            if waiting:
                return
            time.sleep(0.01)
        raise AssertionError("the competing transaction never waited for the row lock")
    finally:
        probe.dispose()


def _race(ctx: ServiceContext, pg_url: str, competitor: Callable[[], Any], new_holder: str) -> Any:
    """Hold the change's lock, let ``competitor`` block on it, then commit ``new_holder``."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(competitor())
        except BaseException as exc:  # reported to the test below
            outcome.append(exc)

    pid = write_pid(ctx, PROJECT)
    thread = threading.Thread(target=run)
    with ctx.db.write() as conn:
        _, _, stored = get_change_lease(conn, pid, CHANGE)
        thread.start()
        _wait_until_blocked(pg_url)
        taken = rules.claim(
            stored or rules.LeaseState(),
            change_id=CHANGE,
            holder=new_holder,
            now_us=ctx.now_us(),
            ttl_seconds=60,
        )
        save_lease(conn, pid, CHANGE, taken.state, exists=stored is not None)
    thread.join(timeout=30)
    assert not thread.is_alive()
    return outcome[0]


def _stored_holder(ctx: ServiceContext) -> str | None:
    with ctx.db.read() as conn:
        state = get_lease(conn, write_pid(ctx, PROJECT), CHANGE)
    return None if state is None else state.holder


def test_a_claim_that_waited_sees_the_first_claim(ctx: ServiceContext, pg_url: str) -> None:
    """No lease row yet: the waiter must not insert a second one (was a 500 or a double win)."""
    result = _race(ctx, pg_url, lambda: leases.claim(ctx, PROJECT, CHANGE, "b", None), "a")
    assert isinstance(result, LeaseConflict), result
    assert _stored_holder(ctx) == "a"


def test_a_claim_that_waited_sees_a_takeover_of_a_released_change(
    ctx: ServiceContext, pg_url: str
) -> None:
    leases.claim(ctx, PROJECT, CHANGE, "old", None)
    leases.release(ctx, PROJECT, CHANGE, "old", force=False, actor=Actor("old"))
    result = _race(ctx, pg_url, lambda: leases.claim(ctx, PROJECT, CHANGE, "b", None), "a")
    assert isinstance(result, LeaseConflict), result
    assert _stored_holder(ctx) == "a"


def test_a_heartbeat_that_waited_does_not_revive_a_lease_taken_over(
    ctx: ServiceContext, pg_url: str, clock: FakeClock
) -> None:
    leases.claim(ctx, PROJECT, CHANGE, "old", 10)
    clock.advance(11)  # expired: anyone may take it over
    result = _race(ctx, pg_url, lambda: leases.heartbeat(ctx, PROJECT, CHANGE, "old", None), "a")
    assert isinstance(result, LeaseConflict), result
    assert _stored_holder(ctx) == "a"


def test_a_release_that_waited_does_not_release_the_new_owner(
    ctx: ServiceContext, pg_url: str, clock: FakeClock
) -> None:
    leases.claim(ctx, PROJECT, CHANGE, "old", 10)
    clock.advance(11)
    result = _race(
        ctx,
        pg_url,
        lambda: leases.release(ctx, PROJECT, CHANGE, "old", force=False, actor=Actor("old")),
        "a",
    )
    assert isinstance(result, LeaseConflict), result
    assert result.kind == "not_lease_holder"
    assert _stored_holder(ctx) == "a"
