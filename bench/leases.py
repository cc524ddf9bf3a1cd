"""Benchmark: lease claim throughput/latency and allocation latency on a real ``loom serve``.

Usage (from the repository root)::

    .venv/bin/python bench/leases.py [--backends sqlite,postgresql] [--seconds 6] [--workers N]
                                     [--rounds 4] [--alloc-seconds 10] [--overlap]

For each backend it starts a real server (``python -m loom serve --port 0``) on a throwaway
database — a SQLite file in a temporary directory, or a PostgreSQL database it creates on
``postgresql://postgres@127.0.0.1:5432`` and drops afterwards (``LOOM_BENCH_POSTGRES_URL``
names another administrative URL) — seeds it over HTTP, and measures, loopback only:

1. ``GET /api/v1/health`` requests/s with 16 concurrent clients (the reference), measured
   in slices interleaved with phases 2 and 3 (``--rounds``), so that a shared machine's
   changes of speed affect the reference and the lease figures alike;
2. claim+release cycles with 16 concurrent clients, each on its own change (every claim is
   a real acquisition: new fencing token, audit events): cycles/s, lease requests/s (two per
   cycle) and the p50/p99 latency of the claims; the ratio of lease requests/s to health
   requests/s is the throughput target;
3. allocation under an open-loop load: 1,000 eligible changes, 32 agents together offering
   160 allocate+release pairs per second at fixed scheduled times (latency is measured from
   the scheduled time, so queueing is not hidden); p50/p99/max of allocate; then a check,
   from the responses and from the server's own audit log, that no change was ever granted
   to two holders at once (each grant of a change has a new fencing token and, in commit
   order, every allocate of a change is followed by its release before the next allocate).
   The 1,000 changes' deltas all touch one requirement (everything overlaps everything: the
   worst case for the overlap rule, which is the server's default); with ``--overlap`` they
   overlap as a project's would (pairs and groups sharing a requirement, one in five without
   requirements: :func:`realistic_specs`) and every allocate asks ``avoid_overlap=prefer``.

Each closed-loop phase also reports the server process's CPU time per request (Linux
``/proc``), which is far less sensitive than requests/s to other load on a shared machine;
the throughput ratio computed from it is printed next to the measured one. With both
backends, both servers run from the start and the closed-loop slices alternate between them
too (SQLite's health, claim+release and renewals, then PostgreSQL's, and again): this
shared machine's speed drifts by tens of percent within minutes (the same ``GET /health``
cost 133 µs of server CPU in the SQLite half of one run and 193 µs in its PostgreSQL half,
two minutes later), so measured one after the other the two engines' CPU per request were
not comparable. The last line compares them: Loom's CPU per lease request on PostgreSQL
over SQLite's (issue 16: at most 1.5x). On PostgreSQL it
also reports the CPU time of the local PostgreSQL server's processes in the same windows
(SQLite's work is inside Loom's process; PostgreSQL's is not), and the sum per request.

Targets (PRODUCT.md §4): lease requests/s >= 0.6 x health requests/s; claim p99 < 50 ms;
allocate p99 < 25 ms. The load generator is a minimal asyncio HTTP/1.1 keep-alive client
(one connection per simulated client) so that it costs the 2-core machine as little as
possible. The exit status is 0 even when a target is missed (it is a measurement); it is 1
when a correctness check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import (
    ADMIN,
    Server,
    cpu_steal,
    percentile,
    pg_database,
    postgres_cpu_seconds,
    start_server,
)

ORG, REPO = "bench", "leases"
P = f"/api/v1/projects/{ORG}/{REPO}"

CLIENTS = 16
AGENTS = 32
PAIRS_PER_SECOND = 160
ALLOC_CHANGES = 1000
TARGET_RATIO = 0.6
TARGET_CLAIM_P99_MS = 50.0
TARGET_ALLOC_P99_MS = 25.0
TARGET_CPU_RATIO = 1.5

TASKS = "# Tasks\n\n- [ ] 1.1 Do the thing\n"
DELTA = (
    "## ADDED Requirements\n\n### Requirement: Bench\nThe system SHALL be fast.\n\n"
    "#### Scenario: fast\n- **WHEN** measured\n- **THEN** fast\n"
)


# --------------------------------------------------------------------------- HTTP client


class Conn:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._r: asyncio.StreamReader | None = None
        self._w: asyncio.StreamWriter | None = None
        self._auth = f"Authorization: Bearer {ADMIN}\r\n"

    async def open(self) -> Conn:
        self._r, self._w = await asyncio.open_connection(self.host, self.port)
        return self

    async def close(self) -> None:
        if self._w is not None:
            self._w.close()
            with contextlib.suppress(OSError):
                await self._w.wait_closed()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        assert self._r is not None and self._w is not None
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            + (self._auth if auth else "")
            + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            + (
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                if body is not None
                else ""
            )
            + "\r\n"
        )
        self._w.write(head.encode() + payload)
        status_line = await self._r.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while True:
            line = await self._r.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        data = await self._r.readexactly(length) if length else b""
        return status, (json.loads(data) if data else None)


def load_average() -> str:
    """The load average, and the CPU steal since the previous call (``_harness.cpu_steal``)."""
    try:
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    steal = cpu_steal()
    return f"{load}, {steal} since the previous figure" if steal else load


# --------------------------------------------------------------------------- server


# --------------------------------------------------------------------------- phases


def realistic_specs(i: int) -> list[list[str]]:
    """``--overlap``: the i-th allocatable change's deltas. One change in five has none
    (a delta without requirement blocks); the others touch a requirement of their own and
    one they share: changes 2k and 2k+1 share one (pairs), and changes 10k, 10k+3 and
    10k+6 also share one; each block of ten is in one of 7 capabilities."""
    if i % 5 == 4:
        return [["notes", "Notes only, no requirement.\n"]]
    names = [f"Own {i}", f"Pair {i // 2}"] + ([f"Group {i // 10}"] if i % 10 in (0, 3, 6) else [])
    blocks = "".join(f"### Requirement: {n}\nThe system SHALL do {n}.\n\n" for n in names)
    return [[f"cap-{i // 10 % 7}", f"## MODIFIED Requirements\n\n{blocks}"]]


async def seed(
    server: Server,
    ids: list[str],
    *,
    eligible: bool,
    distinct: bool = False,
    realistic: bool = False,
) -> None:
    """Create changes: ``ready`` ones (eligible for allocation) or drafts (no tasks). Every
    change's delta touches the same requirement (the worst case for overlap-aware
    allocation: everything overlaps everything), or with ``distinct`` one of its own, or
    with ``realistic`` the overlaps of :func:`realistic_specs`."""

    def specs(i: int, cid: str) -> list[list[str]]:
        if realistic:
            return realistic_specs(i)
        return [["bench", DELTA.replace("Bench", cid) if distinct else DELTA]]

    conn = await Conn(server.host, server.port).open()
    try:
        for start in range(0, len(ids), 250):
            items = [
                {
                    "id": cid,
                    "proposal": f"# {cid}\n",
                    "tasks": TASKS if eligible else None,
                    "specs": specs(i, cid),
                }
                for i, cid in enumerate(ids[start : start + 250], start=start)
            ]
            status, body = await conn.request(
                "POST", f"{P}/import", {"mode": "create-only", "changes": items}
            )
            if status != 200 or body["created"] != len(items):
                raise RuntimeError(f"seeding failed: {status} {body}")
    finally:
        await conn.close()


@dataclass
class Loop:
    steps: int
    seconds: float
    server_cpu: float  # server process CPU seconds used in the measured window
    db_cpu: float = 0.0  # local PostgreSQL processes' CPU seconds in the same window

    @property
    def rate(self) -> float:
        return self.steps / self.seconds

    @property
    def cpu_per_step_us(self) -> float:
        return self.server_cpu / self.steps * 1e6 if self.steps else float("nan")


def merge(loops: list[Loop]) -> Loop:
    """Several measured windows as one (steps, seconds and CPU added up)."""
    return Loop(
        sum(x.steps for x in loops),
        sum(x.seconds for x in loops),
        sum(x.server_cpu for x in loops),
        sum(x.db_cpu for x in loops),
    )


async def closed_loop(
    server: Server,
    clients: int,
    seconds: float,
    step: Callable[[Conn, int], Awaitable[None]],
    warmup: float = 0.5,
) -> Loop:
    """``clients`` connections each running ``step`` back to back, measured after a warmup."""
    conns = [await Conn(server.host, server.port).open() for _ in range(clients)]
    counting = False
    done = 0
    stop_at = time.perf_counter() + warmup + seconds

    async def run(i: int) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await step(conns[i], i)
            if counting:
                done += 1

    tasks = [asyncio.create_task(run(i)) for i in range(clients)]
    await asyncio.sleep(warmup)
    counting = True
    started = time.perf_counter()
    cpu_started, db_started = server.cpu_seconds(), postgres_cpu_seconds()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu_started
    db_cpu = postgres_cpu_seconds() - db_started
    for c in conns:
        await c.close()
    return Loop(done, elapsed, cpu, db_cpu)


async def health_rate(server: Server, seconds: float) -> Loop:
    async def step(conn: Conn, _: int) -> None:
        status, _body = await conn.request("GET", "/api/v1/health", auth=False)
        if status != 200:
            raise RuntimeError(f"health: {status}")

    return await closed_loop(server, CLIENTS, seconds, step)


@dataclass
class ClaimStats:
    loop: Loop
    claim_latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def claim_release(server: Server, seconds: float, ids: list[str]) -> ClaimStats:
    latencies: list[float] = []
    errors: list[str] = []
    record = False

    async def step(conn: Conn, i: int) -> None:
        holder = f"bench-{i}"
        t0 = time.perf_counter()
        status, body = await conn.request(
            "POST", f"{P}/changes/{ids[i]}/claim", {"holder": holder, "ttl_seconds": 60}
        )
        if record:
            latencies.append(time.perf_counter() - t0)
        if status != 200:
            errors.append(f"claim {status} {body}")
        status, body = await conn.request(
            "POST", f"{P}/changes/{ids[i]}/release", {"holder": holder}
        )
        if status != 200 or body.get("released") is not True:
            errors.append(f"release {status} {body}")

    async def arm() -> None:
        nonlocal record
        await asyncio.sleep(0.5)
        record = True

    armer = asyncio.create_task(arm())
    loop = await closed_loop(server, CLIENTS, seconds, step)
    await armer
    return ClaimStats(loop, latencies, errors)


async def claim_only(server: Server, seconds: float, ids: list[str]) -> tuple[Loop, list[float]]:
    """Claims that renew the client's own lease (the cheapest claim)."""
    latencies: list[float] = []

    async def step(conn: Conn, i: int) -> None:
        t0 = time.perf_counter()
        status, body = await conn.request(
            "POST", f"{P}/changes/{ids[i]}/claim", {"holder": f"renew-{i}", "ttl_seconds": 60}
        )
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"claim {status} {body}")

    return await closed_loop(server, CLIENTS, seconds, step), latencies


