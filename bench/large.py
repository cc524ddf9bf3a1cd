"""Benchmark: one large project (50,000 changes, 5,000 specs, 1,000,000 events).

Usage (from the repository root)::

    .venv/bin/python bench/large.py [--backends sqlite,postgresql] [--changes 50000]
                                    [--specs 5000] [--events 1000000] [--samples 200]

For each backend it starts a real ``loom serve`` on a throwaway database (as the other
benchmarks do) and builds one project over HTTP from the shapes of the real corpus
(``../shared/corpus/ito-dotdir``, or ``LOOM_BENCH_CORPUS``): every change and spec is a
copy of a corpus change or spec (its proposal, design, tasks and spec deltas) under a new
id, archived in the corpus's proportion (about 93%); each copy of the corpus names its
capabilities apart (``cap-2`` for the third copy's ``cap``), so the corpus's overlaps
between changes repeat inside each copy; the events are audit events like those agents
send, in batches of 500. (Every requirement shared by all the copies of its change, ~170
active changes at once, is the worst case ``bench/leases.py`` measures by default.) It
reports:

- import time (changes and specs through ``POST /import``, events through ``POST /events``);
- ``GET /changes?lifecycle=all&limit=100`` first page and a deep page (keyset cursor at
  90% of the project) p50/p99 (target p99 < 50 ms);
- ``GET /changes/{id}?lifecycle=all`` p99 (target < 20 ms), ids spread over the project;
- ``GET /events?since=N&limit=100`` p99 (target < 20 ms), ``since`` spread over the log;
- allocate p99 under the PRODUCT.md §4 load (32 agents offering 160 allocate+release pairs
  per second, as ``bench/leases.py`` does; target < 25 ms) among the project's active
  changes, in two windows: right after the bulk loads, then again (on PostgreSQL, after a
  ``CHECKPOINT``: numbering the million events writes about a gigabyte of WAL, and the
  checkpoints that WAL triggers would otherwise still be writing, for tens of seconds,
  during the windows: the set-up's cost, not the allocations'; its duration is printed);
- database size and the server's resident memory.

Requests are sequential (one client) except the allocation phase, so latencies are the
server's own; on a shared machine they still move with other load (the load average is
printed). Smaller runs: ``--changes 5000 --specs 500 --events 100000``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _harness import ADMIN, Server, percentile, pg_database, start_server

from leases import P, allocate_open_loop, load_average
from loom.tree import read_tree

CORPUS = Path(
    os.environ.get(
        "LOOM_BENCH_CORPUS", Path(__file__).resolve().parents[2] / "shared/corpus/ito-dotdir"
    )
)
PER_MODULE = 100
TARGET_LIST_MS = 50.0
TARGET_DETAIL_MS = 20.0
TARGET_EVENTS_MS = 20.0
TARGET_ALLOC_MS = 25.0
EVENTS_PAGE = 100


def _name(change_id: str) -> str:
    tail = change_id.split("_", 1)[-1] if "_" in change_id else change_id
    return "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in tail.lower())[:40] or "x"


def build_items(changes: int, specs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Changes and specs copied from the corpus's, under new ids."""
    if not (CORPUS / "changes").is_dir():
        raise SystemExit(f"corpus not found: {CORPUS} (set LOOM_BENCH_CORPUS)")
    tree = read_tree(CORPUS)
    templates = [c for c in tree.changes if c.proposal or c.tasks]
    archived_share = sum(1 for c in templates if c.archived_on) / len(templates)
    items: list[dict[str, Any]] = []
    for i in range(changes):
        t = templates[i % len(templates)]
        # Each copy of the corpus gets capabilities of its own: the corpus's overlaps repeat
        # inside each copy, as a project's would, instead of every requirement being touched
        # by ~170 active changes at once (each template copied ~170 times under the same
        # names), which made every allocation's overlap pass find nothing free.
        copy = i // len(templates)
        deltas = [[cap if copy == 0 else f"{cap}-{copy}", delta] for cap, delta in t.specs]
        module, number = 1 + i // PER_MODULE, i % PER_MODULE + 1
        # Spread the archived ones evenly, in the corpus's proportion.
        archived = int((i + 1) * archived_share) != int(i * archived_share)
        day = datetime.date(2025, 1, 1) + datetime.timedelta(days=i % 600)
        items.append(
            {
                "id": f"{module:03d}-{number:02d}_{_name(t.id)}",
                "proposal": t.proposal,
                "design": t.design,
                "tasks": t.tasks,
                "specs": deltas,
                "archived_at": f"{day.isoformat()}T12:00:00Z" if archived else None,
            }
        )
    spec_items = [
        {
            "id": f"{tree.specs[i % len(tree.specs)].id}-{i}",
            "markdown": tree.specs[i % len(tree.specs)].markdown,
        }
        for i in range(specs)
    ]
    return items, spec_items


