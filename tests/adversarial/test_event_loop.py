"""Finding 1 and 4 against a real server: while a hostile request runs, ``/health`` answers
in < 50 ms at p99 (the parsing, merging and rendering run off the event loop)."""

from __future__ import annotations

import functools
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.routes_table import EVENT
from conftest import ADMIN, ORG, REPO, LiveServer, ui_login

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
    _favour(probe.pid)
    assert probe.stdout is not None
    assert probe.stdout.readline().strip() == "ready"
    try:
        if hostile is None:
            time.sleep(1.0)
        elif hostile is _busy_machine:
            # One core kept busy by another process (bounded: it stops by itself).
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass",
                ],
                check=True,
                timeout=30,
            )
        else:
            # The test process's own collections stay out of the window: decoding a
            # response of 54,000 events ran several full collections here, CPU taken from
            # the server being measured on these two cores.
            gc.disable()
            try:
                with httpx.Client(base_url=server.url, headers=H, timeout=120) as c:
                    hostile(c)
            finally:
                gc.enable()
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
    def spaces(c: httpx.Client, n: int) -> None:
        body = {"proposal": "# p\n", "tasks": SPACES_TASKS, "specs": [], "revision": ""}
        change = f"001-{n:02d}_spaces"
        _ok(c.post(f"{P}/changes/{change}/sync", json=body))
        for _ in range(3):
            _ok(c.get(f"{P}/changes/{change}/tasks"))
            _ok(c.get(f"{P}/changes/{change}"))
        _ok(c.post(f"{P}/changes/{change}/tasks/1.1/start"))

    def archive(c: httpx.Client, n: int) -> None:
        body = {
            "proposal": "# p\n",
            "tasks": None,
            "specs": [[f"big-{n}", MANY_REQUIREMENTS]],
            "revision": "",
        }
        change = f"001-{10 + n:02d}_many"
        _ok(c.post(f"{P}/changes/{change}/sync", json=body))
        _ok(c.post(f"{P}/changes/{change}/archive"))
        spec = _ok(c.get(f"{P}/specs/big-{n}"))
        assert spec["markdown"].count("### Requirement: ") == 20_000

    # Before the fix these requests stalled /health for 8.4 s and 7.5 s.
    _assert_health_fast(live_server, tmp_path, spaces, archive)


def _busy_machine(_c: httpx.Client) -> None:
    """A marker for :func:`_health_while`: the baseline with one core busy elsewhere."""


def _assert_health_fast(
    server: LiveServer,
    tmp_path: Path,
    *hostiles: Callable[[httpx.Client, int], None],
    busy_baseline: bool = False,
) -> None:
    """/health p99 < 50 ms during each hostile phase. On a machine shared with other loads,
    the idle server's own p99 (measured the same way, just before) is added, so only the
    server's stalls count. ``busy_baseline``: measured while another process keeps one core
    busy, as a hostile request that works for seconds on a worker thread does (on two
    cores, the probe, the client and that thread then share what is left).

    A phase over the bound is measured again, baseline included (``hostile(c, n)``: the same
    requests on fresh ids), and fails only when it is over twice: a stall the server causes
    comes back every time, while a burst of other load on a shared machine (the other test
    worker) seldom hits both runs, the same confirm-before-failing rule as
    ``_hostile.growth``. A run over the bound during which the hypervisor gave more than
    :data:`_MAX_STEAL` of this virtual machine's CPU time to other guests (steal,
    ``/proc/stat``) does not count (every process here stalls then, the server's loop
    included); at most :data:`_RUNS` runs in all, and no verdict in them is a failure."""
    baseline = _busy_machine if busy_baseline else None
    _favour(server.process.pid)
    idle = _p99(_health_while(server, tmp_path, baseline))
    for hostile in hostiles:
        runs: list[tuple[float, ...]] = []
        over = 0
        for attempt in range(1, _RUNS + 1):
            if attempt > 1:
                idle = _p99(_health_while(server, tmp_path, baseline))
            before = _cpu_times()
            latencies = _health_while(server, tmp_path, functools.partial(hostile, n=attempt))
            steal = _steal_share(before, _cpu_times())
            assert len(latencies) >= 5
            p99 = _p99(latencies)
            runs.append((round(p99, 4), round(idle, 4), round(max(latencies), 4), steal))
            if p99 < 0.050 + idle:
                break
            if steal > _MAX_STEAL:
                continue  # the host's doing, not the server's: measure again
            over += 1
            if over == 2:
                raise AssertionError((hostile.__name__, _RUNS_SAID, runs))
        else:
            raise AssertionError((hostile.__name__, "no verdict in", _RUNS_SAID, runs))