@dataclass
class AllocStats:
    latencies: list[float]
    grants: list[tuple[str, str, int]]  # (holder, change, fencing token)
    late_starts: int
    offered: int
    elapsed: float
    errors: list[str]
    overlapping: list[str]  # changes granted with ``overlaps`` (a busy change shared a requirement)


async def allocate_open_loop(
    server: Server, seconds: float, avoid_overlap: str | None = None
) -> AllocStats:
    conns = [await Conn(server.host, server.port).open() for _ in range(AGENTS)]
    per_agent = PAIRS_PER_SECOND / AGENTS
    pairs_each = int(seconds * per_agent)
    latencies: list[float] = []
    grants: list[tuple[str, str, int]] = []
    overlapping: list[str] = []
    errors: list[str] = []
    late = 0
    start = time.perf_counter() + 0.2

    async def agent(j: int) -> None:
        nonlocal late
        holder = f"agent-{j}"
        conn = conns[j]
        for k in range(pairs_each):
            scheduled = start + (k * AGENTS + j) / PAIRS_PER_SECOND
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late += 1
            request: dict[str, Any] = {"holder": holder}
            if avoid_overlap is not None:
                request["avoid_overlap"] = avoid_overlap
            status, body = await conn.request("POST", f"{P}/allocate", request)
            latencies.append(time.perf_counter() - scheduled)
            if status != 200:
                errors.append(f"allocate {status} {body}")
                continue
            claim = body["claim"]
            if claim is None:
                errors.append("allocate: no work")
                continue
            grants.append((holder, claim["change_id"], claim["fencing_token"]))
            if claim.get("overlaps"):
                overlapping.append(claim["change_id"])
            status, body = await conn.request(
                "POST", f"{P}/changes/{claim['change_id']}/release", {"holder": holder}
            )
            if status != 200 or body.get("released") is not True:
                errors.append(f"release {status} {body}")

    t0 = time.perf_counter()
    await asyncio.gather(*(agent(j) for j in range(AGENTS)))
    elapsed = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return AllocStats(latencies, grants, late, pairs_each * AGENTS, elapsed, errors, overlapping)


