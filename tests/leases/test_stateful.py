"""A hypothesis state machine drives the real lease service against a small model.

Several holders claim, heartbeat, release, force-release, allocate, write (push with lease
headers), start work and archive, over a few changes, while a fake server clock jumps around
the expiry boundaries. After every step the server and the model must agree on the response,
and on the set of active leases; fencing tokens never go backwards and move exactly on
ownership changes.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from prometheus_client import REGISTRY

from conftest import FakeClock, examples
from loom.domain.timefmt import format_us
from loom.errors import LoomError
from loom.service import archive as archive_svc
from loom.service import changes as changes_svc
from loom.service import leases as svc
from loom.service import tasks as tasks_svc
from loom.service._context import Actor, Policy, Project, ServiceContext
from loom.store import migrate
from loom.store.engine import Database

from ._helpers import TASKS, spec_delta

S = 1_000_000
CHANGES = ["001-01_alpha", "001-02_beta", "002-01_gamma"]
HOLDERS = ["h1", "h2", "h3"]
TTLS = [10, 30]

holders = st.sampled_from(HOLDERS)
change_ids = st.sampled_from(CHANGES)
ttls = st.sampled_from(TTLS)
vias = st.sampled_from([0, 1])
# jumps that land on, just before and just after the possible expiry times
steps_us = st.sampled_from([0, 1, S - 1, 5 * S, 10 * S - 1, 10 * S, 10 * S + 1, 20 * S, 30 * S])
filters = st.sampled_from(
    [
        {},
        {"module": "001"},
        {"module": "002"},
        {"changes": ["002-01_gamma", "001-02_beta"]},
        {"changes": ["001-01_alpha"]},
    ]
)


@dataclass
class ModelLease:
    holder: str | None = None  # the last holder, kept after expiry until taken or released
    expires: int = 0
    token: int = 0
    prev: str | None = None  # whom the last takeover displaced
    revision: int = 1
    started: bool = False
    archived: bool = False

    def active(self, now: int) -> bool:
        return self.holder is not None and now < self.expires


Outcome = tuple[str, Any]  # ("ok", body) or ("err", kind)


def call(fn: Any, *args: Any, **kwargs: Any) -> Outcome:
    try:
        return ("ok", fn(*args, **kwargs))
    except LoomError as err:
        return ("err", err.kind)


class LeaseMachine(RuleBasedStateMachine):
    ctx: ServiceContext
    clock: FakeClock
    _projects = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.project = Project("acme", f"stateful-{next(self._projects)}")
        self.model = {c: ModelLease() for c in CHANGES}
        self.seen_tokens = dict.fromkeys(CHANGES, 0)

    @property
    def now(self) -> int:
        return self.clock()

    def lease(self, via: int, fn: Any, *args: Any, **kwargs: Any) -> Outcome:
        """Run a lease use case (claim, heartbeat, release, allocate) as the server does;
        ``via``: which server process, where a subclass has several."""
        return call(fn, self.ctx, *args, **kwargs)

    @initialize()
    def create_changes(self) -> None:
        for i, cid in enumerate(CHANGES):
            bundle = changes_svc.Bundle(f"# {cid}\n", None, TASKS, ((f"cap-{i}", spec_delta(cid)),))
            changes_svc.push_bundle(self.ctx, self.project, cid, bundle, None, Actor(admin=True))

    # ------------------------------------------------------------------ helpers

    def _grant(self, cid: str, holder: str, ttl: int) -> tuple[str, Any]:
        """The model of a claim (also used by allocation)."""
        m, now = self.model[cid], self.now
        if m.archived:
            return ("err", "archived")
        if m.active(now) and m.holder != holder:
            return ("err", "lease_conflict")
        if m.holder != holder:  # an ownership change: token + 1
            m.prev, m.holder, m.token = m.holder, holder, m.token + 1
        m.expires = now + ttl * S
        return ("ok", self._claim_body(cid))

    def _claim_body(self, cid: str) -> dict[str, Any]:
        m = self.model[cid]
        return {
            "change_id": cid,
            "holder": m.holder,
            "expires_at": format_us(m.expires),
            "fencing_token": m.token,
        }

    def _check_claim(self, got: Outcome, want: Outcome) -> None:
        if want[0] == "err" or got[0] == "err":
            assert got == want
            return
        body = got[1]
        assert {k: body[k] for k in ("change_id", "holder", "expires_at", "fencing_token")} == want[
            1
        ]
        cid = body["change_id"]
        assert body["fencing_token"] >= self.seen_tokens[cid], "fencing token went backwards"
        self.seen_tokens[cid] = body["fencing_token"]

    def _abandoned(self, cid: str, now: int) -> bool:
        m = self.model[cid]
        return m.started and m.holder is not None and not m.active(now)

    def _write_allowed(self, cid: str, holder: str | None, token: int | None) -> Outcome | None:
        m, now = self.model[cid], self.now
        if m.archived:
            return ("err", "archived")
        if token is not None and (token < m.token or (token != m.token and m.active(now))):
            # A token above the current one was never issued: "unknown", not "stale".
            return ("err", "unknown_fencing_token" if token > m.token else "stale_fencing_token")
        if m.active(now) and m.holder != holder:
            return ("err", "lease_conflict")
        return None

    def _token_choice(self, cid: str, which: str) -> int | None:
        current = self.model[cid].token
        return {
            "none": None,
            "current": current,
            "older": max(current - 1, 0),
            "newer": current + 1,
        }[which]

    # ------------------------------------------------------------------ rules

    @rule(step=steps_us)
    def advance(self, step: int) -> None:
        self.clock.now += step

    @rule(cid=change_ids, holder=holders, ttl=ttls, via=vias)
    def claim(self, cid: str, holder: str, ttl: int, via: int) -> None:
        got = self.lease(via, svc.claim, self.project, cid, holder, ttl)
        self._check_claim(got, self._grant(cid, holder, ttl))

    @rule(cid=change_ids, holder=holders, ttl=ttls, via=vias)
    def heartbeat(self, cid: str, holder: str, ttl: int, via: int) -> None:
        m, now = self.model[cid], self.now
        want: Outcome
        if m.archived:
            want = ("err", "archived")
        elif m.holder == holder:
            m.expires = now + ttl * S
            want = ("ok", self._claim_body(cid))
        elif m.active(now) and m.prev == holder:
            want = ("err", "lease_conflict")
        else:
            want = ("err", "not_lease_holder")
        self._check_claim(self.lease(via, svc.heartbeat, self.project, cid, holder, ttl), want)

    @rule(cid=change_ids, holder=holders, force=st.booleans(), via=vias)
    def release(self, cid: str, holder: str, force: bool, via: int) -> None:
        m, now = self.model[cid], self.now
        want: Outcome
        if m.holder is None:
            want = ("ok", False)
        elif m.holder != holder and m.active(now) and not force:
            want = ("err", "not_lease_holder")
        elif m.holder != holder and not m.active(now):
            want = ("ok", False)
        else:
            m.prev, m.holder = m.holder, None
            want = ("ok", True)
        actor = Actor(admin=force)
        got = self.lease(via, svc.release, self.project, cid, holder, force=force, actor=actor)
        if got[0] == "ok":
            assert got[1]["change_id"] == cid
            got = ("ok", got[1]["released"])
        assert got == want

    @rule(holder=holders, ttl=ttls, where=filters, via=vias)
    def allocate(self, holder: str, ttl: int, where: dict[str, Any], via: int) -> None:
        now = self.now
        in_scope = [
            c
            for c in CHANGES
            if not self.model[c].archived
            and ("module" not in where or c.startswith(where["module"] + "-"))
            and ("changes" not in where or c in where["changes"])
        ]
        mine = [c for c in in_scope if self.model[c].active(now) and self.model[c].holder == holder]
        free = [c for c in in_scope if not self.model[c].active(now)]
        # Abandoned work first: in progress, its lease lapsed (a holder is still recorded, so
        # it was neither released nor taken over); then the rest in canonical order.
        free.sort(key=lambda c: (not self._abandoned(c, now), CHANGES.index(c)))
        options = mine or free
        pick = options[0] if options else None
        got = self.lease(via, svc.allocate, self.project, holder, ttl, **where)
        assert got[0] == "ok", got
        if pick is None:
            assert got[1] == {"claim": None}
            return
        want = self._grant(pick, holder, ttl)
        assert want[0] == "ok"
        assert got[1]["claim"] is not None, (pick, got)
        self._check_claim(("ok", got[1]["claim"]), want)

    @rule(
        cid=change_ids,
        holder=st.sampled_from([*HOLDERS, None]),
        token=st.sampled_from(["none", "current", "older", "newer"]),
    )
    def push(self, cid: str, holder: str | None, token: str) -> None:
        tok = self._token_choice(cid, token)
        m = self.model[cid]
        i = CHANGES.index(cid)
        bundle = changes_svc.Bundle(
            f"# {cid} rev {m.revision}\n",
            None,
            TASKS if not m.started else None,
            ((f"cap-{i}", spec_delta(cid)),),
        )
        if m.started:  # keep the task started: re-push the stored tasks
            bundle = changes_svc.Bundle(bundle.proposal, None, self._tasks(cid), bundle.specs)
        want = self._write_allowed(cid, holder, tok)
        got = call(
            changes_svc.push_bundle,
            self.ctx,
            self.project,
            cid,
            bundle,
            str(m.revision),
            Actor(holder, tok, admin=True),
        )
        if want is None:
            m.revision += 1
            want = ("ok", {"change_id": cid, "new_revision": str(m.revision)})
        assert got == want

    def _tasks(self, cid: str) -> str:
        body = changes_svc.pull_bundle(self.ctx, self.project, cid)
        tasks: str = body["tasks"]
        return tasks

    @precondition(lambda self: not all(m.started for m in self.model.values()))
    @rule(cid=change_ids, holder=holders, token=st.sampled_from(["none", "current", "older"]))
    def start_work(self, cid: str, holder: str, token: str) -> None:
        m = self.model[cid]
        if m.started:
            return
        tok = self._token_choice(cid, token)
        want = self._write_allowed(cid, holder, tok)
        got = call(
            tasks_svc.mutate_task,
            self.ctx,
            self.project,
            cid,
            "start",
            Actor(holder, tok, admin=True),
            task_id="1.1",
        )
        if want is None:
            m.started = True
            m.revision += 1
            assert got[0] == "ok", got
            assert got[1]["task"]["status"] == "in-progress"
        else:
            assert got == want

    @rule(cid=change_ids, holder=holders)
    def archive(self, cid: str, holder: str) -> None:
        m = self.model[cid]
        got = call(
            archive_svc.archive_change,
            self.ctx,
            self.project,
            cid,
            Actor(holder, None, admin=True),
            force=True,
        )
        if m.archived:
            assert got[0] == "ok"
            return
        want = self._write_allowed(cid, holder, None)
        if want is None:
            assert got[0] == "ok", got
            m.archived = True
            m.revision += 1
            if m.holder is not None:
                m.prev, m.holder = m.holder, None
        else:
            assert got == want

    # ------------------------------------------------------------------ invariants

    @invariant()
    def active_leases_agree(self) -> None:
        now = self.now
        listed = svc.list_leases(self.ctx, self.project)
        ids = [x["change_id"] for x in listed]
        assert len(ids) == len(set(ids)), "two active leases on one change"
        server = {
            x["change_id"]: (x["holder"], x["fencing_token"], x["expires_at"]) for x in listed
        }
        model = {
            c: (m.holder, m.token, format_us(m.expires))
            for c, m in self.model.items()
            if m.active(now)
        }
        assert server == model
        expiries = [x["expires_at"] for x in listed]
        assert expiries == sorted(expiries)
        for cid, (_, token, _) in server.items():
            assert token >= self.seen_tokens[cid]


@pytest.fixture
def sqlite_ctx(tmp_path: Path) -> Any:
    db = Database(f"sqlite:///{tmp_path / 'loom.db'}")
    migrate.upgrade(db)
    yield db
    db.dispose()


@pytest.mark.hypothesis  # selected by `make explore` (pytest -m hypothesis)
def test_lease_state_machine_on_sqlite(sqlite_ctx: Database) -> None:
    clock = FakeClock()
    ctx = ServiceContext(sqlite_ctx, Policy(), clock)

    class Machine(LeaseMachine):
        pass

    Machine.ctx = ctx
    Machine.clock = clock
    run_state_machine_as_test(
        Machine,
        settings=settings(max_examples=examples(60), stateful_step_count=40),
    )


@pytest.mark.hypothesis
def test_lease_state_machine_on_postgresql_on_the_loop(pg_url: str) -> None:
    """The same machine on PostgreSQL, the lease use cases run as ``loom serve`` runs them
    there: on an event loop (``Database.run_write(on_loop=True)``), where a claim, heartbeat
    or release first tries a compare-and-set on the lease its process last saw. Two service
    contexts on one database stand for two server processes (``--workers 2``): each step
    picks one, so each often decides on a lease the other has moved on since, which must
    change nothing."""
    db = Database(pg_url)
    loop = asyncio.new_event_loop()
    clock = FakeClock()
    processes = [ServiceContext(db, Policy(), clock), ServiceContext(db, Policy(), clock)]

    class Machine(LeaseMachine):
        def lease(self, via: int, fn: Any, *args: Any, **kwargs: Any) -> Outcome:
            ctx = processes[via]
            return loop.run_until_complete(
                db.run_write(lambda: call(fn, ctx, *args, **kwargs), on_loop=True)
            )

    Machine.ctx = processes[0]
    Machine.clock = clock
    before = [_guesses(outcome) for outcome in ("written", "moved_on")]
    try:
        run_state_machine_as_test(
            Machine,
            settings=settings(max_examples=examples(25), stateful_step_count=40),
        )
    finally:
        for conn in db._loop_free:
            conn.close()
        loop.close()
        db.dispose()
    # Both ways were taken: the compare-and-set wrote, and it found leases moved on.
    after = [_guesses(outcome) for outcome in ("written", "moved_on")]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


def _guesses(outcome: str) -> float:
    labels = {"outcome": outcome}
    return REGISTRY.get_sample_value("loom_lease_compare_and_set_total", labels) or 0.0