def _favour(pid: int) -> None:
    """Let ``pid`` (each of its threads, and the threads they start later, which inherit
    it) run ahead of the suite's other processes on these two cores, where it is allowed
    (root, as in CI). The verdict is about the server's own stalls: two other test workers
    busy beside it stretched each of its stalls, a garbage collection of a few tens of
    milliseconds included, by the share of a core it got, and failed the bound though the
    server's behaviour had not changed (seen in full runs: p99 66-110 ms, idle p99 7-11 ms;
    alone, under 30 ms). Without the privilege it runs as before."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.setpriority(os.PRIO_PROCESS, int(tid), -10)
    except (OSError, ValueError):
        pass


_RUNS = 4
_MAX_STEAL = 0.2
_RUNS_SAID = "(p99, idle p99, max, steal share) per run"


def _cpu_times() -> tuple[int, int] | None:
    """(steal, total) clock ticks of all CPUs (Linux ``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (fields[7], sum(fields)) if len(fields) == 8 else None


def _steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float:
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def _event(i: int, pad: str) -> dict[str, Any]:
    return {**EVENT, "entity_id": str(i), "meta": {"note": pad, "n": [i, i / 2, None, True, "é"]}}


def test_health_stays_fast_during_max_size_bodies_and_renders(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """Bodies near --max-body-bytes are decoded off the event loop, in steps (a 9 MiB batch
    was one ~100 ms decode on the loop), keyed or not, and large lists render on the
    thread that read them."""
    pad = "x" * 120
    batch = json.dumps(
        {"events": [_event(i, pad) for i in range(27_000)], "idempotency_key": "big"}
    ).encode()
    assert 8 * 2**20 < len(batch) < 10 * 2**20
    spec = "## Purpose\n" + "The system SHALL do a thing.\n" * 60_000  # 1.7 MB, 60k escapes
    push = json.dumps(
        {"proposal": "# p\n", "specs": [[f"cap-{n}", spec] for n in range(5)], "revision": ""}
    ).encode()
    assert 8 * 2**20 < len(push) < 10 * 2**20
    json_h = {"Content-Type": "application/json"}

    def large_bodies(c: httpx.Client, n: int) -> None:
        own = batch.replace(b'"big"', f'"big-{n}"'.encode())
        r = c.post(f"{P}/events", content=own, headers=json_h)
        assert _ok(r)["accepted"] == 27_000, r.text[:300]
        keyed = {**json_h, "Idempotency-Key": f"k-batch-{n}"}
        _ok(c.post(f"{P}/events", content=batch.replace(b'"big"', b'"big2"'), headers=keyed))
        _ok(c.post(f"{P}/changes/001-{n:02d}_big/sync", content=push, headers=json_h))

    def large_renders(c: httpx.Client, n: int) -> None:
        assert len(_ok(c.get(f"{P}/events"))) > 54_000  # and the push's event
        assert len(_ok(c.get(f"{P}/events", params={"limit": 5000}))) == 5000

    _assert_health_fast(live_server, tmp_path, large_bodies, large_renders, busy_baseline=True)


def test_health_stays_fast_while_the_dashboard_renders_a_large_artifact(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """The change page renders every artifact from markdown (markdown-it-py: ~100-200 KB a
    second): that ran on the event loop, seconds for one view of a large proposal."""
    proposal = "".join(
        f"## Part {i}\n\nSome *text* with `code` and [a link](https://x/{i}).\n\n- a\n- b\n\n"
        for i in range(800)
    )
    assert len(proposal) > 50_000  # on the loop: about a second
    with httpx.Client(base_url=live_server.url, headers=H, timeout=120) as c:
        _ok(c.post(f"{P}/changes/001-01_md/sync", json={"proposal": proposal, "specs": []}))

    def view(c: httpx.Client, n: int) -> None:
        with httpx.Client(base_url=live_server.url, timeout=120) as ui:
            r = ui_login(ui, ADMIN)
            assert r.status_code == 303, r.text[:200]
            page = ui.get(f"/ui/{ORG}/{REPO}/changes/001-01_md")
            assert page.status_code == 200 and "<h2>Part 799</h2>" in page.text

    _assert_health_fast(live_server, tmp_path, view)
