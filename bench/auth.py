"""Micro-benchmark: the per-request cost of the access check, by kind of token.

Usage (from the repository root)::

    .venv/bin/python bench/auth.py [--iterations 20000] [--repeats 5]

Runs ``loom.api.access.project_access`` — what every project route, the lease routes
included, calls first — in-process on a claim request, for the admin token, an Ito HMAC
project token and a named token (``loom_…``, answered from the per-process cache as almost
every request is), and prints the best of ``--repeats`` runs in microseconds per call.
CPU time in-process is far less sensitive than server throughput to other load on a shared
machine. Point ``PYTHONPATH`` at another checkout's ``src`` to measure that one (a checkout
without named tokens skips that row).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _harness import ADMIN, SEED
from _harness import settings as bench_settings
from starlette.requests import Request

from loom.api.auth import derive_project_token
from loom.service._context import ServiceContext
from loom.store import migrate
from loom.store.engine import Database

ORG, REPO, CHANGE = "bench", "auth", "001-01_bench"


def _request(app: Any, token: str) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/api/v1/projects/{ORG}/{REPO}/changes/{CHANGE}/claim",
        "headers": [
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
        ],
        "path_params": {"org": ORG, "repo": REPO, "change_id": CHANGE},
        "app": app,
    }
    return Request(scope)


async def _time(app: Any, token: str, iterations: int) -> float:
    from loom.api.access import project_access

    for _ in range(200):  # warm caches (validation memo, token cache)
        await project_access(_request(app, token))
    started = time.perf_counter()
    for _ in range(iterations):
        await project_access(_request(app, token))
    return (time.perf_counter() - started) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="loom-bench-auth-"))
    url = f"sqlite:///{tmp / 'loom.db'}"
    settings = bench_settings(tmp, url)
    db = Database(url)
    migrate.upgrade(db)
    ctx = ServiceContext(db)
    app = SimpleNamespace(state=SimpleNamespace(settings=settings, ctx=ctx))
    tokens: dict[str, str] = {
        "admin token": ADMIN,
        "Ito project token": derive_project_token(SEED, ORG, REPO),
    }
    try:
        from loom.domain.tokens import Target
        from loom.service.tokens import create_token

        _, secret = create_token(ctx, "bench", Target("project", ORG, REPO))
        tokens["named token (cached)"] = secret
    except ImportError:
        print("(this checkout has no named tokens)")
    for label, token in tokens.items():
        best = min(asyncio.run(_time(app, token, args.iterations)) for _ in range(args.repeats))
        print(f"{label:22s} {best * 1e6:6.2f} us per access check")
    db.dispose()


if __name__ == "__main__":
    main()
