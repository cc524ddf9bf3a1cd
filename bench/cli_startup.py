"""Benchmark: wall time of short ``loom`` commands (process start to exit).

Usage (from the repository root)::

    .venv/bin/python bench/cli_startup.py [--runs 10]

Starts a real ``loom serve`` on a throwaway SQLite database (loopback, ephemeral port) with
one small project, then runs each command ``--runs`` times as a fresh process
(``python -m loom ...``) and prints the median wall time (and its spread) and the median CPU
time (user + system, less sensitive to other load on the machine). Measured:

- ``loom --help`` (imports and help rendering only);
- ``loom changes`` (configuration, one HTTP request, a table).

Absolute times on a shared machine are noise; compare runs made one after the other. To time
another checkout, put its ``src`` first on ``PYTHONPATH``. As in ``bench/cli.py``, the
commands run with compiled bytecode (``PYTHONPYCACHEPREFIX`` in the temporary directory, one
untimed run of each first), as an installed package does.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _harness import ADMIN, start_server

PROJECT = "bench/cli"


def _seed(url: str) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        for n in range(1, 6):
            body = {"proposal": "# P\n", "tasks": "- [ ] 1.1 do it\n", "specs": [], "revision": ""}
            r = http.post(f"/api/v1/projects/{PROJECT}/changes/001-0{n}_c{n}/sync", json=body)
            r.raise_for_status()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system) of ``runs`` fresh processes."""
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(runs):
        start, cpu_start = time.perf_counter(), _cpu()
        done = subprocess.run(argv, env=env, capture_output=True, check=False)
        wall.append(time.perf_counter() - start)
        cpu.append(_cpu() - cpu_start)
        if done.returncode != 0:
            raise SystemExit(f"{argv} failed: {done.stderr.decode(errors='replace')}")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), f"sqlite:///{Path(tmp) / 'loom.db'}")
        try:
            _seed(server.url)
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("LOOM_", "ITO_")) and k != "PYTHONDONTWRITEBYTECODE"
            }
            env.update(
                PYTHONPYCACHEPREFIX=str(Path(tmp) / "pycache"),
                LOOM_URL=server.url,
                LOOM_TOKEN=ADMIN,
                LOOM_PROJECT=PROJECT,
                LOOM_HOLDER="bench",
                HOME=tmp,
                XDG_STATE_HOME=tmp,
                XDG_CONFIG_HOME=tmp,
            )
            loom = [sys.executable, "-m", "loom"]
            print(f"runs per command: {args.runs}")
            for label, argv in (
                ("loom --help", [*loom, "--help"]),
                ("loom changes", [*loom, "changes"]),
            ):
                _time(argv, env, 1)  # untimed: writes the bytecode
                wall, cpu = _time(argv, env, args.runs)
                print(
                    f"  {label:14} wall median {statistics.median(wall) * 1000:6.0f} ms"
                    f" (min {min(wall) * 1000:5.0f}, max {max(wall) * 1000:5.0f})"
                    f"  cpu median {statistics.median(cpu) * 1000:6.0f} ms"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
