"""Benchmark: burn down a queue of ready changes with many agents (River's method).

Usage (from the repository root)::

    .venv/bin/python bench/burndown.py [--backends sqlite,postgresql] [--changes 1000]
                                       [--agents 64] [--workers N]

For each backend it starts a real ``loom serve`` on a throwaway database (as
``bench/leases.py`` does), imports ``--changes`` ready changes (one pending task each), then
lets ``--agents`` agents loop, each on its own keep-alive connection::

    allocate -> start task 1.1 (fenced) -> complete it (fenced) -> release

until allocation answers "no work". It prints changes/s, the server process's CPU time per
change and the resulting changes/s per server core (changes divided by server CPU seconds:
what one fully used core would sustain), and on PostgreSQL also the CPU the database's own
backends used (read from ``/proc`` for the backends serving the benchmark's database).
``--workers N`` runs the PostgreSQL server with N processes (CPU summed over all of them).

Checked, exit status 1 on failure: every change was granted exactly once (responses), the
audit log holds exactly one ``allocate`` per change, every change ends ``complete`` and no
lease is left. The load generator shares the machine with the server; on a shared machine
the CPU-per-change figures are the ones to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from _harness import ADMIN, Server, pg_database, start_server

from leases import DELTA, Conn, P, load_average

TASKS = "# Tasks\n\n- [ ] 1.1 Do the thing\n"


@dataclass
class Run:
    grants: list[tuple[str, str]] = field(default_factory=list)  # (holder, change)
    errors: list[str] = field(default_factory=list)
    requests: int = 0


async def seed(server: Server, ids: list[str]) -> None:
    conn = await Conn(server.host, server.port).open()
    try:
        for start in range(0, len(ids), 250):
            items = [
                {"id": cid, "proposal": f"# {cid}\n", "tasks": TASKS, "specs": [["b", DELTA]]}
                for cid in ids[start : start + 250]
            ]
            status, body = await conn.request(
                "POST", f"{P}/import", {"mode": "create-only", "changes": items}
            )
            if status != 200 or body["created"] != len(items):
                raise RuntimeError(f"seeding failed: {status} {body}")
    finally:
        await conn.close()


async def agent(conn: Conn, holder: str, run: Run) -> None:
    while True:
        status, body = await conn.request("POST", f"{P}/allocate", {"holder": holder})
        run.requests += 1
        if status != 200:
            run.errors.append(f"allocate {status} {body}")
            return
        claim = body["claim"]
        if claim is None:
            return
        cid = claim["change_id"]
        run.grants.append((holder, cid))
        fenced = {"X-Loom-Holder": holder, "X-Loom-Fencing-Token": str(claim["fencing_token"])}
        for step in ("start", "complete"):
            status, body = await conn.request(
                "POST", f"{P}/changes/{cid}/tasks/1.1/{step}", {}, headers=fenced
            )
            run.requests += 1
            if status != 200:
                run.errors.append(f"{step} {cid} {status} {body}")
        status, body = await conn.request("POST", f"{P}/changes/{cid}/release", {"holder": holder})
        run.requests += 1
        if status != 200 or body.get("released") is not True:
            run.errors.append(f"release {cid} {status} {body}")


async def check(server: Server, ids: list[str], run: Run) -> list[str]:
    problems: list[str] = list(run.errors[:5])
    granted = Counter(cid for _, cid in run.grants)
    missing = set(ids) - set(granted)
    if missing:
        problems.append(f"{len(missing)} change(s) never granted, e.g. {sorted(missing)[:3]}")
    twice = [c for c, n in granted.items() if n > 1]
    if twice:
        problems.append(f"{len(twice)} change(s) granted more than once, e.g. {twice[:3]}")
    conn = await Conn(server.host, server.port).open()
    try:
        _, events = await conn.request("GET", f"{P}/events?op=allocate")
        per_change = Counter(e["entity_id"] for e in events)
        if sorted(per_change) != sorted(ids) or set(per_change.values()) != {1}:
            problems.append("the audit log does not hold exactly one allocate per change")
        _, leases = await conn.request("GET", f"{P}/leases")
        if leases:
            problems.append(f"{len(leases)} lease(s) left")
    finally:
        await conn.close()
    statuses: Counter[str] = Counter()
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
    ) as client:
        params = {"limit": "1000"}
        while True:
            page = client.get(f"{P}/changes", params=params)
            statuses.update(s["work_status"] for s in page.json())
            cursor = page.headers.get("X-Next-Cursor")
            if not cursor:
                break
            params = {"limit": "1000", "cursor": cursor}
    if statuses != Counter({"complete": len(ids)}):
        problems.append(f"work statuses at the end: {dict(statuses)}")
    return problems


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pg_backends(url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the benchmark database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalars()
            return {int(p): _proc_cpu(int(p)) for p in pids}
    finally:
        engine.dispose()


async def bench_backend(kind: str, url: str, changes: int, agents: int, workers: int) -> bool:
    data_dir = Path(tempfile.mkdtemp(prefix=f"loom-bench-burndown-{kind}-"))
    server = start_server(data_dir, url, *(("--workers", str(workers)) if workers > 1 else ()))
    try:
        ids = [f"{1 + i // 100:03d}-{i % 100 + 1:02d}_work-{i}" for i in range(changes)]
        t = time.perf_counter()
        await seed(server, ids)
        seeded = time.perf_counter() - t
        conns = [await Conn(server.host, server.port).open() for _ in range(agents)]
        pg_before = _pg_backends(url) if kind == "postgresql" else {}
        run = Run()
        cpu0 = server.cpu_seconds()
        t0 = time.perf_counter()
        await asyncio.gather(*(agent(c, f"agent-{i}", run) for i, c in enumerate(conns)))
        elapsed = time.perf_counter() - t0
        cpu = server.cpu_seconds() - cpu0
        pg_after = _pg_backends(url) if kind == "postgresql" else {}
        for c in conns:
            await c.close()
        problems = await check(server, ids, run)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    done = len(run.grants)
    print(f"\n== {kind} ==" + (f" ({workers} server processes)" if workers > 1 else ""))
    print(f"seed: {changes} ready changes in {seeded:.1f} s; {agents} agents")
    print(
        f"burn-down: {done} changes in {elapsed:.2f} s = {done / elapsed:,.0f} changes/s "
        f"({run.requests:,} requests, {run.requests / elapsed:,.0f} req/s)"
    )
    print(
        f"loom server CPU: {cpu:.2f} s = {cpu / elapsed * 100:.0f}% of a core; "
        f"{cpu / done * 1e3:.2f} ms per change -> {done / cpu:,.0f} changes/s per server core"
    )
    if kind == "postgresql":
        pg_cpu = sum(v - pg_before.get(p, 0.0) for p, v in pg_after.items())
        print(
            f"PostgreSQL backends CPU: {pg_cpu:.2f} s ({pg_cpu / done * 1e3:.2f} ms per change); "
            f"loom + PostgreSQL: {done / (cpu + pg_cpu):,.0f} changes/s per core"
        )
    print(
        f"check: every change processed exactly once: {'yes' if not problems else 'NO'}"
        f" (load average {load_average()})"
    )
    for line in problems:
        print(f"  ! {line}")
    return not problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1, help="server processes (PostgreSQL only)")
    args = parser.parse_args(argv)
    print(
        f"loom burn-down benchmark: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
        f"load average {load_average()}"
    )
    ok = True
    for kind in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if kind == "sqlite":
            tmp = Path(tempfile.mkdtemp(prefix="loom-bench-db-"))
            try:
                url = f"sqlite:///{tmp / 'loom.db'}"
                ok &= asyncio.run(bench_backend(kind, url, args.changes, args.agents, 1))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        elif kind == "postgresql":
            with pg_database() as url:
                run = bench_backend(kind, url, args.changes, args.agents, args.workers)
                ok &= asyncio.run(run)
        else:
            parser.error(f"unknown backend {kind!r}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
