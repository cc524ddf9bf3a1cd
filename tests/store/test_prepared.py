"""PostgreSQL: the ``fast`` statements of loom.store._raw are named prepared statements of
the session, prepared once per connection, and they outlive rollbacks (psycopg's automatic
preparation is off, so it never sends the DEALLOCATE ALL that would drop them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from conftest import FakeClock
from loom.errors import LeaseConflict
from loom.service import changes, leases
from loom.service._context import Actor, Policy, Project, ServiceContext
from loom.service.changes import Bundle
from loom.store import _raw, migrate, schema
from loom.store.engine import Database

PROJECT = Project("acme", "prepared")


@pytest.fixture
def pg_ctx(pg_url: str, clock: FakeClock) -> Iterator[ServiceContext]:
    db = Database(pg_url)
    migrate.upgrade(db)
    ctx = ServiceContext(db, Policy(), clock)
    bundle = Bundle("# P\n", None, "- [ ] 1.1 t\n", (("notes", "Notes.\n"),))
    changes.push_bundle(ctx, PROJECT, "001-01_a", bundle, None, Actor())
    yield ctx
    db.dispose()


def _session(ctx: ServiceContext) -> tuple[dict[str, str], dict[bytes, bytes]]:
    """(the prepared statements PostgreSQL holds for the session: name → text, the names
    loom.store._raw recorded), on the connection this thread's writes use."""
    with ctx.db.write() as conn:
        rows = conn.exec_driver_sql("SELECT name, statement FROM pg_prepared_statements").all()
        recorded = dict(_raw._prepared(conn.connection.dbapi_connection))
    return {str(name): str(text) for name, text in rows}, recorded


def test_fast_statements_are_prepared_once_and_outlive_rollbacks(
    pg_ctx: ServiceContext,
) -> None:
    ctx = pg_ctx
    leases.claim(ctx, PROJECT, "001-01_a", "a", None)
    held, recorded = _session(ctx)
    assert recorded, "no statement was prepared"
    assert {name.decode() for name in recorded.values()} <= set(held)
    assert all(name.startswith("loom_") for name in held)
    # A refused claim rolls back through SQLAlchemy and psycopg: the statements stay, even
    # with a statement run through psycopg on the same connection more often than psycopg's
    # own preparation threshold (5, were it on: its DEALLOCATE ALL would drop ours).
    for token in range(2, 10):
        with ctx.db.write() as conn:
            for _ in range(6):
                count = conn.execute(select(func.count()).select_from(schema.changes))
                assert count.scalar_one() == 1
        holder, other = ("a", "b") if token % 2 == 0 else ("b", "a")
        with pytest.raises(LeaseConflict):
            leases.claim(ctx, PROJECT, "001-01_a", other, None)
        leases.heartbeat(ctx, PROJECT, "001-01_a", holder, None)
        leases.release(ctx, PROJECT, "001-01_a", holder, force=False, actor=Actor())
        assert leases.claim(ctx, PROJECT, "001-01_a", other, None)["fencing_token"] == token
    after, recorded_after = _session(ctx)
    # Nothing prepared twice: every statement PostgreSQL holds is one recorded, once.
    assert set(after) == {name.decode() for name in recorded_after.values()}
    assert set(held) <= set(after)
    assert len(set(after.values())) == len(after)
