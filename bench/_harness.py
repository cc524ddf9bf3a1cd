"""What the HTTP benchmarks share: a real ``loom serve`` on a throwaway database, and the
percentile they report. (Imported by bench/api.py and bench/leases.py; not a benchmark.)"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from loom.settings import Settings

ADMIN = "bench-admin-token"
SEED = "bench-seed"
PG_ADMIN_URL = os.environ.get(
    "LOOM_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
_LISTEN = re.compile(r"loom: listening on (http://\S+)")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None
        return host

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of the server process and its live descendants
        (``--workers``), from Linux ``/proc``; 0 elsewhere."""
        ticks = 0
        pending = [self.process.pid]
        while pending:
            pid = pending.pop()
            fields = _proc_stat(pid)
            if fields is None:
                continue
            ticks += int(fields[11]) + int(fields[12])
            pending.extend(_children(pid))
        return ticks / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def postgres_cpu_seconds() -> float:
    """User + system CPU time so far of every process of this machine whose name starts with
    ``postgres`` (a local PostgreSQL server's backends and helpers), from Linux ``/proc``; 0
    elsewhere. Meaningful when the server is local and nothing else uses it meanwhile."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        if name.startswith("postgres"):
            fields = text.rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_times() -> tuple[int, int] | None:
    """(steal, total) clock ticks of all CPUs so far, from Linux ``/proc/stat``; None
    elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user)
    return (fields[7], sum(fields)) if len(fields) == 8 else None


_STEAL_MARK = [_cpu_times()]


def cpu_steal() -> str:
    """The share of this machine's CPU time the hypervisor gave to other guests (steal,
    ``/proc/stat``) since the previous call, or since this module was imported: ``""`` when
    unknown or too short to tell. On a shared virtual machine, a run with a high steal
    measures the host's other tenants as much as Loom; each benchmark prints it with the
    load average."""
    now, before = _cpu_times(), _STEAL_MARK[0]
    _STEAL_MARK[0] = now
    if now is None or before is None or now[1] - before[1] < 100:
        return ""
    return f"CPU steal {100 * (now[0] - before[0]) / (now[1] - before[1]):.0f}%"


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def start_server(data_dir: Path, database_url: str, *extra: str) -> Server:
    """``python -m loom serve`` on 127.0.0.1 and an ephemeral port; its log in the data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
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
        ADMIN,
        "--token-seed",
        SEED,
        *extra,
    ]
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = _LISTEN.search(log_path.read_text(errors="replace"))
        if m:
            return Server(m.group(1), proc, log_path)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start:\n" + log_path.read_text(errors="replace"))


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database (through ``LOOM_BENCH_POSTGRES_URL``), dropped on exit."""
    name = f"loom_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def settings(data_dir: Path, database_url: str) -> Settings:
    """The settings of an in-process app (no ``loom serve``) with the benchmarks' tokens."""
    from pydantic import SecretStr

    from loom.settings import Settings

    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        admin_tokens=(SecretStr(ADMIN),),
        token_seed=SecretStr(SEED),
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
