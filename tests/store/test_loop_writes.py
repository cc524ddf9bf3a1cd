"""PostgreSQL lease requests run on the event loop (loom.store._loopio): in a greenlet whose
round trips are awaited on the loop, not on a writer thread. Same transactions, same rules:
what these tests pin down is that the lease routes really take that path, never block the
loop with a statement, keep their guarantees when many run at once, and survive a lost
connection."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from conftest import ADMIN, ORG, REPO, make_settings, start_server, wait_for
from loom.api.app import create_app
from loom.store import _loopio, _raw, relay
from loom.store import leases as store_leases
from loom.store.engine import Database
from loom.store.schema import projects

H = {"Authorization": f"Bearer {ADMIN}"}
P = f"/api/v1/projects/{ORG}/{REPO}"


@pytest.fixture
def pg_app(pg_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Database]]:
    app = create_app(make_settings(pg_url, tmp_path))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, app.state.ctx.db


def _counted() -> tuple[float, float]:
    """(write transactions run on the loop, statements that blocked it) in this process, as
    ``/metrics`` reports them."""
    writes = REGISTRY.get_sample_value("loom_db_loop_writes_total")
    blocking = REGISTRY.get_sample_value("loom_db_loop_blocking_statements_total")
    return writes or 0.0, blocking or 0.0


def _push(client: TestClient, *changes: str) -> None:
    for change in changes:
        r = client.post(
            f"{P}/changes/{change}/sync",
            json={"proposal": "# p\n", "tasks": "- [ ] 1.1 t\n", "specs": []},
            headers=H,
        )
        assert r.status_code == 200, r.text


def test_lease_requests_run_on_the_loop_without_a_blocking_statement(
    pg_app: tuple[TestClient, Database],
) -> None:
    client, db = pg_app
    _push(client, "001-01_a")
    assert client.post(f"{P}/changes/001-01_a/claim", json={"holder": "a"}, headers=H).is_success
    writes, blocking = _counted()
    for _ in range(5):
        r = client.post(f"{P}/changes/001-01_a/claim", json={"holder": "a"}, headers=H)
        assert r.status_code == 200, r.text
        r = client.post(f"{P}/changes/001-01_a/heartbeat", json={"holder": "a"}, headers=H)
        assert r.status_code == 200, r.text
    r = client.post(f"{P}/changes/001-01_a/claim", json={"holder": "b"}, headers=H)
    assert (r.status_code, r.json()["kind"]) == (409, "lease_conflict")
    r = client.post(f"{P}/changes/001-01_a/release", json={"holder": "a"}, headers=H)
    assert r.status_code == 200 and r.json()["released"] is True
    r = client.post(f"{P}/changes/001-01_a/claim", json={"holder": "b"}, headers=H)
    assert r.status_code == 200 and r.json()["fencing_token"] == 2
    # 13 lease requests, each one write on the loop, none through a blocking statement; the
    # refused claim rolled back and left its connection clean for the next.
    now_writes, now_blocking = _counted()
    assert (now_writes - writes, now_blocking - blocking) == (13, 0)
    assert db._loop_open == len(db._loop_free) == 1
    events = client.get(f"{P}/events", params={"since": 0}, headers=H).json()
    ops = [e["op"] for e in events if e["entity"] == "change"]
    assert ops.count("claim") == 2 and ops.count("release") == 1


def _delta(requirement: str) -> str:
    return f"## ADDED Requirements\n\n### Requirement: {requirement}\n{requirement} works.\n"


def _push_touching(client: TestClient, change: str, requirement: str | None) -> None:
    """A ready change whose delta touches auth/``requirement`` (None: no requirement)."""
    spec = ["auth", _delta(requirement)] if requirement else ["notes", "Notes only.\n"]
    r = client.post(
        f"{P}/changes/{change}/sync",
        json={"proposal": "# p\n", "tasks": "- [ ] 1.1 t\n", "specs": [spec]},
        headers=H,
    )
    assert r.status_code == 200, r.text


def test_allocations_run_on_the_loop_without_a_blocking_statement(
    pg_app: tuple[TestClient, Database],
) -> None:
    """Every path of allocate: the plain pick, the overlap-aware pass (free change, then
    only overlapping ones left, strict), a holder's own lease given back (renewed), filters,
    no work."""
    client, db = pg_app
    _push_touching(client, "001-01_login", "Login")
    _push_touching(client, "001-02_login-too", "Login")
    _push_touching(client, "002-01_logout", "Logout")
    _push_touching(client, "003-01_plain", None)
    alloc = f"{P}/allocate"
    warm_up = {"holder": "warm-up", "changes": ["003-01_plain"]}
    assert client.post(alloc, json=warm_up, headers=H).json()["claim"] is not None
    r = client.post(f"{P}/changes/003-01_plain/release", json={"holder": "warm-up"}, headers=H)
    assert r.json()["released"] is True
    writes, blocking = _counted()

    def allocate(holder: str, **body: Any) -> Any:
        r = client.post(alloc, json={"holder": holder, **body}, headers=H)
        assert r.status_code == 200, r.text
        return r.json()["claim"]

    assert allocate("a")["change_id"] == "001-01_login"
    assert allocate("a")["change_id"] == "001-01_login"  # its own, renewed
    assert allocate("b")["change_id"] == "002-01_logout"  # free of a's requirement
    assert allocate("c")["change_id"] == "003-01_plain"
    assert allocate("d", avoid_overlap="strict") is None  # only 001-02 left: overlaps a's
    overlapping = allocate("d")
    assert (overlapping["change_id"], overlapping["overlaps"]) == (
        "001-02_login-too",
        ["001-01_login"],
    )
    assert allocate("e", module="001") is None
    assert allocate("f", changes=["003-01_plain"]) is None
    # Eight requests, each one write on the loop, none through a blocking statement.
    now_writes, now_blocking = _counted()
    assert (now_writes - writes, now_blocking - blocking) == (8, 0)
    assert len(db._loop_free) == db._loop_open


def test_simultaneous_allocations_on_the_loop_each_get_their_own_change(
    pg_app: tuple[TestClient, Database],
) -> None:
    """30 allocations at once, interleaved on one event loop, 20 changes: 20 grants of 20
    distinct changes (fencing token 1 each), 10 answered no work."""
    client, db = pg_app
    for i in range(1, 21):
        _push_touching(client, f"001-{i:02d}_c{i}", None)
    start = threading.Barrier(30)
    answers: list[Any] = [None] * 30

    def allocate(i: int) -> None:
        start.wait()
        answers[i] = client.post(f"{P}/allocate", json={"holder": f"agent-{i}"}, headers=H)

    threads = [threading.Thread(target=allocate, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    claims = [a.json()["claim"] for a in answers]
    granted = [c for c in claims if c is not None]
    assert sorted(c["change_id"] for c in granted) == [f"001-{i:02d}_c{i}" for i in range(1, 21)]
    assert {c["fencing_token"] for c in granted} == {1}
    assert len(db._loop_free) == db._loop_open


def test_simultaneous_claims_on_the_loop_have_exactly_one_winner(
    pg_app: tuple[TestClient, Database],
) -> None:
    """30 claims of one change at once, interleaved on one event loop (each waits for the
    row lock without blocking the others): one 200, 29 409s, one fencing token."""
    client, db = pg_app
    _push(client, "001-01_a", "001-02_b")
    start = threading.Barrier(30)
    answers: list[Any] = [None] * 30

    def claim(i: int) -> None:
        start.wait()
        answers[i] = client.post(
            f"{P}/changes/001-01_a/claim", json={"holder": f"agent-{i}"}, headers=H
        )

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 29, [a.text for a in answers if a.status_code not in (200, 409)]
    (winner,) = [a.json() for a in answers if a.status_code == 200]
    assert winner["fencing_token"] == 1
    lease = client.get(f"{P}/changes/001-01_a/lease", headers=H).json()
    assert lease["holder"] == winner["holder"]
    assert 1 <= db._loop_open <= db._loop_max and len(db._loop_free) == db._loop_open


def test_a_lost_loop_connection_is_replaced(pg_app: tuple[TestClient, Database]) -> None:
    """PostgreSQL ends the loop connection's session: the request that meets it answers 503
    ``database_unavailable`` (nothing half-written), the connection is dropped, and the next
    request gets a new one."""
    client, db = pg_app
    _push(client, "001-01_a")
    assert client.post(f"{P}/changes/001-01_a/claim", json={"holder": "a"}, headers=H).is_success
    admin = create_engine(db.url)
    try:
        with admin.connect() as conn:
            (backend,) = [
                db._loop_free[0].connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
            ]
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": backend})
    finally:
        admin.dispose()
    r = client.post(f"{P}/changes/001-01_a/heartbeat", json={"holder": "a"}, headers=H)
    assert (r.status_code, r.json()["kind"]) == (503, "database_unavailable"), r.text
    assert db._loop_open == 0 and not db._loop_free
    r = client.post(f"{P}/changes/001-01_a/heartbeat", json={"holder": "a"}, headers=H)
    assert r.status_code == 200, r.text
    assert r.json()["fencing_token"] == 1  # the lease is the one the first claim made
    assert db._loop_open == 1


def test_a_first_write_to_a_new_project_runs_its_sqlalchemy_statements_on_the_loop_too(
    pg_app: tuple[TestClient, Database],
) -> None:
    """The first lease request of a project creates its row through SQLAlchemy (a blocking
    statement on the loop, counted), inside the same kind of transaction; committed."""
    client, db = pg_app
    _, blocking = _counted()
    other = "/api/v1/projects/acme/fresh-project"
    r = client.post(f"{other}/changes/001-01_a/claim", json={"holder": "a"}, headers=H)
    assert (r.status_code, r.json()["kind"]) == (404, "change_not_found")
    assert _counted()[1] > blocking
    assert db._loop_open == len(db._loop_free) == 1
    pg = db._loop_free[0].connection.dbapi_connection.pgconn  # type: ignore[union-attr]
    assert pg.transaction_status == 0  # idle: committed, nothing left open
    assert not db._loop_free[0].in_transaction()
    r = client.post(
        f"{other}/changes/001-01_a/sync", json={"proposal": "# p\n", "specs": []}, headers=H
    )
    assert r.status_code == 200, r.text
    r = client.post(f"{other}/changes/001-01_a/claim", json={"holder": "a"}, headers=H)
    assert r.status_code == 200 and r.json()["fencing_token"] == 1


_NEW_PROJECT = _raw.SQL(
    "INSERT INTO projects (org, repo, event_seq, created_us) VALUES (?, ?, 0, 0)", fast=True
)


def _relays(statements: Any) -> bool:
    """Whether these are the event relay's (its NOTIFY or LISTEN, on connections of its own,
    loom.store.relay), not a request's."""
    return any(isinstance(s, tuple) and s[0] in (relay._NOTIFY, relay._LISTEN) for s in statements)


