"""Races against a real ``loom serve`` (uvicorn, own process) on SQLite and PostgreSQL: the
database decides who wins (STYLE.md §3), never a lucky interleaving."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from conftest import ADMIN, BACKENDS, LiveServer, _pg_database, _reset_pg, start_server

# The real-process races share one xdist worker (`make test` runs -n 2 --dist loadgroup),
# so they do not compete with each other for the two cores.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("races")]


@pytest.fixture(scope="module", params=BACKENDS)
def live_server_on(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One real server per backend for the whole module (each test uses its own ids), so
    the races do not pay a server start each."""
    data_dir = tmp_path_factory.mktemp("races")
    url = None
    if request.param == "postgresql":
        url = _pg_database()
        _reset_pg(url)
    server = start_server(data_dir, url)
    yield server
    server.stop()


N = 20
PATH = "/api/v1/projects/acme/widgets"
H = {"Authorization": f"Bearer {ADMIN}"}
EVENT = {
    "v": 1,
    "ts": "2026-02-28T10:00:00.000Z",
    "entity": "task",
    "op": "create",
    "actor": "cli",
    "by": "@race",
    "ctx": {"session_id": "race"},
}


def _together(n: int, fn: Callable[[httpx.Client, int], httpx.Response], url: str) -> list[Any]:
    """Run ``fn`` in ``n`` threads, each with its own client, released at the same instant."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        with httpx.Client(base_url=url, headers=H, timeout=60) as client:
            client.get("/api/v1/health")  # connection established before the barrier
            barrier.wait()
            try:
                results[i] = fn(client, i)
            except Exception as exc:  # reported, not swallowed
                results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def _statuses(results: list[Any]) -> Counter[Any]:
    return Counter(
        (r.status_code, r.json().get("kind")) if isinstance(r, httpx.Response) else repr(r)
        for r in results
    )


def _push(client: httpx.Client, cid: str, proposal: str, revision: str) -> httpx.Response:
    body = {"proposal": proposal, "specs": [["cap", f"spec of {proposal}"]], "revision": revision}
    return client.post(f"{PATH}/changes/{cid}/sync", json=body)


def test_concurrent_pushes_from_one_base_revision(live_server_on: LiveServer) -> None:
    url = live_server_on.url
    with httpx.Client(base_url=url, headers=H) as admin:
        assert _push(admin, "001-01_race", "base", "").status_code == 200

    results = _together(N, lambda c, i: _push(c, "001-01_race", f"writer {i}", "1"), url)
    counts = _statuses(results)
    assert counts == {(200, None): 1, (409, "revision_conflict"): N - 1}, counts
    winner = next(i for i, r in enumerate(results) if r.status_code == 200)
    assert results[winner].json() == {"change_id": "001-01_race", "new_revision": "2"}
    for r in results:
        if r.status_code == 409:
            assert r.json()["server_revision"] == "2"
            assert r.json()["local_revision"] == "1"
    with httpx.Client(base_url=url, headers=H) as admin:
        final = admin.get(f"{PATH}/changes/001-01_race/sync").json()
    assert final["revision"] == "2"
    assert final["proposal"] == f"writer {winner}"
    assert final["specs"] == [["cap", f"spec of writer {winner}"]]


def test_concurrent_creates_of_one_change(live_server_on: LiveServer) -> None:
    """Everyone creates the same new change at once: one wins, the others see the change
    existing (428, as if they came second), never a 500 from a duplicate key."""
    results = _together(
        N, lambda c, i: _push(c, "001-02_new", f"creator {i}", ""), live_server_on.url
    )
    counts = _statuses(results)
    assert counts == {(200, None): 1, (428, "precondition_required"): N - 1}, counts
    winner = next(i for i, r in enumerate(results) if r.status_code == 200)
    with httpx.Client(base_url=live_server_on.url, headers=H) as admin:
        final = admin.get(f"{PATH}/changes/001-02_new/sync").json()
        events = admin.get(f"{PATH}/events?op=create&entity=change").json()
    assert (final["revision"], final["proposal"]) == ("1", f"creator {winner}")
    assert [e["entity_id"] for e in events].count("001-02_new") == 1


def test_concurrent_identical_event_batches(live_server_on: LiveServer) -> None:
    batch = [{**EVENT, "entity_id": f"{i}"} for i in range(50)]
    body = {"events": batch, "idempotency_key": "one-batch"}
    results = _together(N, lambda c, i: c.post(f"{PATH}/events", json=body), live_server_on.url)
    bodies = Counter(
        (r.status_code, tuple(sorted(r.json().items())))
        if isinstance(r, httpx.Response)
        else repr(r)
        for r in results
    )
    assert bodies == {
        (200, (("accepted", 50), ("duplicates", 0))): 1,
        (200, (("accepted", 0), ("duplicates", 50))): N - 1,
    }, bodies
    with httpx.Client(base_url=live_server_on.url, headers=H) as admin:
        stored = [e for e in admin.get(f"{PATH}/events").json() if e["by"] == "@race"]
    assert [e["entity_id"] for e in stored] == [str(i) for i in range(50)]
    first = stored[0]["seq"]
    assert [e["seq"] for e in stored] == list(range(first, first + 50))


def test_concurrent_idempotent_requests_run_once(live_server_on: LiveServer) -> None:
    with httpx.Client(base_url=live_server_on.url, headers=H) as admin:
        assert _push(admin, "001-03_idem", "base", "").status_code == 200

    def call(client: httpx.Client, _i: int) -> httpx.Response:
        body = {"proposal": "once", "specs": [], "revision": "1"}
        return client.post(
            f"{PATH}/changes/001-03_idem/sync", json=body, headers={"Idempotency-Key": "same-key"}
        )

    results = _together(N, call, live_server_on.url)
    kinds = Counter(
        (r.status_code, r.headers.get("idempotent-replayed"), r.json().get("kind")) for r in results
    )
    # Exactly one execution; the others replay it or are told it is still running.
    assert kinds[(200, None, None)] == 1, kinds
    assert set(kinds) <= {
        (200, None, None),
        (200, "true", None),
        (409, None, "idempotency_in_flight"),
    }, kinds
    with httpx.Client(base_url=live_server_on.url, headers=H) as admin:
        assert admin.get(f"{PATH}/changes/001-03_idem/sync").json()["revision"] == "2"


def test_concurrent_archives_into_one_spec(live_server_on: LiveServer) -> None:
    """Archives of different changes that add to the same capability all land (no lost
    update between two merges of one spec)."""
    n = 10
    with httpx.Client(base_url=live_server_on.url, headers=H) as admin:
        base = "# shared\n\n## Purpose\nShared.\n\n## Requirements\n\n### Requirement: Base\nB.\n"
        assert admin.put(f"{PATH}/specs/shared", json={"markdown": base}).status_code == 200
        for i in range(n):
            delta = f"## ADDED Requirements\n\n### Requirement: R{i}\nAdded by {i}.\n"
            body = {"proposal": "p", "specs": [["shared", delta]], "revision": ""}
            assert (
                admin.post(f"{PATH}/changes/002-{i + 1:02d}_a/sync", json=body).status_code == 200
            )

    results = _together(
        n,
        lambda c, i: c.post(f"{PATH}/changes/002-{i + 1:02d}_a/archive?force=true"),
        live_server_on.url,
    )
    assert _statuses(results) == {(200, None): n}
    with httpx.Client(base_url=live_server_on.url, headers=H) as admin:
        spec = admin.get(f"{PATH}/specs/shared").json()["markdown"]
    missing = [i for i in range(n) if f"### Requirement: R{i}\n" not in spec]
    assert missing == [], spec
    assert "### Requirement: Base\n" in spec
