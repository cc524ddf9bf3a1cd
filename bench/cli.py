"""Benchmark: how fast the ``loom`` command starts and finishes a typical agent command.

Usage (from the repository root)::

    .venv/bin/python bench/cli.py [--runs 20]

Measures the wall time of whole ``loom`` processes (the console script of this virtualenv),
``--runs`` times each, and prints the median and the spread:

1. ``loom --version`` (target: median < 80 ms);
2. ``loom tasks start CHANGE 1.1`` against a real ``loom serve`` on SQLite (loopback), each
   run on its own change, claimed beforehand by the same holder and remembered as ``loom
   claim`` does, so the command sends the fencing token as an agent's would (target: median
   < 150 ms);
3. for reference, ``python -c pass`` (the interpreter's own start-up on this machine).

The commands run as an installed package does: with compiled bytecode. The child processes
get ``PYTHONPYCACHEPREFIX`` (a throwaway directory, so the source tree is not written to) and
never ``PYTHONDONTWRITEBYTECODE``, and each command runs once untimed first; otherwise every
run would compile Loom's own modules again (~40 ms).

The runs are sequential, so the figure is one agent's latency; on a shared machine it moves
with other load (the load average is printed). The CPU time of each process (user + system,
from ``getrusage``) is printed next to it: it moves far less with other load.
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
from _harness import ADMIN, cpu_steal, start_server

from loom.client import ClaimResult, LeaseStore

ORG, REPO = "bench", "cli"
P = f"/api/v1/projects/{ORG}/{REPO}"
HOLDER = "bench-agent"
LOOM = str(Path(sys.executable).with_name("loom"))
TASKS = "# Tasks\n\n- [ ] 1.1 Do the thing\n"
TARGET_VERSION_MS = 80.0
TARGET_TASK_START_MS = 150.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall ms, CPU ms: user + system) of one process run to completion."""
    cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed, (_children_cpu() - cpu) * 1000


def _report(label: str, runs: list[tuple[float, float]], target: float | None) -> None:
    wall = [w for w, _ in runs]
    median = statistics.median(wall)
    verdict = ""
    if target is not None:
        verdict = f"  (target median < {target:.0f} ms: {'met' if median < target else 'MISSED'})"
    print(
        f"{label:<26} runs {len(wall):>3}  wall median {median:6.1f} ms "
        f"(min {min(wall):6.1f}, max {max(wall):6.1f}); "
        f"CPU median {statistics.median(c for _, c in runs):6.1f} ms{verdict}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    runs = args.runs
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"loom CLI benchmark: {os.cpu_count()} CPUs, load average {load}; {LOOM}")
    cpu_steal()  # from here
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LOOM_", "ITO_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    with tempfile.TemporaryDirectory(prefix="loom-bench-cli-") as tmp:
        root = Path(tmp)
        work = root / "work"
        work.mkdir()
        env = {
            **clean,
            "HOME": str(root / "home"),
            "XDG_CONFIG_HOME": str(root / "xdg"),
            "PYTHONPYCACHEPREFIX": str(root / "pycache"),
        }
        python = [sys.executable, "-c", "pass"]
        _timed(python, env, work)  # untimed: writes the bytecode
        _report("python -c pass", [_timed(python, env, work) for _ in range(runs)], None)
        _timed([LOOM, "--version"], env, work)
        _report(
            "loom --version",
            [_timed([LOOM, "--version"], env, work) for _ in range(runs)],
            TARGET_VERSION_MS,
        )
        server = start_server(root / "server", f"sqlite:///{root / 'server' / 'loom.db'}")
        try:
            ids = [f"001-{i + 1:02d}_cli-{i}" for i in range(runs + 1)]  # the first: warm-up
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
            ) as admin:
                items = [
                    {"id": cid, "proposal": f"# {cid}\n", "tasks": TASKS, "specs": []}
                    for cid in ids
                ]
                admin.post(
                    f"{P}/import", json={"mode": "create-only", "changes": items}
                ).raise_for_status()
                # The agent's leases, remembered as `loom claim` does (with the fencing
                # token the command then sends).
                leases = LeaseStore(root / "state", f"{ORG}/{REPO}")
                for cid in ids:
                    claim = admin.post(f"{P}/changes/{cid}/claim", json={"holder": HOLDER})
                    leases.save(ClaimResult.model_validate(claim.raise_for_status().json()))
            agent_env = {
                **env,
                "LOOM_URL": server.url,
                "LOOM_TOKEN": ADMIN,
                "LOOM_PROJECT": f"{ORG}/{REPO}",
                "LOOM_HOLDER": HOLDER,
                "LOOM_STATE_DIR": str(root / "state"),
            }
            _timed([LOOM, "tasks", "start", ids[0], "1.1"], agent_env, work)
            times = [
                _timed([LOOM, "tasks", "start", cid, "1.1"], agent_env, work) for cid in ids[1:]
            ]
            _report("loom tasks start (SQLite)", times, TARGET_TASK_START_MS)
        finally:
            server.stop()
    steal = cpu_steal()
    if steal:
        print(f"{steal} during the runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