def _event(i: int) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-01-01T00:00:00.000Z",
        "entity": "task",
        "entity_id": "1.1",
        "scope": f"{1 + (i // 7) % 500:03d}-01_x",
        "op": "status_change",
        "from": "pending",
        "to": "in-progress",
        "actor": "cli",
        "by": f"@agent-{i % 64}",
        "ctx": {"session_id": f"bench-{i // 500}"},
    }


def timed(
    client: httpx.Client, samples: int, request: Callable[[int], httpx.Response]
) -> list[float]:
    out = []
    for k in range(samples):
        t = time.perf_counter()
        r = request(k)
        out.append(time.perf_counter() - t)
        if r.status_code != 200:
            raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text[:200]}")
    return out


def rss_mb(server: Server) -> float:
    total = 0
    pending = [server.process.pid]
    while pending:
        pid = pending.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{pid}/task").glob("*"):
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return total / 1024


def db_size_mb(kind: str, url: str, data_dir: Path) -> float:
    if kind == "sqlite":
        db = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 2**20
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    finally:
        engine.dispose()
    return int(size) / 2**20


def pg_autovacuum(url: str) -> str:
    """PostgreSQL's ``autovacuum`` setting: when off (as on some test machines), nothing but
    Loom's own post-import ANALYZE refreshes statistics, and the dead index entries that
    numbering events leaves stay until a manual VACUUM (see BENCHMARKS.md)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW autovacuum")).scalar_one())
    finally:
        engine.dispose()


def wait_for_vacuum(url: str, limit_s: float = 600.0) -> float:
    """Seconds until no VACUUM runs in the benchmark's database: after numbering a burst of
    events the server vacuums the events table in the background (loom.service.events), and
    the events page is measured after it, in the steady state."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            sql = text(
                "SELECT count(*) FROM pg_stat_progress_vacuum WHERE datname = current_database()"
            )
            time.sleep(0.5)  # the background VACUUM starts right after the first read
            while time.perf_counter() - started < limit_s:
                if not conn.execute(sql).scalar_one():
                    break
                conn.rollback()
                time.sleep(0.5)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def pg_checkpoint(url: str) -> float:
    """Seconds a ``CHECKPOINT`` took (``url`` is the benchmark's database as its superuser,
    see ``pg_database``): it ends the checkpoint that the set-up's WAL started at full speed
    and flushes what is left, so the allocation windows measure allocations, not the
    set-up's I/O."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.execute(text("CHECKPOINT"))
    finally:
        engine.dispose()
    return time.perf_counter() - started


def line(label: str, lat: list[float], target: float) -> str:
    p99 = percentile(lat, 0.99) * 1000
    ok = "met" if p99 < target else "MISSED"
    return (
        f"{label:<34} p50 {percentile(lat, 0.5) * 1000:6.1f} ms  p99 {p99:6.1f} ms"
        f"  (target p99 < {target:.0f} ms: {ok})"
    )


def bench_backend(kind: str, url: str, args: argparse.Namespace) -> None:
    items, spec_items = build_items(args.changes, args.specs)
    data_dir = Path(tempfile.mkdtemp(prefix=f"loom-bench-large-{kind}-"))
    server = start_server(data_dir, url)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=600) as c:
            t = time.perf_counter()
            for start in range(0, len(spec_items), 1000):
                body = {"mode": "create-only", "specs": spec_items[start : start + 1000]}
                c.post(f"{P}/import", json=body).raise_for_status()
            for start in range(0, len(items), 500):
                body = {"mode": "create-only", "changes": items[start : start + 500]}
                c.post(f"{P}/import", json=body).raise_for_status()
            import_s = time.perf_counter() - t
            t = time.perf_counter()
            for start in range(0, args.events, 500):
                batch = [_event(i) for i in range(start, min(start + 500, args.events))]
                body = {"events": batch, "idempotency_key": f"large-{start}"}
                c.post(f"{P}/events", json=body).raise_for_status()
            events_s = time.perf_counter() - t
            active = sum(1 for i in items if i["archived_at"] is None)
            print(f"\n== {kind} ==")
            if kind == "postgresql":
                print(f"autovacuum {pg_autovacuum(url)}")
            print(
                f"import: {len(items):,} changes ({active:,} active) + {len(spec_items):,} specs"
                f" in {import_s:.1f} s; {args.events:,} events in {events_s:.1f} s"
                f" ({args.events / events_s:,.0f} events/s)"
            )
            # A keyset cursor at 90% of the project, found by walking the pages once.
            cursor: str | None = None
            deep_at = int(len(items) * 0.9)
            seen = 0
            params: dict[str, str] = {"lifecycle": "all", "limit": "1000"}
            while seen < deep_at:
                r = c.get(f"{P}/changes", params=params)
                following = r.headers.get("X-Next-Cursor")
                if not following:
                    break
                seen += len(r.json())
                cursor = following
                params = {"lifecycle": "all", "limit": "1000", "cursor": cursor}
            first = timed(c, args.samples, lambda _: c.get(f"{P}/changes?lifecycle=all&limit=100"))
            deep_params = {"lifecycle": "all", "limit": "100", "cursor": cursor or ""}
            deep = timed(c, args.samples, lambda _: c.get(f"{P}/changes", params=deep_params))
            step = max(1, len(items) // args.samples)
            detail = timed(
                c,
                args.samples,
                lambda k: c.get(
                    f"{P}/changes/{items[(k * step) % len(items)]['id']}",
                    params={"lifecycle": "all"},
                ),
            )
            # The first read after a burst of appends numbers them (PostgreSQL): timed apart.
            t = time.perf_counter()
            c.get(f"{P}/events", params={"limit": 1}).raise_for_status()
            first_read = time.perf_counter() - t
            vacuum_s = wait_for_vacuum(url) if kind == "postgresql" else 0.0
            total_events = args.events + len(items)  # the import logs one event per change
            ev_step = max(1, total_events // args.samples)
            events = timed(
                c,
                args.samples,
                lambda k: c.get(f"{P}/events", params={"since": k * ev_step, "limit": EVENTS_PAGE}),
            )
            print(line("GET /changes first page (100)", first, TARGET_LIST_MS))
            print(line(f"GET /changes deep page (at {seen:,})", deep, TARGET_LIST_MS))
            print(line("GET /changes/{id}", detail, TARGET_DETAIL_MS))
            print(line(f"GET /events?since=N&limit={EVENTS_PAGE}", events, TARGET_EVENTS_MS))
            print(f"first GET /events after the appends: {first_read * 1000:.0f} ms")
            if kind == "postgresql":
                print(f"then the server's VACUUM of the events table: {vacuum_s:.1f} s")
                checkpoint_s = pg_checkpoint(url)
                print(f"then a CHECKPOINT (the set-up's WAL written out): {checkpoint_s:.1f} s")
        # Twice: the first window starts right after the bursts above (on SQLite the first
        # write after them restarts a WAL of about a gigabyte); the second is the steady state.
        for when in ("first, after the bursts", "again"):
            alloc = asyncio.run(allocate_open_loop(server, args.alloc_seconds))
            print(
                line(
                    f"allocate ({len(alloc.latencies)} pairs, §4 load; {when})",
                    alloc.latencies,
                    TARGET_ALLOC_MS,
                )
                + (f"; errors {len(alloc.errors)}" if alloc.errors else "")
            )
        print(
            f"database size {db_size_mb(kind, url, data_dir):,.0f} MiB; "
            f"server resident memory {rss_mb(server):,.0f} MiB (load average {load_average()})"
        )
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--changes", type=int, default=50_000)
    parser.add_argument("--specs", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--alloc-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(
        f"loom large-project benchmark: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
        f"load average {load_average()}; corpus {CORPUS}"
    )
    for kind in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if kind == "sqlite":
            tmp = Path(tempfile.mkdtemp(prefix="loom-bench-db-"))
            try:
                bench_backend(kind, f"sqlite:///{tmp / 'loom.db'}", args)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        elif kind == "postgresql":
            with pg_database() as url:
                bench_backend(kind, url, args)
        else:
            parser.error(f"unknown backend {kind!r}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