def _trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the round trips made on the loop for requests (each call of _loopio.execute
    is one)."""
    trips: list[int] = []
    real = _loopio.execute

    async def counted(pg: Any, statements: Any) -> Any:
        if not _relays(statements):
            trips.append(len(statements))
        return await real(pg, statements)

    monkeypatch.setattr(_loopio, "execute", counted)
    return trips


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_held_back_writes_go_with_the_next_statement_or_the_commit(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write held back on the loop (execute_deferred) reaches PostgreSQL before anything
    run after it (a SQLAlchemy statement sees it), and the last one goes with the COMMIT."""
    trips = _trips(monkeypatch)
    mine = select(func.count()).select_from(projects).where(projects.c.org == "held")

    def work() -> int:
        with db.write() as conn:
            _raw.execute_deferred(conn, _NEW_PROJECT, ("held", "one"))
            _raw.execute_deferred(conn, _NEW_PROJECT, ("held", "two"))
            seen = int(conn.execute(mine).scalar_one())
            _raw.execute_deferred(conn, _NEW_PROJECT, ("held", "three"))
            return seen

    assert asyncio.run(db.run_write(work, on_loop=True)) == 2
    # BEGIN and the first two (each prepared first): one trip; the count through SQLAlchemy;
    # the third and the COMMIT: one trip.
    assert trips == [5, 2]
    with db.engine.connect() as conn:
        assert conn.execute(mine).scalar_one() == 3


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_held_back_write_that_fails_fails_the_request_and_nothing_is_written(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = _trips(monkeypatch)
    mine = select(func.count()).select_from(projects).where(projects.c.org == "dup")

    def work() -> None:
        with db.write() as conn:
            _raw.execute_deferred(conn, _NEW_PROJECT, ("dup", "same"))
            _raw.execute_deferred(conn, _NEW_PROJECT, ("dup", "same"))  # unique (org, repo)

    with pytest.raises(psycopg.errors.UniqueViolation):
        asyncio.run(db.run_write(work, on_loop=True))
    assert len(trips) == 2  # the writes with the COMMIT (refused), then the ROLLBACK
    with db.engine.connect() as conn:
        assert conn.execute(mine).scalar_one() == 0


def test_a_lease_request_on_the_loop_is_one_round_trip_once_its_lease_is_known(
    pg_app: tuple[TestClient, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease this process has not seen: the lock-and-read with BEGIN, then the write with
    COMMIT. One it has seen: the compare-and-set alone, its own transaction (no BEGIN, no
    COMMIT), one round trip."""
    client, _ = pg_app
    _push(client, "001-01_a", "001-02_b")
    for _ in range(2):  # the project known, every statement prepared
        for route in ("claim", "heartbeat", "release"):
            r = client.post(f"{P}/changes/001-01_a/{route}", json={"holder": "a"}, headers=H)
            assert r.status_code == 200, r.text
    trips = _trips(monkeypatch)
    for route in ("claim", "heartbeat", "release"):
        r = client.post(f"{P}/changes/001-01_a/{route}", json={"holder": "a"}, headers=H)
        assert r.status_code == 200, r.text
    assert trips == [1, 1, 1], trips
    del trips[:]
    r = client.post(f"{P}/changes/001-02_b/claim", json={"holder": "a"}, headers=H)
    assert r.status_code == 200, r.text
    assert len(trips) == 2, trips  # never seen: lock and read, then write


_DELTA = "## MODIFIED Requirements\n\n### Requirement: {}\nThe system SHALL do it.\n"


@pytest.mark.parametrize("avoid_overlap", ["prefer", "off"])
def test_an_allocation_on_the_loop_is_four_round_trips(
    pg_app: tuple[TestClient, Database], monkeypatch: pytest.MonkeyPatch, avoid_overlap: str
) -> None:
    """With overlaps considered (the project has requirement rows, a busy change overlaps):
    the holder's leases with the overlap check, the pick, the requirement locks with the
    busy changes read again, the write with COMMIT. Without: the holder's leases, the
    candidate (abandoned work, else the first open change: one statement), the lease read
    after the row lock, the write with COMMIT. Each pair sent together is one round trip."""
    client, _ = pg_app
    for i, requirement in enumerate(["Shared", "Shared", "Own", "Other"], start=1):
        r = client.post(
            f"{P}/changes/001-0{i}_c{i}/sync",
            json={
                "proposal": "# p\n",
                "tasks": "- [ ] 1.1 t\n",
                "specs": [["cap", _DELTA.format(requirement)]],
            },
            headers=H,
        )
        assert r.status_code == 200, r.text
    busy = client.post(f"{P}/allocate", json={"holder": "busy", "ttl_seconds": 600}, headers=H)
    assert busy.json()["claim"]["change_id"] == "001-01_c1"
    body = {"holder": "agent", "ttl_seconds": 60, "avoid_overlap": avoid_overlap}
    expected = "001-03_c3" if avoid_overlap == "prefer" else "001-02_c2"
    for _ in range(2):  # the second time every statement is prepared
        trips = _trips(monkeypatch)
        r = client.post(f"{P}/allocate", json=body, headers=H)
        claim = r.json()["claim"]
        assert claim["change_id"] == expected, r.text
        assert len(trips) == 4, trips
        monkeypatch.undo()
        r = client.post(
            f"{P}/changes/{expected}/release",
            json={"holder": "agent"},
            headers={**H, "X-Loom-Fencing-Token": str(claim["fencing_token"])},
        )
        assert r.status_code == 200, r.text


def _lease_row(url: str, change: str) -> tuple[Any, ...]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return tuple(
                conn.execute(
                    text(
                        "SELECT holder, fencing_token, expires_us FROM leases WHERE change_id = :c"
                    ),
                    {"c": change},
                ).one()
            )
    finally:
        engine.dispose()


def test_a_lease_seen_before_another_process_moved_it_decides_nothing(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two server processes on one database (two apps here): each remembers the leases it
    wrote. When the other one moved a lease on, this one's remembered state is stale; the
    compare-and-set finds the row changed, writes nothing, and the locked read decides, so
    a stale guess never grants, renews or releases what the row says it must not."""
    first = create_app(make_settings(pg_url, tmp_path / "one"))
    second = create_app(make_settings(pg_url, tmp_path / "two"))
    with (
        TestClient(first, raise_server_exceptions=False) as one,
        TestClient(second, raise_server_exceptions=False) as two,
    ):
        _push(one, "001-01_a")
        r = one.post(f"{P}/changes/001-01_a/claim", json={"holder": "a"}, headers=H)
        assert r.status_code == 200 and r.json()["fencing_token"] == 1, r.text
        # The other process: a releases there, b takes the change.
        r = two.post(f"{P}/changes/001-01_a/release", json={"holder": "a"}, headers=H)
        assert r.status_code == 200 and r.json()["released"] is True, r.text
        r = two.post(f"{P}/changes/001-01_a/claim", json={"holder": "b"}, headers=H)
        assert r.status_code == 200 and r.json()["fencing_token"] == 2, r.text
        held = _lease_row(pg_url, "001-01_a")
        trips = _trips(monkeypatch)
        # Process one still remembers a holding token 1: each answer must follow the row.
        r = one.post(f"{P}/changes/001-01_a/heartbeat", json={"holder": "a"}, headers=H)
        assert (r.status_code, r.json()["kind"]) == (409, "not_lease_holder"), r.text
        assert len(trips) == 3, trips  # the refused compare-and-set, then lock and read
        r = one.post(f"{P}/changes/001-01_a/claim", json={"holder": "a"}, headers=H)
        assert (r.status_code, r.json()["kind"]) == (409, "lease_conflict"), r.text
        r = one.post(f"{P}/changes/001-01_a/release", json={"holder": "a"}, headers=H)
        assert (r.status_code, r.json()["kind"]) == (409, "not_lease_holder"), r.text
        assert _lease_row(pg_url, "001-01_a") == held
        # Now one has read the row: b's requests through it are one round trip again.
        del trips[:]
        r = one.post(f"{P}/changes/001-01_a/heartbeat", json={"holder": "b"}, headers=H)
        assert r.status_code == 200 and r.json()["fencing_token"] == 2, r.text
        assert trips == [1], trips
        # b releases through two; a claims through one, which remembers b's lease: the
        # compare-and-set fails, the locked read grants a new token.
        r = two.post(f"{P}/changes/001-01_a/release", json={"holder": "b"}, headers=H)
        assert r.status_code == 200 and r.json()["released"] is True, r.text
        r = one.post(f"{P}/changes/001-01_a/claim", json={"holder": "a"}, headers=H)
        assert r.status_code == 200 and r.json()["fencing_token"] == 3, r.text
        # Archived through two: one's remembered lease must not let a renew.
        mine = {**H, "X-Loom-Holder": "a", "X-Loom-Fencing-Token": "3"}
        r = two.post(f"{P}/changes/001-01_a/archive?force=true", headers=mine)
        assert r.status_code == 200, r.text
        r = one.post(f"{P}/changes/001-01_a/heartbeat", json={"holder": "a"}, headers=H)
        assert (r.status_code, r.json()["kind"]) == (409, "archived"), r.text
        with create_engine(pg_url, poolclass=NullPool).connect() as conn:
            ops = (
                conn.execute(
                    text(
                        "SELECT op FROM events WHERE entity = 'change' AND entity_id = :c"
                        " AND op IN ('claim', 'release', 'renew', 'expire') ORDER BY id"
                    ),
                    {"c": "001-01_a"},
                )
                .scalars()
                .all()
            )
        # The archive released a's lease (its last event).
        assert ops == ["claim", "release", "claim", "release", "claim", "release"], ops


def test_a_started_server_opens_its_loop_connections_with_the_statements_prepared(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``warm_connections`` (what ``loom serve`` sets): right after the start, the
    connections lease requests use are open, ``pool_size`` of them, each with the lease and
    allocation statements prepared. The first claim, heartbeat, release and allocations
    then open no connection and send no PREPARE; without it the first burst after a start
    waited for connections to open (and, in ``bench/large.py``, missed its p99)."""
    # However busy the run's PostgreSQL is (the headroom rule has its own test).
    monkeypatch.setattr(Database, "_spare_connections", lambda self: 100)
    app = create_app(make_settings(pg_url, tmp_path), warm_connections=True)
    with TestClient(app, raise_server_exceptions=False) as client:
        db: Database = app.state.ctx.db
        wait_for(lambda: len(db._loop_free) == db._loop_max)
        assert db._loop_open == db._loop_max == 8
        hot = [
            store_leases._PG_LOCK_CHANGE_LEASE,
            store_leases._pg_save_with_events(False, 1),
            store_leases._pg_save_with_events(True, 1),
        ]
        for conn in db._loop_free:
            dbapi: Any = conn.connection.dbapi_connection
            names = _raw._prepared(dbapi)
            assert all(stmt.dollar in names for stmt in hot)
            held = dbapi.pgconn.exec_(b"SELECT name FROM pg_prepared_statements")
            assert {held.get_value(i, 0) for i in range(held.ntuples)} == set(names.values())
        _push_touching(client, "001-01_login", "Login")
        _push_touching(client, "002-01_plain", None)
        sent: list[list[str]] = []
        real = _loopio.execute

        async def recorded(pg: Any, statements: Any) -> Any:
            if not _relays(statements):
                sent.append([type(s).__name__ for s in statements])
            return await real(pg, statements)

        monkeypatch.setattr(_loopio, "execute", recorded)
        for route in ("claim", "heartbeat", "release"):
            r = client.post(f"{P}/changes/002-01_plain/{route}", json={"holder": "a"}, headers=H)
            assert r.status_code == 200, r.text
        # Two round trips for the first claim (a lease this process has not seen), one for
        # the heartbeat and the release (a compare-and-set on the lease the claim stored).
        assert len(sent) == 4, sent
        for holder in ("b", "c"):
            r = client.post(f"{P}/allocate", json={"holder": holder}, headers=H)
            assert r.status_code == 200 and r.json()["claim"] is not None, r.text
        assert len(sent) > 4
        assert not [trip for trip in sent if "Prepare" in trip], sent
        assert db._loop_open == len(db._loop_free) == 8  # nothing opened on demand


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_warm_up_leaves_postgresql_its_reserve_of_connections(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up opens no more than PostgreSQL can spare: it never takes the connections
    another process (or a second server on the database) needs."""
    with db.engine.connect() as conn:
        limit = int(conn.execute(text("SELECT current_setting('max_connections')")).scalar_one())
    # At least this test's own connection is in use, and the reserve is kept.
    assert 0 <= db._spare_connections() < limit - max(10, limit // 4)
    monkeypatch.setattr(db, "_spare_connections", lambda: 3)
    assert asyncio.run(db.warm_loop_connections()) == 3
    assert db._loop_open == len(db._loop_free) == 3
    monkeypatch.setattr(db, "_spare_connections", lambda: 0)
    assert asyncio.run(db.warm_loop_connections()) == 0
    assert db._loop_open == 3


def test_without_warm_up_loop_connections_open_on_demand(
    pg_app: tuple[TestClient, Database],
) -> None:
    """The default of ``create_app`` (tests, embedding): nothing is opened ahead of need."""
    client, db = pg_app
    assert client.get("/api/v1/health").status_code == 200
    assert db._loop_open == len(db._loop_free) == 0


@pytest.mark.slow
def test_loom_serve_on_postgresql_opens_its_connections_at_start(
    pg_url: str, tmp_path: Path
) -> None:
    """The real server does warm up: it says how many lease connections it opened (its pool
    size, 8 by default, or what PostgreSQL could spare), and they are in
    ``pg_stat_activity`` before any request. (The tests' servers run with a pool of 4
    unless told otherwise: this one is given the default.)"""
    server = start_server(tmp_path / "server", pg_url, extra_env={"LOOM_DB_POOL_SIZE": "8"})
    try:
        said = re.compile(r"loom\.store: opened (\d+) lease connection\(s\) ahead of need")
        wait_for(lambda: any(said.search(line) for line in server.log))
        opened = int(next(m for m in map(said.search, server.log) if m).group(1))
        assert 0 <= opened <= 8
        database = make_url(pg_url).database
        engine = create_engine(pg_url)
        query = text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = :db AND application_name LIKE 'loom:%'"
        )
        try:
            with engine.connect() as conn:
                sessions = int(conn.execute(query, {"db": database}).scalar_one())
        finally:
            engine.dispose()
        assert sessions >= opened
    finally:
        server.stop()


@pytest.mark.slow
def test_db_pool_size_bounds_a_servers_postgresql_connections(pg_url: str, tmp_path: Path) -> None:
    """``LOOM_DB_POOL_SIZE=3``: ``loom serve`` opens 3 lease connections at start (when
    PostgreSQL can spare them), and a burst of 24 simultaneous claims and pushes, which
    queue for those connections, never takes the process past 3 x 3 + 6 sessions."""
    server = start_server(tmp_path / "server", pg_url, extra_env={"LOOM_DB_POOL_SIZE": "3"})
    database = make_url(pg_url).database
    engine = create_engine(pg_url, poolclass=NullPool)
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :db"
        " AND application_name LIKE 'loom:%'"
    )
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with engine.connect() as conn:
                peak[0] = max(peak[0], int(conn.execute(query, {"db": database}).scalar_one()))
            time.sleep(0.005)

    try:
        said = re.compile(r"loom\.store: opened (\d+) lease connection\(s\) ahead of need")
        wait_for(lambda: any(said.search(line) for line in server.log))
        opened = int(next(m for m in map(said.search, server.log) if m).group(1))
        assert 0 <= opened <= 3
        with httpx.Client(base_url=server.url, headers=H, timeout=30) as client:
            for i in range(12):
                r = client.post(
                    f"{P}/changes/{i + 1:03d}-01_c/sync",
                    json={"proposal": "# p\n", "tasks": "- [ ] 1.1 t\n", "specs": []},
                )
                assert r.status_code == 200, r.text
            sampler = threading.Thread(target=sample)
            sampler.start()
            barrier = threading.Barrier(24)

            def one(i: int) -> int:
                barrier.wait()
                if i < 12:
                    path, body = f"{P}/changes/{i + 1:03d}-01_c/claim", {"holder": f"h{i}"}
                else:
                    path = f"{P}/changes/{i - 11:03d}-02_d/sync"
                    body = {"proposal": "# q\n", "tasks": "- [ ] 1.1 t\n", "specs": []}
                return client.post(path, json=body).status_code

            with ThreadPoolExecutor(24) as pool:
                codes = list(pool.map(one, range(24)))
            stop.set()
            sampler.join()
        assert codes == [200] * 24
        assert 0 < peak[0] <= 3 * 3 + 6, peak[0]
    finally:
        stop.set()
        engine.dispose()
        server.stop()


def _commit_alone_project(db: Database, org: str, repo: str) -> Any:
    """A request whose transaction is one commit_alone statement (a new project row)."""

    def work() -> list[tuple[Any, ...]]:
        with db.write() as conn:
            return _raw.commit_alone(conn, _NEW_PROJECT, (org, repo), order=(org, repo))

    return db.run_write(work, on_loop=True)


def _open_loop_connections(db: Database, count: int) -> None:
    """Open loop connections (statements prepared) until the pool holds ``count``: then
    requests started together reach their statements in the same turn of the loop."""
    while db._loop_open < count:
        db._loop_free.append(db._warm_connection())
        db._loop_open += 1


def _projects_of(db: Database, org: str) -> list[str]:
    with db.engine.connect() as conn:
        rows = conn.execute(select(projects.c.repo).where(projects.c.org == org))
        return sorted(str(r[0]) for r in rows)


def _group_sizes() -> tuple[float, float, float]:
    """(commit groups, statements in them, groups split after a failure) in this process."""
    count = REGISTRY.get_sample_value("loom_db_commit_group_size_count") or 0.0
    total = REGISTRY.get_sample_value("loom_db_commit_group_size_sum") or 0.0
    split = REGISTRY.get_sample_value("loom_db_commit_groups_split_total") or 0.0
    return count, total, split


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_statements_committed_alone_in_one_turn_share_round_trips_and_commits(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seven requests reaching commit_alone in the same turn of the loop: the first four go
    as soon as they are gathered (GROUP_MAX), the other three when the turn ends: two round
    trips, each one implicit transaction; each request gets its own answer, all seven are
    committed."""
    assert _raw.GROUP_MAX == 4
    _open_loop_connections(db, 7)  # no request waits to connect
    trips = _trips(monkeypatch)
    before = _group_sizes()

    async def seven() -> list[Any]:
        return list(
            await asyncio.gather(
                *(_commit_alone_project(db, "group", f"r{i}") for i in (3, 1, 6, 4, 0, 5, 2))
            )
        )

    assert asyncio.run(seven()) == [[]] * 7
    assert trips == [4, 3], trips  # every statement prepared on the warm connections
    after = _group_sizes()
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (2, 7, 0)
    assert _projects_of(db, "group") == [f"r{i}" for i in range(7)]
    assert len(db._loop_free) == db._loop_open


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_failing_statement_splits_its_group_and_each_other_one_is_committed_alone(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One of three statements of a group fails (a duplicate project): the group's
    transaction rolls back whole, then each statement is sent again alone: the two others
    are committed, the failing one raises its own error, exactly as if sent apart."""
    _open_loop_connections(db, 3)  # no request waits to connect
    asyncio.run(_commit_alone_project(db, "split", "taken"))
    trips = _trips(monkeypatch)
    before = _group_sizes()

    async def three() -> list[Any]:
        return list(
            await asyncio.gather(
                _commit_alone_project(db, "split", "a"),
                _commit_alone_project(db, "split", "taken"),
                _commit_alone_project(db, "split", "b"),
                return_exceptions=True,
            )
        )

    first, duplicate, last = asyncio.run(three())
    assert first == [] and last == []
    assert isinstance(duplicate, psycopg.errors.UniqueViolation)
    assert len(trips) == 4, trips  # the group, then the three one by one
    assert _group_sizes()[2] - before[2] == 1
    assert _projects_of(db, "split") == ["a", "b", "taken"]
    assert len(db._loop_free) == db._loop_open


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_group_whose_first_request_is_cancelled_still_answers_the_others(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The group runs on its first member's connection. That request cancelled while the
    group is in flight: the other members still get their answers, and the connection goes
    back to the pool (or is dropped) only once the group is done, never under it."""
    _open_loop_connections(db, 3)  # no request waits to connect
    real = _loopio.execute
    sent = asyncio.Event()
    release = asyncio.Event()

    async def held(pg: Any, statements: Any) -> Any:
        if _relays(statements):
            return await real(pg, statements)
        sent.set()
        await release.wait()
        return await real(pg, statements)

    monkeypatch.setattr(_loopio, "execute", held)

    async def scenario() -> tuple[list[Any], bool]:
        owner = asyncio.ensure_future(_commit_alone_project(db, "cancel", "owner"))
        others = [
            asyncio.ensure_future(_commit_alone_project(db, "cancel", f"other-{i}"))
            for i in range(2)
        ]
        await sent.wait()
        owner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await owner
        in_use_during_group = len(db._loop_free) < db._loop_open
        release.set()
        return list(await asyncio.gather(*others)), in_use_during_group

    answers, in_use_during_group = asyncio.run(scenario())
    assert answers == [[], []]
    assert in_use_during_group  # the owner's connection was not given back under the group
    assert _projects_of(db, "cancel") == ["other-0", "other-1", "owner"]
    assert len(db._loop_free) == db._loop_open


def test_simultaneous_claims_of_remembered_leases_are_each_decided_once(
    pg_app: tuple[TestClient, Database],
) -> None:
    """Leases this process has seen are claimed as compare-and-sets, which requests arriving
    together commit as a group: 8 changes, each claimed at once by 3 agents (24 requests
    interleaved on one loop): per change exactly one 200 and two 409s, each winner's fencing
    token one more than the last, and the stored lease is the winner's."""
    client, db = pg_app
    changes = [f"001-{i:02d}_g{i}" for i in range(1, 9)]
    _push(client, *changes)
    for change in changes:  # seen, released: the next claims are compare-and-sets
        for route in ("claim", "release"):
            r = client.post(f"{P}/changes/{change}/{route}", json={"holder": "warm"}, headers=H)
            assert r.status_code == 200, r.text
    start = threading.Barrier(24)
    answers: dict[tuple[str, str], Any] = {}

    def claim(change: str, holder: str) -> None:
        start.wait()
        answers[change, holder] = client.post(
            f"{P}/changes/{change}/claim", json={"holder": holder}, headers=H
        )

    with ThreadPoolExecutor(24) as pool:
        for change in changes:
            for holder in ("x", "y", "z"):
                pool.submit(claim, change, holder)
    assert len(answers) == 24
    for change in changes:
        mine = {h: answers[change, h] for h in ("x", "y", "z")}
        codes = sorted(a.status_code for a in mine.values())
        assert codes == [200, 409, 409], {h: a.text for h, a in mine.items()}
        (winner,) = [h for h, a in mine.items() if a.status_code == 200]
        assert mine[winner].json()["fencing_token"] == 2
        lease = client.get(f"{P}/changes/{change}/lease", headers=H).json()
        assert (lease["holder"], lease["fencing_token"]) == (winner, 2)
    assert len(db._loop_free) == db._loop_open
