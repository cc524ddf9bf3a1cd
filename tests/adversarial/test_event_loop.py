"""Finding 1 and 4 against a real server: while a hostile request runs, ``/health`` answers
in < 50 ms at p99 (the parsing, merging and rendering run off the event loop)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ADMIN, ORG, REPO, LiveServer

pytestmark = pytest.mark.slow

H = {"Authorization": f"Bearer {ADMIN}"}
P = f"/api/v1/projects/{ORG}/{REPO}"
SPACES_TASKS = (
    "## Wave 1\n- **Depends On**: None\n\n### a:" + " " * 40_000 + "\n"
    "### Task 1.1: t\n- **Updated At**: 2026-01-01\n- **Status**: [ ] pending\n"
)
MANY_REQUIREMENTS = "## ADDED Requirements\n\n" + "".join(
    f"### Requirement: r{i}\nThe system SHALL r{i}.\n\n#### Scenario: s\n- x\n\n"
    for i in range(20_000)
)


_PROBE = """
import json, sys, time, pathlib, httpx
stop = pathlib.Path(sys.argv[2])
out = []
with httpx.Client(base_url=sys.argv[1], timeout=30) as c:
    c.get("/api/v1/health")
    print("ready", flush=True)
    while not stop.exists():
        start = time.perf_counter()
        assert c.get("/api/v1/health").status_code == 200
        out.append(time.perf_counter() - start)
        time.sleep(0.002)
print(json.dumps(out), flush=True)
"""


def _health_while(
    server: LiveServer, tmp_path: Path, hostile: Callable[[httpx.Client], None] | None
) -> list[float]:
    """Latencies of /health, probed back to back by another process (its own GIL: the test
    process encodes megabytes of JSON) while ``hostile`` runs (None: for one second)."""
    stop = tmp_path / f"stop-{time.monotonic_ns()}"
    probe = subprocess.Popen(
        [sys.executable, "-c", _PROBE, server.url, str(stop)], stdout=subprocess.PIPE, text=True
    )
    assert probe.stdout is not None
    assert probe.stdout.readline().strip() == "ready"
    try:
        if hostile is None:
            time.sleep(1.0)
        else:
            with httpx.Client(base_url=server.url, headers=H, timeout=120) as c:
                hostile(c)
    finally:
        stop.touch()
        out, _ = probe.communicate(timeout=60)
    assert probe.returncode == 0
    return list(json.loads(out.strip().splitlines()[-1]))


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()


def test_health_stays_fast_during_hostile_tasks_and_a_huge_archive(
    live_server: LiveServer, tmp_path: Path
) -> None:
    def spaces(c: httpx.Client) -> None:
        body = {"proposal": "# p\n", "tasks": SPACES_TASKS, "specs": [], "revision": ""}
        _ok(c.post(f"{P}/changes/001-01_spaces/sync", json=body))
        for _ in range(3):
            _ok(c.get(f"{P}/changes/001-01_spaces/tasks"))
            _ok(c.get(f"{P}/changes/001-01_spaces"))
        _ok(c.post(f"{P}/changes/001-01_spaces/tasks/1.1/start"))

    def archive(c: httpx.Client) -> None:
        body = {
            "proposal": "# p\n",
            "tasks": None,
            "specs": [["big", MANY_REQUIREMENTS]],
            "revision": "",
        }
        _ok(c.post(f"{P}/changes/001-02_many/sync", json=body))
        _ok(c.post(f"{P}/changes/001-02_many/archive"))
        spec = _ok(c.get(f"{P}/specs/big"))
        assert spec["markdown"].count("### Requirement: ") == 20_000

    # The target is 50 ms; on a machine shared with other loads, the idle server's own p99
    # (measured the same way, just before) is added, so only the server's stalls count.
    # Before the fix these requests stalled /health for 8.4 s and 7.5 s.
    idle = _p99(_health_while(live_server, tmp_path, None))
    for hostile in (spaces, archive):
        latencies = _health_while(live_server, tmp_path, hostile)
        assert len(latencies) >= 5
        p99 = _p99(latencies)
        assert p99 < 0.050 + idle, (hostile.__name__, p99, idle, max(latencies))
