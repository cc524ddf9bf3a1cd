"""Benchmark: ``loom import`` of the whole corpus into an empty project, end to end.

Usage (from the repository root)::

    .venv/bin/python bench/import_corpus.py [ITO_DIR] [--repeat N] [--postgres [ADMIN_URL]]

``ITO_DIR`` defaults to ``../shared/corpus/ito-dotdir`` (relative to the repository root); it is
copied to a temporary directory first and never written. A real ``loom serve`` is started on
127.0.0.1 with a SQLite database in a temporary data directory, and, with ``--postgres`` or
``LOOM_BENCH_POSTGRES_URL``, a second one on a throwaway PostgreSQL database created through
the administrative URL (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) and
dropped afterwards. Only loopback hosts are accepted.

For each database, each of the N runs (default 3) imports the copy into a fresh project:

- ``loom import`` — the CLI as a separate process (``python -m loom import --json``): process
  start, reading the tree, the HTTP requests and the server transactions; the figure a user
  sees, and the one held to the target (PRODUCT.md §4: under 10 s);
- ``import_tree`` — the same through the library in this process (no process start-up);

then the tree is imported once more into the last project (everything ``unchanged``). Best
and median wall times are printed with the counts. Every subprocess has a timeout. Exit 0
when every median meets the target, 1 when one misses, 2 on a usage or setup error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from loom.client import Client, import_tree

TARGET_SECONDS = 10.0
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "ito-dotdir"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
START_TIMEOUT = 60.0
IMPORT_TIMEOUT = 300.0
_LISTEN = re.compile(r"loom: listening on (http://\S+)")


class SetupError(Exception):
    """The benchmark could not be set up (bad arguments, server or database unavailable)."""


@dataclass
class Server:
    url: str
    admin_token: str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)
    drain: threading.Thread | None = None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.drain is not None:
            self.drain.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
    env.update(extra)
    return env


@contextmanager
def serve(data_dir: Path, database_url: str) -> Iterator[Server]:
    """A real ``loom serve`` on 127.0.0.1 and an ephemeral port, stopped on exit."""
    admin = secrets.token_urlsafe(24)
    cmd = [
        sys.executable,
        "-m",
        "loom",
        "serve",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--data-dir",
        str(data_dir),
        "--database-url",
        database_url,
        "--admin-token",
        admin,
        "--token-seed",
        secrets.token_urlsafe(24),
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_clean_env()
    )
    assert proc.stderr is not None
    server = Server("", admin, proc)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        server.log.append(line)
        match = _LISTEN.search(line)
        if match:
            server.url = match.group(1)
            break
    if not server.url:
        server.stop()
        raise SetupError("the server did not start:\n" + "".join(server.log[-20:]))

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            server.log.append(line)

    server.drain = threading.Thread(target=drain, daemon=True)
    server.drain.start()
    try:
        yield server
    finally:
        server.stop()


def _loopback(url: str) -> str:
    host = make_url(url).host or ""
    if host not in LOOPBACK:
        raise SetupError(f"refusing a non-loopback database host {host!r} (loopback only)")
    return url


@contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """Create a fresh database through ``admin_url``; drop it (forcibly) on exit."""
    name = f"loom_bench_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        raise SetupError(f"PostgreSQL unavailable: {type(exc).__name__}: {exc}") from exc
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@dataclass
class Figures:
    label: str
    times: list[float] = field(default_factory=list)

    def line(self, target: float | None) -> str:
        best, median = min(self.times), statistics.median(self.times)
        verdict = ""
        if target is not None:
            verdict = f"  (target < {target:.0f} s: {'ok' if median < target else 'MISSED'})"
        return (
            f"    {self.label:24} runs: {len(self.times)}  best: {best:6.3f} s  "
            f"median: {median:6.3f} s{verdict}"
        )


def _cli_import(server: Server, ito: Path, project: str, work: Path) -> tuple[float, Any]:
    env = _clean_env(
        LOOM_URL=server.url,
        LOOM_TOKEN=server.admin_token,
        LOOM_PROJECT=project,
        LOOM_HOLDER="bench",
        LOOM_CONFIG_HOME=str(work / "config"),
        LOOM_STATE_DIR=str(work / "state"),
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "loom", "import", str(ito), "--json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=IMPORT_TIMEOUT,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SetupError(f"loom import exited {done.returncode}: {done.stderr[-2000:]}")
    return elapsed, json.loads(done.stdout)


def _check(report: dict[str, Any], created: int, unchanged: int) -> None:
    got = (report["created"], report["updated"], report["unchanged"], report["conflicts"])
    if got != (created, 0, unchanged, []):
        raise SetupError(f"unexpected import result {got}, wanted ({created}, 0, {unchanged}, [])")


def bench_backend(
    kind: str, database_url: str, ito: Path, work: Path, repeat: int
) -> tuple[list[Figures], dict[str, Any]]:
    cli = Figures("loom import (CLI)")
    lib = Figures("import_tree (library)")
    again = Figures("re-import (unchanged)")
    report: dict[str, Any] = {}
    items = -1  # the item count is taken from the first import's report
    with serve(work / f"server-{kind}", database_url) as server:
        for run in range(repeat):
            elapsed, report = _cli_import(server, ito, f"bench/cli-{run}", work)
            items = sum(report["found"].values())
            _check(report, items, 0)
            cli.times.append(elapsed)
        for run in range(repeat):
            with Client(server.url, server.admin_token, f"bench/lib-{run}", timeout=120) as c:
                start = time.perf_counter()
                result = import_tree(c, ito)
                lib.times.append(time.perf_counter() - start)
            _check(result.to_json(), items, 0)
        elapsed, unchanged = _cli_import(server, ito, f"bench/cli-{repeat - 1}", work)
        _check(unchanged, 0, items)
        again.times.append(elapsed)
    return [cli, lib, again], report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("ito_dir", nargs="?", default=str(DEFAULT_CORPUS))
    parser.add_argument("--repeat", type=int, default=3, help="runs per database (default 3)")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_PG,
        default=os.environ.get("LOOM_BENCH_POSTGRES_URL") or None,
        metavar="ADMIN_URL",
        help="also benchmark PostgreSQL (a throwaway database created through ADMIN_URL; "
        f"default {DEFAULT_PG}; env LOOM_BENCH_POSTGRES_URL)",
    )
    args = parser.parse_args(argv)
    source = Path(args.ito_dir)
    if not source.is_dir():
        print(f"not a directory: {source}", file=sys.stderr)
        return 2
    repeat = max(1, min(args.repeat, 20))
    missed = False
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
        work = Path(tmp)
        ito = work / "corpus" / ".ito"
        shutil.copytree(source, ito, symlinks=True)
        print(f"corpus: {source} (copied to a temporary directory)")
        backends: list[tuple[str, str | None]] = [("sqlite", None)]
        if args.postgres:
            backends.append(("postgresql", args.postgres))
        report: dict[str, Any] = {}
        try:
            for kind, admin_url in backends:
                if admin_url is None:
                    figures, report = bench_backend(
                        kind, f"sqlite:///{work / 'loom.db'}", ito, work, repeat
                    )
                else:
                    with throwaway_database(_loopback(admin_url)) as url:
                        figures, report = bench_backend(kind, url, ito, work, repeat)
                print(f"  {kind}:")
                for fig in figures:
                    target = TARGET_SECONDS if fig is figures[0] else None
                    print(fig.line(target))
                    missed |= target is not None and statistics.median(fig.times) >= target
        except SetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        found = report.get("found", {})
        print(
            f"  found: {found.get('modules')} modules, {found.get('specs')} specs, "
            f"{found.get('active_changes')} active and {found.get('archived_changes')} archived "
            f"changes; {len(report.get('skipped', []))} skipped files; "
            f"{report.get('requests')} request(s) per import; created {report.get('created')}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
