"""Crash consistency: a real server killed with SIGKILL in the middle of pushes and event
ingests, restarted on the same database. Every transaction is all or nothing."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ADMIN, start_server

# The real-process races share one xdist worker (`make test` runs -n 2 --dist loadgroup),
# so they do not compete with each other for the two cores.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("races")]

PATH = "/api/v1/projects/acme/widgets"
H = {"Authorization": f"Bearer {ADMIN}"}
PUSHERS = 4
INGESTERS = 2
SPECS = 6
BATCH = 200


def _bundle(change_id: str, n: int) -> dict[str, Any]:
    """Bundle number ``n`` of a change: every artifact carries the tag, so a mix of two
    bundles is detectable."""
    tag = f"{change_id}#{n}"
    return {
        "proposal": f"# Proposal {tag}\n",
        "design": f"# Design {tag}\n" if n % 2 else None,
        "tasks": f"- [ ] 1.1 task of {tag}\n",
        # The set of capabilities changes from bundle to bundle too.
        "specs": [
            [f"cap-{(n + k) % (SPECS + 2)}", f"spec {k} of {tag}\n" * 20] for k in range(SPECS)
        ],
    }


def _pusher(
    url: str, change_id: str, sent: list[int], acked: list[int], stop: threading.Event
) -> None:
    revision = ""
    n = 0
    with httpx.Client(base_url=url, headers=H, timeout=10) as client:
        while not stop.is_set():
            body = {**_bundle(change_id, n), "revision": revision}
            sent.append(n)
            try:
                resp = client.post(f"{PATH}/changes/{change_id}/sync", json=body)
            except httpx.HTTPError:
                return  # the server is gone
            assert resp.status_code == 200, resp.text
            revision = resp.json()["new_revision"]
            acked.append(n)
            n += 1


def _ingester(
    url: str, worker: int, sent: list[str], acked: list[str], stop: threading.Event
) -> None:
    n = 0
    with httpx.Client(base_url=url, headers=H, timeout=10) as client:
        while not stop.is_set():
            key = f"w{worker}-b{n}"
            events = [
                {
                    "v": 1,
                    "ts": "2026-02-28T10:00:00.000Z",
                    "entity": "task",
                    "entity_id": str(i),
                    "op": "create",
                    "actor": "cli",
                    "by": "@kill",
                    "ctx": {"session_id": "kill"},
                    "batch": key,
                    "i": i,
                }
                for i in range(BATCH)
            ]
            sent.append(key)
            try:
                resp = client.post(
                    f"{PATH}/events", json={"events": events, "idempotency_key": key}
                )
            except httpx.HTTPError:
                return
            assert resp.status_code == 200, resp.text
            acked.append(key)
            n += 1


def test_sigkill_mid_stream_leaves_whole_transactions(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "server"
    server = start_server(data_dir, database_url)
    stop = threading.Event()
    changes = [f"001-{i + 1:02d}_kill" for i in range(PUSHERS)]
    pushes: dict[str, tuple[list[int], list[int]]] = {c: ([], []) for c in changes}
    batches: list[tuple[list[str], list[str]]] = [([], []) for _ in range(INGESTERS)]
    threads = [
        threading.Thread(target=_pusher, args=(server.url, c, *pushes[c], stop)) for c in changes
    ] + [
        threading.Thread(target=_ingester, args=(server.url, w, *batches[w], stop))
        for w in range(INGESTERS)
    ]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        # Kill once every worker has had a few requests acknowledged.
        while time.monotonic() < deadline and not (
            all(len(a) >= 3 for _, a in pushes.values()) and all(len(a) >= 2 for _, a in batches)
        ):
            time.sleep(0.05)
        time.sleep(0.3)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        server.stop()
    assert server.process.returncode == -signal.SIGKILL

    restarted = start_server(data_dir, database_url)
    try:
        with httpx.Client(base_url=restarted.url, headers=H, timeout=30) as client:
            assert client.get("/api/v1/ready").json() == {"status": "ready"}
            for change_id, (sent, acked) in pushes.items():
                got = client.get(f"{PATH}/changes/{change_id}/sync").json()
                stored = {k: got[k] for k in ("proposal", "design", "tasks", "specs")}
                matches = [
                    n
                    for n in sent
                    if stored
                    == {
                        **_bundle(change_id, n),
                        "specs": sorted(_bundle(change_id, n)["specs"]),
                    }
                ]
                assert len(matches) == 1, (change_id, stored["proposal"])
                # Acknowledged pushes are durable; at most one unacknowledged one committed.
                assert acked[-1] <= matches[0] <= acked[-1] + 1
                assert int(got["revision"]) == matches[0] + 1
            events = client.get(f"{PATH}/events").json()
            per_batch: dict[str, int] = {}
            for e in events:
                if "batch" in e:
                    per_batch[e["batch"]] = per_batch.get(e["batch"], 0) + 1
            for sent_keys, acked_keys in batches:
                for key in sent_keys:
                    assert per_batch.get(key, 0) in (0, BATCH), key
                for key in acked_keys:
                    assert per_batch.get(key) == BATCH, key
            assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
            # It serves writes again, continuing the sequence.
            change_id = changes[0]
            revision = client.get(f"{PATH}/changes/{change_id}/sync").json()["revision"]
            resp = client.post(
                f"{PATH}/changes/{change_id}/sync",
                json={**_bundle(change_id, 999), "revision": revision},
            )
            assert resp.status_code == 200, resp.text
            ev = {
                "v": 1,
                "ts": "2026-02-28T10:00:00Z",
                "entity": "task",
                "entity_id": "x",
                "op": "create",
                "actor": "cli",
                "by": "@k",
                "ctx": {"session_id": "k"},
            }
            resp = client.post(f"{PATH}/events", json={"events": [ev], "idempotency_key": "after"})
            assert resp.json() == {"accepted": 1, "duplicates": 0}
            last = client.get(f"{PATH}/events?since={len(events)}").json()
            # The push records its `update` event, then the batch's event follows.
            assert [e["seq"] for e in last] == [len(events) + 1, len(events) + 2]
            assert [e["op"] for e in last] == ["update", "create"]
    finally:
        restarted.stop()
    # The kill really landed mid-stream: requests were in flight (sent, never answered).
    in_flight = [len(s) - len(a) for s, a in [*pushes.values(), *batches]]
    assert sum(in_flight) >= 1, in_flight