async def count_overlaps(server: Server, ids: list[str]) -> int:
    """Strongly overlapping pairs among ``ids``."""
    conn = await Conn(server.host, server.port).open()
    try:
        status, body = await conn.request("GET", f"{P}/overlaps?strength=strong")
    finally:
        await conn.close()
    if status != 200:
        raise RuntimeError(f"overlaps: {status} {body}")
    wanted = set(ids)
    return sum(1 for o in body["overlaps"] if o["a"] in wanted and o["b"] in wanted)


async def check_no_double_grant(server: Server, grants: list[tuple[str, str, int]]) -> list[str]:
    problems: list[str] = []
    tokens: dict[str, list[int]] = defaultdict(list)
    for _, change, token in grants:
        tokens[change].append(token)
    for change, ts in tokens.items():
        if len(set(ts)) != len(ts):
            problems.append(f"{change}: fencing token granted twice {sorted(ts)}")
    conn = await Conn(server.host, server.port).open()
    try:
        status, events = await conn.request("GET", f"{P}/events?op=allocate")
        status2, releases = await conn.request("GET", f"{P}/events?op=release")
    finally:
        await conn.close()
    if status != 200 or status2 != 200:
        return [*problems, "could not read the audit log"]
    ops: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for e in events + releases:
        if e["entity_id"] in tokens:  # the changes of the allocation phase
            ops[e["entity_id"]].append((e["seq"], e["op"], e["meta"]["holder"]))
    for change, seq in ops.items():
        seq.sort()
        holder: str | None = None
        for _, op, who in seq:
            if op == "allocate":
                if holder is not None:
                    problems.append(f"{change}: allocated to {who} while held by {holder}")
                holder = who
            elif op == "release":
                if holder != who:
                    problems.append(f"{change}: released by {who}, held by {holder}")
                holder = None
    if sum(1 for e in events if e["op"] == "allocate") != len(grants):
        problems.append("audit log and responses disagree on the number of allocations")
    return problems


