"""Agents on the stream: `loom allocate --wait`, `Client.allocate(wait=)`, `loom keepalive`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ADMIN, ORG, REPO, LiveServer, wait_for
from loom.client import Client

# Real servers and 1-second bounds: with the other real-process tests, on one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("races")]

DELTA = (
    "## ADDED Requirements\n\n### Requirement: Alpha works\nThe system SHALL do alpha.\n\n"
    "#### Scenario: Alpha runs\n- **WHEN** alpha is asked\n- **THEN** alpha answers\n"
)
_REQUEST = re.compile(r'access \S+ "(\w+) (\S+) HTTP')


def _loom(server: LiveServer, tmp_path: Path, *args: str, holder: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOM_", "ITO_"))}
    env.update(
        LOOM_URL=server.url,
        LOOM_TOKEN=ADMIN,
        LOOM_PROJECT=f"{ORG}/{REPO}",
        LOOM_HOLDER=holder,
        LOOM_CONFIG_HOME=str(tmp_path / "config"),
        LOOM_STATE_DIR=str(tmp_path / f"state-{holder}"),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "loom", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def _requests(server: LiveServer) -> list[tuple[str, str]]:
    out = []
    for line in list(server.log):
        m = _REQUEST.search(line)
        if m:
            out.append((m.group(1), m.group(2).split("?")[0]))
    return out


def test_allocate_wait_wakes_within_a_second_and_costs_no_requests_while_waiting(
    live_server_on: LiveServer, tmp_path: Path
) -> None:
    server = live_server_on
    with Client(server.url, ADMIN, f"{ORG}/{REPO}", holder="editor") as c:
        c.push("001-01_alpha", revision="", proposal="# Alpha\n")  # a draft: not available
        proc = _loom(
            server,
            tmp_path,
            "allocate",
            "--wait",
            "--wait-timeout",
            "60",
            "--json",
            holder="agent-w",
        )
        try:
            stream = f"/api/v1/projects/{ORG}/{REPO}/events/stream"
            allocate = f"/api/v1/projects/{ORG}/{REPO}/allocate"
            wait_for(lambda: ("POST", allocate) in _requests(server))
            before = _requests(server)
            time.sleep(2.0)  # waiting: the server must see nothing from the agent
            assert _requests(server) == before
            assert before.count(("GET", stream)) == 1 and before.count(("POST", allocate)) == 1
            assert proc.poll() is None
            # Make it ready (proposal + spec delta + a task), then time the wake-up.
            c.push(
                "001-01_alpha",
                revision="1",
                proposal="# Alpha\n",
                tasks="- [ ] 1.1 Do it\n",
                specs=[("alpha", DELTA)],
            )
            pushed = time.monotonic()
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the first line of the JSON answer
            woke = time.monotonic() - pushed
            line += proc.stdout.read()
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        claim = json.loads(line)["claim"]
        assert claim["change_id"] == "001-01_alpha" and claim["holder"] == "agent-w"
        assert woke < 1.0, f"woke {woke:.3f}s after the push"
        assert c.get_lease("001-01_alpha").holder == "agent-w"


def test_allocate_wait_times_out_as_no_work_holding_nothing(
    live_server: LiveServer, tmp_path: Path
) -> None:
    proc = _loom(
        live_server,
        tmp_path,
        "allocate",
        "--wait",
        "--wait-timeout",
        "0.5",
        "--json",
        holder="agent-w",
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert json.loads(out) == {"claim": None}
    with Client(live_server.url, ADMIN, f"{ORG}/{REPO}") as c:
        assert c.list_leases() == []


def test_client_allocate_wait_takes_a_released_lease(live_server_on: LiveServer) -> None:
    url = live_server_on.url
    with Client(url, ADMIN, f"{ORG}/{REPO}", holder="first") as first:
        first.push(
            "001-01_alpha",
            revision="",
            proposal="# a\n",
            tasks="- [ ] 1.1 x\n",
            specs=[("alpha", DELTA)],
        )
        assert first.allocate().claim is not None
        result: list[Any] = []
        with Client(url, ADMIN, f"{ORG}/{REPO}", holder="second") as second:
            waiter = threading.Thread(target=lambda: result.append(second.allocate(wait=30)))
            waiter.start()
            wait_for(lambda: any("allocate" in p for _, p in _requests(live_server_on)[2:]))
            first.release("001-01_alpha")
            waiter.join(timeout=30)
    assert result and result[0].claim is not None
    assert result[0].claim.holder == "second"


def test_keepalive_stops_when_its_lease_is_force_released(
    live_server_on: LiveServer, tmp_path: Path
) -> None:
    """The heartbeat is 100 s away: the stream is what tells keepalive, within seconds."""
    server = live_server_on
    with Client(server.url, ADMIN, f"{ORG}/{REPO}", holder="admin") as admin:
        admin.push("001-01_alpha", revision="", proposal="# a\n", tasks="- [ ] 1.1 x\n")
        proc = _loom(
            server,
            tmp_path,
            "keepalive",
            "001-01_alpha",
            "--ttl",
            "300",
            "--",
            sys.executable,
            "-c",
            "import time; time.sleep(120)",
            holder="agent-k",
        )
        try:
            wait_for(lambda: any(p.endswith("/events/stream") for _, p in _requests(server)))
            wait_for(lambda: admin.get_lease("001-01_alpha").holder == "agent-k")
            admin.release("001-01_alpha", force=True)
            started = time.monotonic()
            code = proc.wait(timeout=30)
            took = time.monotonic() - started
            assert proc.stderr is not None
            stderr = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
    assert code == 3
    assert "lease on 001-01_alpha lost" in stderr and "force-released by @admin" in stderr
    assert took < 20
