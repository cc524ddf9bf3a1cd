"""A lease write and its audit events are stored together (one statement on PostgreSQL) and
still wake the event stream, on both engines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import FakeClock
from loom.service import changes, leases
from loom.service._context import Actor, Policy, Project, ServiceContext
from loom.service.changes import Bundle
from loom.service.events import read_events
from loom.store import migrate
from loom.store.engine import Database

PROJECT = Project("acme", "widgets")
CHANGE = "001-01_alpha"


@pytest.fixture
def ctx(database_url: str, clock: FakeClock) -> Iterator[ServiceContext]:
    db = Database(database_url)
    migrate.upgrade(db)
    context = ServiceContext(db, Policy(), clock)
    changes.push_bundle(
        context, PROJECT, CHANGE, Bundle("# P\n", None, "- [ ] 1.1 a\n", ()), None, Actor()
    )
    yield context
    db.dispose()


def test_claim_expiry_takeover_and_release_log_their_events_and_wake_the_stream(
    ctx: ServiceContext, clock: FakeClock
) -> None:
    woken: list[set[int]] = []
    ctx.db.on_events = woken.append
    leases.claim(ctx, PROJECT, CHANGE, "a", 30)
    clock.advance(31)  # a's lease expires untaken: b's claim logs "expire" then "claim"
    taken = leases.claim(ctx, PROJECT, CHANGE, "b", 30)
    leases.release(ctx, PROJECT, CHANGE, "b", force=False, actor=Actor(holder="b"))
    ops = [
        (e["op"], e["meta"]["holder"])
        for e in read_events(
            ctx, PROJECT, since=None, limit=None, entity=None, scope=None, op=None
        )[0]
        if e["entity"] == "change" and e["op"] != "create"
    ]
    assert ops == [("claim", "a"), ("expire", "a"), ("claim", "b"), ("release", "b")]
    assert taken["fencing_token"] == 2
    assert len(woken) == 3 and all(len(w) == 1 for w in woken)