# --------------------------------------------------------------------------- driver


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


@dataclass
class Backend:
    """One backend's server and the closed-loop windows measured on it so far."""

    kind: str
    server: Server
    data_dir: Path
    claim_ids: list[str]
    renew_ids: list[str]
    seeded: float
    healths: list[Loop] = field(default_factory=list)
    claim_runs: list[ClaimStats] = field(default_factory=list)
    renews: list[Loop] = field(default_factory=list)
    renew_lat: list[float] = field(default_factory=list)


async def start_backend(kind: str, database_url: str, args: argparse.Namespace) -> Backend:
    data_dir = Path(tempfile.mkdtemp(prefix=f"loom-bench-{kind}-"))
    extra = ("--workers", str(args.workers)) if args.workers > 1 else ()
    server = start_server(data_dir, database_url, *extra)
    try:
        claim_ids = [f"001-{i + 1:02d}_claim-{i}" for i in range(CLIENTS)]
        renew_ids = [f"002-{i + 1:02d}_renew-{i}" for i in range(CLIENTS)]
        t = time.perf_counter()
        # Drafts: claimable, but never offered by allocation.
        await seed(server, claim_ids + renew_ids, eligible=False)
        seeded = time.perf_counter() - t
    except BaseException:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return Backend(kind, server, data_dir, claim_ids, renew_ids, seeded)


