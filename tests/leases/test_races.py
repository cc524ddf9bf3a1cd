"""Real races against real ``loom serve`` processes, on SQLite and PostgreSQL.

Each client thread has its own ``httpx.Client`` (its own connection); a barrier releases them
together. The database must decide every race: one winner per claim, every change allocated
exactly once, and a fenced-off zombie changes nothing.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LiveServer, start_server

from ._helpers import ADMIN_H, TASKS, P, bundle, import_changes, with_holder

# The real-process races share one xdist worker (`make test` runs -n 2 --dist loadgroup),
# so they do not compete with each other for the two cores.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("races")]

TIMEOUT = httpx.Timeout(60.0)


def _client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=ADMIN_H, timeout=TIMEOUT)


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    # The racers warm their connections, then wait at a barrier: on a starved machine that
    # can outlast the 5 s keep-alive and 10 s header timeouts, and a connection closed as
    # the allocate goes out is a reset (seen once, in a run three times slower than usual).
    # The race is about allocation, not idle connections.
    live = start_server(
        tmp_path / "server", database_url, "--keep-alive-timeout", "120", "--header-timeout", "120"
    )
    yield live
    live.stop()


def _run_threads(n: int, target: Any) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    return errors


# --------------------------------------------------------------------------- one change, 50 claims


@pytest.mark.parametrize("seen", [False, True], ids=["new", "seen"])
def test_fifty_simultaneous_claims_have_exactly_one_winner(server: LiveServer, seen: bool) -> None:
    """``seen``: the change was claimed and released before, so the server remembers its
    lease, and on PostgreSQL each of the fifty claims first decides on that remembered
    state and tries a compare-and-set (every one of them would grant): exactly one may
    land, the others must find the row moved on and lose on the locked read."""
    change = "001-01_contested"
    first: list[str] = []
    with _client(server) as admin:
        import_changes(admin, [change])
        if seen:
            r = admin.post(f"{P}/changes/{change}/claim", json={"holder": "agent-first"})
            assert r.status_code == 200, r.text
            r = admin.post(f"{P}/changes/{change}/release", json={"holder": "agent-first"})
            assert r.status_code == 200 and r.json()["released"] is True, r.text
            first = ["agent-first"]
    n = 50
    barrier = threading.Barrier(n)
    results: dict[int, tuple[int, dict[str, Any]]] = {}

    def claim(i: int) -> None:
        with _client(server) as c:
            c.get("/api/v1/health").raise_for_status()  # connection open before the race
            barrier.wait(timeout=60)
            r = c.post(f"{P}/changes/{change}/claim", json={"holder": f"agent-{i}"})
            results[i] = (r.status_code, r.json())

    assert _run_threads(n, claim) == []
    statuses = Counter(s for s, _ in results.values())
    assert statuses == {200: 1, 409: n - 1}, statuses
    winner = next(body for s, body in results.values() if s == 200)
    assert winner["fencing_token"] == len(first) + 1
    for status, body in results.values():
        if status == 409:
            assert body["kind"] == "lease_conflict"
            assert body["holder"] == winner["holder"]
            assert body["expires_at"] == winner["expires_at"]
    with _client(server) as admin:
        assert admin.get(f"{P}/changes/{change}/lease").json() == winner
        claims = admin.get(f"{P}/events", params={"op": "claim"}).json()
        assert [e["meta"]["holder"] for e in claims] == [*first, winner["holder"]]


# --------------------------------------------------------------------------- allocation


def _agent_loop(server: LiveServer, name: str, log: list[tuple[str, str, int]]) -> None:
    """Allocate, finish the change's only task (it leaves the pool), release; until no work."""
    with _client(server) as c:
        while True:
            r = c.post(f"{P}/allocate", json={"holder": name})
            assert r.status_code == 200, r.text
            claim = r.json()["claim"]
            if claim is None:
                return
            cid, token = claim["change_id"], claim["fencing_token"]
            assert claim["holder"] == name
            log.append((name, cid, token))
            done = c.post(f"{P}/changes/{cid}/tasks/1.1/complete", headers=with_holder(name, token))
            assert done.status_code == 200, done.text
            rel = c.post(f"{P}/changes/{cid}/release", json={"holder": name})
            assert rel.status_code == 200, rel.text
            assert rel.json()["released"] is True


