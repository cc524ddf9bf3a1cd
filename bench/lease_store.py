"""Benchmark: Loom's CPU per lease request below HTTP, on SQLite and PostgreSQL.

Usage (from the repository root)::

    .venv/bin/python bench/lease_store.py [--backends sqlite,postgresql] [--requests 8000]

``bench/leases.py`` measures whole requests over HTTP; this one isolates the store path that
separates the engines. In one process, on uvloop, it builds the app on a throwaway database
(as ``loom serve`` would, migrations included), seeds 16 changes, each claimed by its own
holder, then runs the lease use case the claim route runs (``loom.service.leases.claim``,
``release``) through ``Database.run_write`` exactly as ``loom.api.access.write`` calls it for
an unkeyed lease request (``batch=True``; on PostgreSQL ``on_loop=True``: the event loop
path with commit groups), from 16 coroutines at once, and prints the process's CPU time
(user + system, ``getrusage``) per call:

- renewals: each holder claims its own change again (a compare-and-set on PostgreSQL);
- claim/release: each holder alternates release and claim (two audit events per pair).

PostgreSQL's own processes are not counted (``bench/leases.py`` prints theirs). Each figure
is the best of ``--rounds`` rounds (the machine's other load only ever adds to it).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import resource
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvloop
from _harness import ADMIN, cpu_steal, pg_database, settings

from loom.api.access import _rendered
from loom.api.app import create_app
from loom.service import leases
from loom.service._context import Actor, Project

AGENTS = 16
ORG, REPO = "bench", "store"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _change(i: int) -> str:
    return f"001-{i + 1:02d}_lease-{i}"


async def _measure(url: str, requests: int, rounds: int) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="loom-bench-store-"))
    app = create_app(settings(data_dir, url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {ADMIN}"}
        base = f"/api/v1/projects/{ORG}/{REPO}"
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", headers=headers
        ) as client:
            items = [
                {"id": _change(i), "proposal": "# p\n", "tasks": "", "specs": []}
                for i in range(AGENTS)
            ]
            seeded = await client.post(
                f"{base}/import", json={"mode": "create-only", "changes": items}
            )
            seeded.raise_for_status()
            for i in range(AGENTS):
                claimed = await client.post(
                    f"{base}/changes/{_change(i)}/claim", json={"holder": f"agent-{i}"}
                )
                claimed.raise_for_status()
        ctx = app.state.ctx
        db = ctx.db
        on_loop = db.kind == "postgresql"
        project = Project(ORG, REPO)

        def calls(i: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
            holder = f"agent-{i}"
            claim = functools.partial(
                leases.claim, ctx, project, _change(i), holder, None, token_name=None
            )
            release = functools.partial(
                leases.release,
                ctx,
                project,
                _change(i),
                holder,
                force=False,
                actor=Actor(holder=holder),
            )
            return claim, release

        async def agent(i: int, n: int, alternate: bool) -> None:
            claim, release = calls(i)
            for k in range(n):
                call = release if alternate and k % 2 == 0 else claim
                await db.run_write(_rendered, call, None, batch=True, on_loop=on_loop)

        async def run(n: int, alternate: bool) -> float:
            started = _cpu()
            await asyncio.gather(*(agent(i, n // AGENTS, alternate) for i in range(AGENTS)))
            return (_cpu() - started) / (n // AGENTS * AGENTS) * 1e6

        await run(AGENTS * 50, alternate=False)  # warm-up: connections, prepared statements
        await run(AGENTS * 50, alternate=True)
        figures = {
            "renewal": min([await run(requests, alternate=False) for _ in range(rounds)]),
            "claim/release": min([await run(requests, alternate=True) for _ in range(rounds)]),
        }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--requests", type=int, default=8000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"loom lease store benchmark: {AGENTS} coroutines, uvloop, best of {args.rounds} rounds")
    cpu_steal()  # from here
    results: dict[str, dict[str, float]] = {}
    for kind in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if kind == "sqlite":
            url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='loom-bench-db-')) / 'loom.db'}"
            results[kind] = uvloop.run(_measure(url, args.requests, args.rounds))
        else:
            with pg_database() as pg_url:
                results[kind] = uvloop.run(_measure(pg_url, args.requests, args.rounds))
        figures = ", ".join(f"{name} {us:.1f} us" for name, us in results[kind].items())
        print(f"{kind:<10} CPU per call: {figures}")
    if {"sqlite", "postgresql"} <= results.keys():
        ratios = ", ".join(
            f"{name} {results['postgresql'][name] / results['sqlite'][name]:.2f}x"
            for name in results["sqlite"]
        )
        print(f"PostgreSQL / SQLite: {ratios}")
    steal = cpu_steal()
    if steal:
        print(steal)
    return 0


if __name__ == "__main__":
    sys.exit(main())
