"""Overlap-aware allocation raced for real: 10 agents, a real ``loom serve``, SQLite and
PostgreSQL. 30 ready changes; 10 pairs of them touch the same requirement.

The database has to decide: two agents allocating at the same instant must never end up
holding both changes of a pair while a change that overlaps nothing held is still there.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LiveServer, start_server

from ._helpers import ADMIN_H, TASKS, P, with_holder
from .test_races import _run_threads

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(60.0)
AGENTS = 10


def _client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=ADMIN_H, timeout=TIMEOUT)


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[LiveServer]:
    live = start_server(tmp_path / "server", database_url)
    yield live
    live.stop()
    if live.process.stderr is not None:
        live.process.stderr.close()


def _delta(requirement: str) -> str:
    return f"## ADDED Requirements\n\n### Requirement: {requirement}\nIt SHALL work.\n"


def _seed(server: LiveServer) -> dict[str, str | None]:
    """30 changes in canonical order: pairs (01, 02), (03, 04) … (19, 20) share a
    requirement, 21 … 30 touch one of their own. Returns each change's partner (or None)."""
    ids = [f"001-{n:02d}_c{n}" for n in range(1, 31)]
    partner: dict[str, str | None] = {}
    items = []
    for n, cid in enumerate(ids, start=1):
        if n <= 20:
            pair = (n - 1) // 2
            requirement = f"Pair {pair}"
            partner[cid] = ids[n] if n % 2 else ids[n - 2]
        else:
            requirement, partner[cid] = f"Own {n}", None
        items.append(
            {
                "id": cid,
                "proposal": f"# {cid}\n",
                "tasks": TASKS,
                "specs": [["shared-cap", _delta(requirement)]],
            }
        )
    with _client(server) as admin:
        r = admin.post(f"{P}/import", json={"mode": "create-only", "changes": items})
        assert r.status_code == 200, r.text
        pairs = admin.get(f"{P}/overlaps", params={"strength": "strong"}).json()["overlaps"]
        assert len(pairs) == 10  # the index was built by the import
    return partner


def test_simultaneous_allocations_never_hold_both_changes_of_a_pair(server: LiveServer) -> None:
    partner = _seed(server)
    barrier = threading.Barrier(AGENTS)
    claims: dict[int, dict[str, Any]] = {}

    def agent(i: int) -> None:
        with _client(server) as c:
            c.get("/api/v1/health").raise_for_status()  # connection open before the race
            barrier.wait(timeout=60)
            r = c.post(f"{P}/allocate", json={"holder": f"agent-{i}"})
            assert r.status_code == 200, r.text
            claims[i] = r.json()["claim"]

    assert _run_threads(AGENTS, agent) == []
    held = [claims[i]["change_id"] for i in range(AGENTS)]
    assert len(set(held)) == AGENTS
    # 20 changes overlap nothing held at any point of this race (10 singles + one of each
    # pair), more than the 10 agents: so no agent may have been given an overlapping one.
    both = [c for c in held if partner[c] in held]
    assert both == [], both
    assert all("overlaps" not in claims[i] for i in range(AGENTS))
    with _client(server) as admin:
        leases = {x["change_id"] for x in admin.get(f"{P}/leases").json()}
        assert leases == set(held)


def test_strict_agents_working_through_the_pool_never_overlap(server: LiveServer) -> None:
    """Each agent allocates (strict), completes the change's task, releases, and goes on
    until every change is complete. Replaying the server's log: no change was allocated
    while its partner was held, and every change was allocated exactly once."""
    partner = _seed(server)
    allocated: list[str] = []

    def agent(i: int) -> None:
        name = f"agent-{i}"
        with _client(server) as c:
            while True:
                r = c.post(f"{P}/allocate", json={"holder": name, "avoid_overlap": "strict"})
                assert r.status_code == 200, r.text
                claim = r.json()["claim"]
                if claim is None:
                    left = c.get(f"{P}/changes", params={"status": "ready,in-progress"}).json()
                    if not left:
                        return
                    continue  # only partners of held changes are left: ask again
                cid, token = claim["change_id"], claim["fencing_token"]
                assert "overlaps" not in claim
                allocated.append(cid)
                done = c.post(
                    f"{P}/changes/{cid}/tasks/1.1/complete", headers=with_holder(name, token)
                )
                assert done.status_code == 200, done.text
                rel = c.post(f"{P}/changes/{cid}/release", json={"holder": name})
                assert rel.status_code == 200 and rel.json()["released"], rel.text

    assert _run_threads(AGENTS, agent) == []
    assert Counter(allocated) == Counter(list(partner))  # every change exactly once
    with _client(server) as admin:
        events = admin.get(f"{P}/events").json()
    held: dict[str, str] = {}
    checked = 0
    for e in events:
        if e["op"] == "allocate":
            cid = e["entity_id"]
            other = partner[cid]
            assert other is None or other not in held, (cid, other, held)
            held[cid] = e["meta"]["holder"]
            checked += 1
        elif e["op"] == "release":
            held.pop(e["entity_id"], None)
    assert checked == 30
    assert held == {}