async def closed_loop_round(b: Backend, args: argparse.Namespace) -> None:
    """One slice of each closed-loop phase (health, claim+release, renewals) on ``b``."""
    seconds = args.seconds / args.rounds
    b.healths.append(await health_rate(b.server, seconds))
    b.claim_runs.append(await claim_release(b.server, seconds, b.claim_ids))
    renew_loop, lat = await claim_only(b.server, seconds, b.renew_ids)
    b.renews.append(renew_loop)
    b.renew_lat.extend(lat)


async def finish_backend(
    b: Backend, args: argparse.Namespace, cpu: dict[str, tuple[float, float]]
) -> bool:
    """The allocation phase on ``b``, then its report; ``cpu`` gets its (lease, renewal) CPU
    per request."""
    kind, server = b.kind, b.server
    extra = args.workers > 1
    alloc_ids = [f"{100 + i // 100:03d}-{i % 100 + 1:02d}_work-{i}" for i in range(ALLOC_CHANGES)]
    try:
        health_all = merge(b.healths)
        claims = ClaimStats(
            merge([c.loop for c in b.claim_runs]),
            [x for c in b.claim_runs for x in c.claim_latencies],
            [x for c in b.claim_runs for x in c.errors],
        )
        renew = merge(b.renews)
        renew_lat = b.renew_lat
        seeded = b.seeded
        claim_ids, renew_ids = b.claim_ids, b.renew_ids

        await seed(
            server,
            alloc_ids,
            eligible=True,
            distinct=args.distinct_requirements,
            realistic=args.overlap,
        )
        overlap_pairs = await count_overlaps(server, alloc_ids) if args.overlap else 0
        cpu_before_alloc, db_before_alloc = server.cpu_seconds(), postgres_cpu_seconds()
        alloc = await allocate_open_loop(server, args.alloc_seconds, args.avoid_overlap)
        alloc_cpu = server.cpu_seconds() - cpu_before_alloc
        alloc_db_cpu = postgres_cpu_seconds() - db_before_alloc
        problems = await check_no_double_grant(server, alloc.grants)
    finally:
        server.stop()
        shutil.rmtree(b.data_dir, ignore_errors=True)
    healths = b.healths

    health = health_all.rate
    health_cpu = health_all.server_cpu / health_all.steps
    lease_rps = 2 * claims.loop.rate
    lease_cpu = claims.loop.server_cpu / (2 * claims.loop.steps)
    renew_cpu = renew.server_cpu / renew.steps
    ratio = lease_rps / health
    claim_p50 = percentile(claims.claim_latencies, 0.50)
    claim_p99 = percentile(claims.claim_latencies, 0.99)
    alloc_p50 = percentile(alloc.latencies, 0.50)
    alloc_p99 = percentile(alloc.latencies, 0.99)
    changes_touched = len({c for _, c, _ in alloc.grants})
    print(f"\n== {kind} ==" + (f" ({args.workers} server processes)" if extra else ""))
    print(f"seed: {len(claim_ids) + len(renew_ids)} changes in {seeded:.2f} s")
    print(
        f"health ({CLIENTS} clients, {args.rounds} slices interleaved with the lease phases): "
        f"{health:,.0f} req/s (slices: {', '.join(f'{h.rate:,.0f}' for h in healths)}); "
        f"server CPU {health_cpu * 1e6:.0f} us/req"
    )
    print(
        f"claim+release ({CLIENTS} clients): {claims.loop.rate:,.0f} cycles/s = "
        f"{lease_rps:,.0f} lease req/s; claim p50 {ms(claim_p50)}, p99 {ms(claim_p99)}, "
        f"max {ms(max(claims.claim_latencies))}; server CPU {lease_cpu * 1e6:.0f} us/req; "
        f"errors {len(claims.errors)}"
    )
    print(
        f"claim renewals ({CLIENTS} clients): {renew.rate:,.0f} req/s; "
        f"p50 {ms(percentile(renew_lat, 0.5))}, p99 {ms(percentile(renew_lat, 0.99))}; "
        f"server CPU {renew_cpu * 1e6:.0f} us/req"
    )
    print(
        f"ratio lease req/s / health req/s: {ratio:.2f} (target >= {TARGET_RATIO}) "
        f"{verdict(ratio >= TARGET_RATIO)}; renewals only: {renew.rate / health:.2f}; "
        f"by server CPU per request: {health_cpu / lease_cpu:.2f} "
        f"(renewals {health_cpu / renew_cpu:.2f})"
    )
    print(
        f"claim p99 {ms(claim_p99)} (target < {TARGET_CLAIM_P99_MS:.0f} ms) "
        f"{verdict(claim_p99 * 1000 < TARGET_CLAIM_P99_MS)}"
    )
    print(
        f"allocate open loop: {ALLOC_CHANGES} eligible changes, {AGENTS} agents, "
        f"{PAIRS_PER_SECOND} pairs/s offered, {alloc.offered} pairs in {alloc.elapsed:.1f} s "
        f"({alloc.offered / alloc.elapsed:.0f} pairs/s achieved), {alloc.late_starts} started "
        f"late; server CPU {alloc_cpu / alloc.elapsed * 100:.0f}% of a core, "
        f"{alloc_cpu / (2 * alloc.offered) * 1e6:.0f} us/req"
    )
    print(
        f"allocate latency from scheduled time: p50 {ms(alloc_p50)}, p99 {ms(alloc_p99)}, "
        f"max {ms(max(alloc.latencies))} (target p99 < {TARGET_ALLOC_P99_MS:.0f} ms) "
        f"{verdict(alloc_p99 * 1000 < TARGET_ALLOC_P99_MS)}"
    )
    if kind == "postgresql":
        # PostgreSQL's own work happens in its processes (SQLite's, in Loom's): both.
        def per(loop: Loop, requests: int) -> str:
            return f"{loop.db_cpu / requests * 1e6:.0f} us/req"

        print(
            "local PostgreSQL server CPU (its processes, same windows): "
            f"claim+release {per(claims.loop, 2 * claims.loop.steps)}, "
            f"renewals {per(renew, renew.steps)}, health {per(health_all, health_all.steps)}, "
            f"allocate+release {alloc_db_cpu / (2 * alloc.offered) * 1e6:.0f} us/req; "
            "Loom + PostgreSQL per lease request: "
            f"{(claims.loop.server_cpu + claims.loop.db_cpu) / (2 * claims.loop.steps) * 1e6:.0f}"
            f" us (claim+release), {(renew.server_cpu + renew.db_cpu) / renew.steps * 1e6:.0f}"
            " us (renewals)"
        )
    if args.overlap:
        print(
            f"overlap seed: {overlap_pairs} strongly overlapping pairs among the "
            f"{ALLOC_CHANGES} changes; avoid_overlap={args.avoid_overlap}; "
            f"{len(alloc.overlapping)} grants named a busy overlapping change"
        )
    print(
        f"allocation check: {len(alloc.grants)} grants over {changes_touched} changes, "
        f"errors {len(alloc.errors)}, double grants {len(problems)}"
    )
    for line in (claims.errors + alloc.errors + problems)[:10]:
        print(f"  ! {line}")
    cpu[kind] = (lease_cpu, renew_cpu)
    return not (claims.errors or alloc.errors or problems)