def _check_allocation(admin: httpx.Client, ids: list[str], log: list[tuple[str, str, int]]) -> None:
    per_change = Counter(cid for _, cid, _ in log)
    assert set(per_change) == set(ids), "some change was never allocated"
    assert max(per_change.values()) == 1, [c for c, n in per_change.items() if n > 1][:5]
    assert all(token == 1 for _, _, token in log)
    # The server's own record, in commit order: each agent alternates allocate / release,
    # so no agent ever held two changes at once.
    events = admin.get(f"{P}/events").json()
    allocations = [e for e in events if e["op"] == "allocate"]
    assert len(allocations) == len(ids)
    per_holder: dict[str, list[str]] = defaultdict(list)
    for e in events:
        if e["op"] in ("allocate", "release"):
            per_holder[e["meta"]["holder"]].append(e["op"])
    for holder, ops in per_holder.items():
        assert ops == ["allocate", "release"] * (len(ops) // 2), holder
    assert admin.get(f"{P}/leases").json() == []
    summaries = admin.get(f"{P}/changes", params={"limit": 1000}).json()
    assert {s["work_status"] for s in summaries} == {"complete"}
    assert len(summaries) == len(ids)


def _seed(server: LiveServer, count: int) -> list[str]:
    ids = [f"{1 + i // 100:03d}-{i % 100 + 1:02d}_work-{i}" for i in range(count)]
    with _client(server) as admin:
        for start in range(0, count, 250):
            import_changes(admin, ids[start : start + 250], tasks=TASKS)
    return ids


def test_thirty_two_agents_allocate_every_change_exactly_once(server: LiveServer) -> None:
    ids = _seed(server, 500)
    log: list[tuple[str, str, int]] = []
    assert _run_threads(32, lambda i: _agent_loop(server, f"agent-{i}", log)) == []
    with _client(server) as admin:
        _check_allocation(admin, ids, log)


def test_forty_agents_racing_for_ten_ready_changes_get_exactly_ten(server: LiveServer) -> None:
    """40 simultaneous allocations, 10 ready changes: exactly 10 granted, each change once.

    "No work" must mean no eligible change was free at that moment; an allocator that locked
    several candidates and leased one made the others invisible to concurrent callers, which
    then answered ``{"claim": null}`` while work remained (8-9 of 10 granted on PostgreSQL).
    """
    ids = _seed(server, 10)
    n = 40
    for attempt in range(3):  # every run, not once in a while
        barrier = threading.Barrier(n)
        results: dict[int, dict[str, Any]] = {}

        def allocate(i: int, attempt: int = attempt, barrier: threading.Barrier = barrier) -> None:
            with _client(server) as c:
                c.get("/api/v1/health").raise_for_status()
                barrier.wait(timeout=60)
                r = c.post(f"{P}/allocate", json={"holder": f"agent-{attempt}-{i}"})
                assert r.status_code == 200, r.text
                results[i] = r.json()

        assert _run_threads(n, allocate) == []
        granted = [body["claim"] for body in results.values() if body["claim"] is not None]
        assert len(results) == n
        assert sorted(g["change_id"] for g in granted) == sorted(ids), attempt
        with _client(server) as admin:
            for cid in ids:
                released = admin.post(
                    f"{P}/changes/{cid}/release", json={"holder": "ops"}, params={"force": "true"}
                )
                assert released.json()["released"] is True


@pytest.mark.postgres
def test_two_servers_on_one_postgresql_allocate_every_change_exactly_once(
    tmp_path: Path, pg_url: str
) -> None:
    first = start_server(tmp_path / "one", pg_url)
    second = start_server(tmp_path / "two", pg_url)
    try:
        ids = _seed(first, 500)
        log: list[tuple[str, str, int]] = []
        servers = [first, second]
        errors = _run_threads(32, lambda i: _agent_loop(servers[i % 2], f"agent-{i}", log))
        assert errors == []
        by_server = Counter(int(name.split("-")[1]) % 2 for name, _, _ in log)
        assert by_server[0] > 0 and by_server[1] > 0, by_server
        with _client(second) as admin:
            _check_allocation(admin, ids, log)
    finally:
        first.stop()
        second.stop()


# --------------------------------------------------------------------------- zombie


def test_zombie_writer_is_fenced_off_after_takeover(server: LiveServer) -> None:
    """A keeps pushing with its old token while an admin takes its lease away and B claims.

    No write of A may land after B's claim; once A is refused, the bundle is exactly what B
    saw when it took over.
    """
    change = "001-01_zombie"
    with _client(server) as admin:
        import_changes(admin, [change])
        a = admin.post(f"{P}/changes/{change}/claim", json={"holder": "a"}).json()
    stop = threading.Event()
    refusals: list[dict[str, Any]] = []
    a_revisions: list[int] = []
    b_took_over = threading.Event()
    landed_after_takeover: list[int] = []

    def zombie(_: int) -> None:
        with _client(server) as c:
            n = 0
            while not stop.is_set():
                current = c.get(f"{P}/changes/{change}/sync").json()["revision"]
                body = bundle(change, revision=current)
                body["proposal"] = f"# zombie write {n}\n"
                n += 1
                seen_takeover = b_took_over.is_set()
                r = c.post(
                    f"{P}/changes/{change}/sync",
                    json=body,
                    headers=with_holder("a", a["fencing_token"]),
                )
                if r.status_code == 200:
                    a_revisions.append(int(r.json()["new_revision"]))
                    if seen_takeover:
                        landed_after_takeover.append(int(r.json()["new_revision"]))
                elif r.status_code == 409 and r.json()["kind"] == "revision_conflict":
                    continue
                else:
                    refusals.append(r.json())
                    return

    thread = threading.Thread(target=zombie, args=(0,))
    thread.start()
    try:
        with _client(server) as admin:
            while len(a_revisions) < 3 and thread.is_alive():
                admin.get("/api/v1/health")
            forced = admin.post(
                f"{P}/changes/{change}/release", json={"holder": "ops"}, params={"force": "true"}
            )
            assert forced.json()["released"] is True
            b = admin.post(f"{P}/changes/{change}/claim", json={"holder": "b"}).json()
            b_took_over.set()
            assert b["fencing_token"] == a["fencing_token"] + 1
            thread.join(timeout=60)
            seen_by_b = admin.get(f"{P}/changes/{change}/sync").json()
    finally:
        stop.set()
        thread.join(timeout=60)
    assert landed_after_takeover == []
    assert len(refusals) == 1
    assert refusals[0]["kind"] == "stale_fencing_token"
    with _client(server) as admin:
        before = admin.get(f"{P}/changes/{change}/sync").json()
        assert before == seen_by_b
        # every kind of write from the zombie is refused and changes nothing
        zombie_headers = with_holder("a", a["fencing_token"])
        stale_push = bundle(change, revision=before["revision"])
        stale_push["proposal"] = "# late zombie\n"
        for method, path, body in [
            ("POST", f"{P}/changes/{change}/sync", stale_push),
            ("POST", f"{P}/changes/{change}/tasks/1.1/complete", None),
            ("POST", f"{P}/changes/{change}/archive?force=true", None),
        ]:
            r = admin.request(method, path, json=body, headers=zombie_headers)
            assert r.status_code == 409
            assert r.json()["kind"] == "stale_fencing_token"
            name_only = admin.request(method, path, json=body, headers=with_holder("a"))
            assert name_only.status_code == 409
            assert name_only.json()["kind"] == "lease_conflict"
            assert name_only.json()["holder"] == "b"
        hb = admin.post(f"{P}/changes/{change}/heartbeat", json={"holder": "a"})
        assert hb.status_code == 409
        assert admin.get(f"{P}/changes/{change}/sync").json() == before
        assert admin.get(f"{P}/changes/{change}/lease").json()["holder"] == "b"
        ok = admin.post(
            f"{P}/changes/{change}/sync",
            json=stale_push,
            headers=with_holder("b", b["fencing_token"]),
        )
        assert ok.status_code == 200
