"""Benchmark: the HTTP API on a real ``loom serve``, SQLite and PostgreSQL, in one run.

Usage (from the repository root)::

    .venv/bin/python bench/api.py [--backends sqlite,postgresql] [--clients 8] [--seconds 4]

For each backend it starts a real server (``python -m loom serve --port 0``, loopback only) on
a throwaway database — a SQLite file in a temporary directory, or a PostgreSQL database it
creates through ``LOOM_BENCH_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and drops afterwards — seeds it
over HTTP, then drives it with N client threads (one keep-alive ``httpx.Client`` each,
closed loop) for a few seconds per measurement:

- ``GET /api/v1/health`` (the in-run reference: the HTTP stack without the database);
- pull: ``GET …/changes/{id}/sync`` of a change with a realistic bundle;
- push: ``POST …/changes/{id}/sync`` with the right revision, one change per client;
- task start: ``POST …/tasks/{task}/start``, a fresh task every request;
- event ingest: ``POST …/events`` in batches of 500 (also events/s);
- ``GET /changes`` of a project with 5,000 changes, one client (latency).

It prints one table per backend: requests, requests/s, p50/p99 latency, errors. Targets
(PRODUCT.md §4): event ingest >= 20,000 events/s in batches of 500; the 5,000-change list in
< 150 ms. Absolute figures on a shared machine are noise; compare within one run. The exit
status is 1 only if a request fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _harness import ADMIN, cpu_steal, percentile, pg_database, start_server

P = "/api/v1/projects/bench/api"
BIG = "/api/v1/projects/bench/big"
H = {"Authorization": f"Bearer {ADMIN}"}
BATCH = 500
LIST_SIZE = 5000
TASKS_PER_CHANGE = 40
TASK_CHANGES_PER_CLIENT = 12
TARGET_EVENTS_PER_S = 20_000
TARGET_LIST_MS = 150.0

PROPOSAL = "# Proposal\n\n## Why\n" + "Agents need to coordinate on shared changes.\n" * 40
DELTA = (
    "## ADDED Requirements\n\n### Requirement: Bench {n}\nThe system SHALL be fast.\n\n"
    "#### Scenario: fast\n- **WHEN** measured\n- **THEN** it is fast\n"
)


def enhanced_tasks(change_id: str, count: int) -> str:
    lines = [f"# Tasks for: {change_id}\n", "## Wave 1\n", "- **Depends On**: None\n"]
    for i in range(1, count + 1):
        lines.append(
            f"### Task 1.{i}: Task number {i}\n- **Dependencies**: None\n"
            f"- **Updated At**: 2026-03-01\n- **Status**: [ ] pending\n"
        )
    return "\n".join(lines)


def event(key: str, i: int) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-02-28T10:00:00.000Z",
        "entity": "task",
        "entity_id": f"{i}",
        "scope": "001-01_bench",
        "op": "status_change",
        "from": "pending",
        "to": "in-progress",
        "actor": "cli",
        "by": "@bench",
        "ctx": {"session_id": key},
    }


# --------------------------------------------------------------------------- server


# --------------------------------------------------------------------------- measuring


@dataclass
class Result:
    name: str
    clients: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    items: int = 0  # events for ingest
    note: str = ""

    def row(self) -> str:
        n = len(self.latencies)
        rate = n / self.elapsed if self.elapsed else 0.0
        extra = f"{self.items / self.elapsed:,.0f} events/s" if self.items else ""
        note = " ".join(x for x in (extra, self.note) if x)
        return (
            f"{self.name:<28} {self.clients:>7} {n:>8} {rate:>9,.0f} "
            f"{percentile(self.latencies, 0.5) * 1000:>8.1f} "
            f"{percentile(self.latencies, 0.99) * 1000:>8.1f} {self.errors:>6}  {note}"
        )


Step = Callable[[httpx.Client, int, int], int]  # (client, worker, iteration) -> items


def run_load(url: str, name: str, clients: int, seconds: float, step: Step) -> Result:
    """Closed loop: ``clients`` threads call ``step`` back to back for ``seconds``."""
    result = Result(name, clients)
    lock = threading.Lock()
    start_barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(w: int) -> None:
        lat: list[float] = []
        errors = items = 0
        with httpx.Client(base_url=url, headers=H, timeout=30) as client:
            client.get("/api/v1/health")  # connect before timing
            start_barrier.wait()
            i = 0
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                try:
                    items += step(client, w, i)
                    lat.append(time.perf_counter() - t0)
                except Exception as exc:  # counted and shown, never hidden
                    errors += 1
                    if errors == 1:
                        print(f"  {name}: worker {w}: {exc}", file=sys.stderr)
                i += 1
        with lock:
            result.latencies += lat
            result.errors += errors
            result.items += items

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + 3600
    start_barrier.wait()
    began = time.perf_counter()
    stop_at[0] = began + seconds
    for t in threads:
        t.join()
    result.elapsed = time.perf_counter() - began
    return result


def check(resp: httpx.Response) -> httpx.Response:
    if resp.status_code != 200:
        raise RuntimeError(
            f"{resp.request.method} {resp.request.url.path}: {resp.status_code} {resp.text[:200]}"
        )
    return resp


# --------------------------------------------------------------------------- the benchmark


def seed(client: httpx.Client, clients: int) -> dict[str, Any]:
    """The data every measurement needs; returns per-client state."""
    bundle = {
        "proposal": PROPOSAL,
        "design": "# Design\n\nNothing fancy.\n",
        "tasks": enhanced_tasks("001-01_pull", 10),
        "specs": [[f"cap-{k}", DELTA.format(n=k)] for k in range(3)],
        "revision": "",
    }
    check(client.post(f"{P}/changes/001-01_pull/sync", json=bundle))
    push_ids = [f"002-{w + 1:02d}_push" for w in range(clients)]
    task_ids = [
        [f"{100 + w:03d}-{c + 1:02d}_tasks" for c in range(TASK_CHANGES_PER_CLIENT)]
        for w in range(clients)
    ]
    changes = [{"id": cid, "proposal": "# P\n", "specs": []} for cid in push_ids]
    changes += [
        {"id": cid, "proposal": "# P\n", "tasks": enhanced_tasks(cid, TASKS_PER_CHANGE)}
        for ids in task_ids
        for cid in ids
    ]
    check(client.post(f"{P}/import", json={"changes": changes}, timeout=120))
    for start in range(0, LIST_SIZE, 1000):
        big = [
            {
                "id": f"{1 + n // 90:03d}-{n % 90 + 1:02d}_change-{n}",
                "proposal": "# P\n",
                "tasks": "- [x] 1.1 a\n- [ ] 1.2 b\n",
                "specs": [["cap", "## ADDED Requirements\n"]],
            }
            for n in range(start, min(start + 1000, LIST_SIZE))
        ]
        check(client.post(f"{BIG}/import", json={"changes": big}, timeout=300))
    return {"push": push_ids, "revisions": ["1"] * clients, "tasks": task_ids}


def bench_backend(
    kind: str, database_url: str, data_dir: Path, clients: int, seconds: float
) -> list[Result]:
    server = start_server(data_dir, database_url, "--max-body-bytes", str(64 << 20))
    try:
        with httpx.Client(base_url=server.url, headers=H, timeout=60) as admin:
            t0 = time.perf_counter()
            state = seed(admin, clients)
            print(f"  {kind}: seeded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            listed = check(admin.get(f"{BIG}/changes")).json()
            assert len(listed) == LIST_SIZE, len(listed)
        url = server.url
        results = []

        results.append(
            run_load(
                url,
                "GET /health",
                clients,
                seconds,
                lambda c, w, i: check(c.get("/api/v1/health")) and 0,
            )
        )
        results.append(
            run_load(
                url,
                "pull (GET sync)",
                clients,
                seconds,
                lambda c, w, i: check(c.get(f"{P}/changes/001-01_pull/sync")) and 0,
            )
        )

        def push(c: httpx.Client, w: int, i: int) -> int:
            cid = state["push"][w]
            body = {
                "proposal": f"# P {i}\n",
                "tasks": "- [ ] 1.1 x\n",
                "specs": [["cap", DELTA.format(n=i)]],
                "revision": state["revisions"][w],
            }
            state["revisions"][w] = check(c.post(f"{P}/changes/{cid}/sync", json=body)).json()[
                "new_revision"
            ]
            return 0

        results.append(run_load(url, "push (POST sync)", clients, seconds, push))

        def start(c: httpx.Client, w: int, i: int) -> int:
            change, task = divmod(i, TASKS_PER_CHANGE)
            if change >= TASK_CHANGES_PER_CLIENT:
                raise RuntimeError("out of fresh tasks (raise TASK_CHANGES_PER_CLIENT)")
            cid = state["tasks"][w][change]
            check(c.post(f"{P}/changes/{cid}/tasks/1.{task + 1}/start"))
            return 0

        results.append(run_load(url, "task start", clients, seconds, start))

        # The batch is encoded once; each request only splices in its key (the load
        # generator shares the 2 cores with the server: building and encoding 500 events per
        # request in Python cost the clients more CPU than the server spent on them).
        template = json.dumps(
            {"events": [event("KEY", n) for n in range(BATCH)], "idempotency_key": "KEY"}
        ).encode()
        json_headers = {"Content-Type": "application/json"}

        def ingest(c: httpx.Client, w: int, i: int) -> int:
            key = f"bench-{w}-{i}".encode()
            body = template.replace(b'"KEY"', b'"' + key + b'"')
            resp = c.post(f"{P}/events", content=body, headers=json_headers)
            accepted = check(resp).json()["accepted"]
            assert accepted == BATCH, accepted
            return int(accepted)

        results.append(run_load(url, f"event ingest ({BATCH}/batch)", clients, seconds, ingest))
        events_per_s = results[-1].items / results[-1].elapsed
        results[-1].note = f"(target >= {TARGET_EVENTS_PER_S:,}: " + (
            "met)" if events_per_s >= TARGET_EVENTS_PER_S else "MISSED)"
        )

        listing = run_load(
            url,
            f"GET /changes ({LIST_SIZE:,})",
            1,
            seconds,
            lambda c, w, i: check(c.get(f"{BIG}/changes")) and 0,
        )
        p50_ms = percentile(listing.latencies, 0.5) * 1000
        listing.note = f"(target p50 < {TARGET_LIST_MS:.0f} ms: " + (
            "met)" if p50_ms < TARGET_LIST_MS else "MISSED)"
        )
        results.append(listing)
        return results
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    failed = False
    began = time.perf_counter()
    for kind in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix=f"loom-bench-api-{kind}-") as tmp:
            data_dir = Path(tmp)
            if kind == "sqlite":
                results = bench_backend(
                    kind, f"sqlite:///{data_dir / 'loom.db'}", data_dir, args.clients, args.seconds
                )
            elif kind == "postgresql":
                with pg_database() as url:
                    results = bench_backend(kind, url, data_dir, args.clients, args.seconds)
            else:
                parser.error(f"unknown backend {kind!r}")
        print(
            f"\nbackend: {kind}  ({args.clients} client threads, {args.seconds:g} s each, "
            "httpx keep-alive, loopback)"
        )
        print(
            f"{'measurement':<28} {'clients':>7} {'requests':>8} {'req/s':>9} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
        )
        for r in results:
            print(r.row())
            failed = failed or r.errors > 0
        sys.stdout.flush()
    steal = cpu_steal()
    print(f"\ntotal {time.perf_counter() - began:.0f} s" + (f", {steal}" if steal else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