async def run(backends: list[tuple[str, str]], args: argparse.Namespace) -> bool:
    """Start every backend's server, measure the closed-loop phases in slices that alternate
    between the servers as well as between the phases, then each one's allocation phase."""
    started: list[Backend] = []
    try:
        for kind, url in backends:
            started.append(await start_backend(kind, url, args))
        for _ in range(args.rounds):
            for b in started:
                await closed_loop_round(b, args)
    except BaseException:
        for b in started:
            b.server.stop()
            shutil.rmtree(b.data_dir, ignore_errors=True)
        raise
    ok = True
    cpu: dict[str, tuple[float, float]] = {}
    while started:
        ok &= await finish_backend(started.pop(0), args, cpu)
    if {"sqlite", "postgresql"} <= cpu.keys():
        (pg_lease, pg_renew), (lite_lease, lite_renew) = cpu["postgresql"], cpu["sqlite"]
        ratio = pg_lease / lite_lease
        print(
            "\nLoom's CPU per lease request, PostgreSQL / SQLite (closed-loop slices alternating "
            f"between the two servers): {ratio:.2f}x (target <= {TARGET_CPU_RATIO}, issue 16) "
            f"{verdict(ratio <= TARGET_CPU_RATIO)}; renewals {pg_renew / lite_renew:.2f}x"
        )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=float, default=6.0, help="per closed-loop phase")
    parser.add_argument(
        "--rounds", type=int, default=4, help="slices each closed-loop phase is cut into"
    )
    parser.add_argument("--alloc-seconds", type=float, default=10.0)
    parser.add_argument(
        "--avoid-overlap",
        choices=("prefer", "strict", "off"),
        default=None,
        help="allocate's avoid_overlap (default: not sent, the server's prefer). Every seeded "
        "change touches the same requirement, the worst case for the overlap rule.",
    )
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="seed the allocatable changes with realistic overlaps (pairs and groups of ten "
        "sharing a requirement, one change in five without requirements) and allocate with "
        "avoid_overlap=prefer (unless --avoid-overlap says otherwise)",
    )
    parser.add_argument(
        "--distinct-requirements",
        action="store_true",
        help="seed each allocatable change with a requirement of its own (no overlaps)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (PostgreSQL only; CPU is summed over all of them)",
    )
    args = parser.parse_args(argv)
    if args.overlap and args.distinct_requirements:
        parser.error("--overlap and --distinct-requirements are exclusive")
    if args.overlap and args.avoid_overlap is None:
        args.avoid_overlap = "prefer"
    started = time.perf_counter()
    print(
        f"loom lease benchmark: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
        f"load average {load_average()}"
    )
    kinds = [b.strip() for b in args.backends.split(",") if b.strip()]
    for kind in kinds:
        if kind not in ("sqlite", "postgresql"):
            parser.error(f"unknown backend {kind!r}")
    with contextlib.ExitStack() as stack:
        backends: list[tuple[str, str]] = []
        for kind in kinds:
            if kind == "sqlite":
                tmp = Path(tempfile.mkdtemp(prefix="loom-bench-db-"))
                stack.callback(shutil.rmtree, tmp, ignore_errors=True)
                backends.append((kind, f"sqlite:///{tmp / 'loom.db'}"))
            else:
                backends.append((kind, stack.enter_context(pg_database())))
        ok = asyncio.run(run(backends, args))
    print(f"\ntotal {time.perf_counter() - started:.0f} s, load average {load_average()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
