"""CLI against a real server: leases (exit 3), pull/push/archive, events, keepalive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loom.client import Client, NotFound

from ._support import Loom, make_tree, spawn_loom, stop_process


@pytest.fixture
def server(shared_server: Any) -> Any:
    """These tests need *a* server: one for the module, a project per test."""
    return shared_server


@pytest.fixture
def project(own_project: str) -> str:
    return own_project


pytestmark = pytest.mark.slow


def test_claim_heartbeat_release_allocate(loom: Loom, tmp_path: Path, client: Client) -> None:
    loom("import", str(make_tree(tmp_path / "src")))
    c = "001-01_alpha"
    text = loom("claim", c, "--ttl", "60").stdout
    assert text.startswith(f"claimed {c}: holder agent-a") and "fencing token 1" in text
    claim = loom.json("claim", c)  # renewal by the same holder
    assert claim["holder"] == "agent-a" and claim["fencing_token"] == 1
    assert loom.json("heartbeat", c)["fencing_token"] == 1
    assert "renewed" in loom("heartbeat", c).stdout
    conflict = loom("claim", c, "--holder", "agent-b", code=3)
    assert "held by agent-a" in conflict.stderr
    envelope = json.loads(loom("heartbeat", c, "--holder", "agent-b", "--json", code=3).stdout)
    assert envelope["exit_code"] == 3 and envelope["code"] == "conflict"
    # A write by another holder is refused while the lease is active.
    loom("tasks", "start", c, "1.1", "--holder", "agent-b", code=3)
    assert loom.json("changes")[0]["lease"]["holder"] == "agent-a"
    # Force release needs the admin token and releases another holder's lease.
    loom("release", c, "--holder", "agent-b", code=3)
    assert loom.json("release", c, "--holder", "agent-b", "--force")["released"] is True
    assert "no lease held" in loom("release", c).stdout

    allocated = loom("allocate", "--ttl", "60")
    assert allocated.stdout.strip() == c and "fencing token 2" in allocated.stderr
    second = loom.json("allocate", "--holder", "agent-b")
    assert second["claim"]["change_id"] == "001-03_gamma"
    assert loom.json("allocate", "--holder", "agent-c") == {"claim": None}
    none = loom("allocate", "--holder", "agent-c")
    assert none.stdout == "" and "no work" in none.stderr
    assert loom.json("allocate", "--module", "002") == {"claim": None}
    # The fencing token remembered by `loom allocate` is sent on writes.
    assert client.get_lease(c).fencing_token == 2
    assert loom.json("tasks", "start", c, "1.1")["task"]["status"] == "in-progress"


def test_pull_push_conflict_and_backups(
    loom: Loom, tmp_path: Path, client: Client, base_env: dict[str, str]
) -> None:
    loom("import", str(make_tree(tmp_path / "src")))
    c = "001-01_alpha"
    ito = Path.cwd() / ".ito"
    first = loom.json("pull", c)
    assert first["revision"] == "1" and first["backup"] is None
    local = ito / "changes" / c
    assert (local / ".backend-revision").read_text() == "1"
    assert (local / "specs" / "alpha" / "spec.md").is_file()
    assert not (local / ".ito.yaml").exists()  # the bundle has no metadata
    (local / ".ito.yaml").write_text("schema: spec-driven\n")
    (local / "notes.txt").write_text("mine\n")
    (local / "specs" / "stale").mkdir()
    (local / "specs" / "stale" / "spec.md").write_text("gone on the server\n")

    second = loom("pull", c)
    assert "at revision 1" in second.stdout and "backed up" in second.stderr
    assert not (local / "specs" / "stale").exists()  # pruned: the server has no such spec
    assert (local / ".ito.yaml").read_text() == "schema: spec-driven\n"  # kept
    assert (local / "notes.txt").read_text() == "mine\n"  # kept
    backups = list((Path(base_env["LOOM_STATE_DIR"]) / "backups" / c).iterdir())
    assert len(backups) == 1 and (backups[0] / "specs" / "stale" / "spec.md").is_file()

    (local / "design.md").write_text("# Design\n")
    pushed = loom.json("push", c)
    assert pushed == {"change_id": c, "base_revision": "1", "new_revision": "2", "changed": True}
    assert (local / ".backend-revision").read_text() == "2"
    assert client.pull(c).design == "# Design\n"

    client.complete_task(c, "1.1")  # the server moves on (revision 3)
    (local / "design.md").write_text("# Design v2\n")
    conflict = loom("push", c, code=3)
    assert "local revision 2, server 3" in conflict.stderr and "loom pull" in conflict.stderr
    assert client.pull(c).design == "# Design\n"  # nothing changed on the server
    assert (local / ".backend-revision").read_text() == "2"
    data = json.loads(loom("push", c, "--json", code=3).stdout)
    assert data["kind"] == "revision_conflict" and data["server_revision"] == "3"

    loom("pull", c)
    (local / "design.md").write_text("# Design v2\n")
    assert loom.json("push", c)["new_revision"] == "4"

    # A change that exists only locally is created by its first push.
    new = ito / "changes" / "001-04_delta"
    new.mkdir()
    (new / "proposal.md").write_text("# Delta\n")
    assert "revision (new) -> 1" in loom("push", "001-04_delta").stdout
    assert client.pull("001-04_delta").proposal == "# Delta\n"
    loom("push", "001-05_nowhere", code=4)
    # Pushing over a leased change needs the lease: holder and fencing token from `claim`.
    loom("claim", c, "--holder", "agent-b")
    (local / "design.md").write_text("# Design v3\n")
    loom("push", c, code=3)
    assert loom.json("push", c, "--holder", "agent-b")["new_revision"] == "5"


def test_archive_moves_the_change_and_writes_specs(loom: Loom, tmp_path: Path) -> None:
    loom("import", str(make_tree(tmp_path / "src")))
    c = "001-01_alpha"
    ito = Path.cwd() / ".ito"
    loom("pull", c)
    (ito / "changes" / c / "notes.txt").write_text("kept\n")
    loom("claim", c)
    loom("archive", c, code=3)  # 2 tasks pending: refused (change_unfinished)
    result = loom.json("archive", c, "--force")
    day = result["archived_at"][:10]
    archived = ito / "changes" / "archive" / f"{day}-{c}"
    assert result["path"] == str(archived) and result["specs"] == ["alpha"]
    assert not (ito / "changes" / c).exists()
    assert (archived / "proposal.md").read_text() == "# Proposal: alpha\n\nWhy alpha.\n"
    assert (archived / "notes.txt").read_text() == "kept\n"
    assert (archived / ".backend-revision").is_file()
    assert "Alpha works" in (ito / "specs" / "alpha" / "spec.md").read_text()
    assert [x["id"] for x in loom.json("changes", "--archived")] == ["001-01_alpha", "001-02_beta"]
    again = loom("archive", c, "--force")  # idempotent
    assert f"archived {c}" in again.stdout
    loom("claim", c, code=3)  # archived changes cannot be claimed


def _event(n: int) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": "2026-01-01T00:00:00Z",
        "entity": "task",
        "entity_id": f"{n}.1",
        "scope": "001-01_alpha",
        "op": "status_change",
        "from": "pending",
        "to": "complete",
        "actor": "cli",
        "by": "@tester",
        "ctx": {"session_id": "s-1"},
    }


def test_events_show_forward_and_follow(loom: Loom, server: Any, project: str) -> None:
    log = Path.cwd() / ".ito" / ".state" / "audit" / "events.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("".join(json.dumps(_event(n)) + "\n" for n in range(7)))
    sent = loom.json("events", "forward", "--batch-size", "3")
    assert (sent["accepted"], sent["batches"], sent["offset"]) == (7, 3, 7)
    assert (Path.cwd() / ".ito" / ".state" / "event-forward-offset").read_text() == "7"
    rerun = loom("events", "forward")
    assert "forwarded 0 events" in rerun.stdout
    with log.open("a") as handle:
        handle.write(json.dumps(_event(7)) + "\n")
    assert loom.json("events", "forward", str(log))["accepted"] == 1

    events = loom.json("events")
    assert [e["entity_id"] for e in events] == [f"{n}.1" for n in range(8)]
    assert events[0]["from"] == "pending" and "count" not in events[0]
    seqs = [e["seq"] for e in events]
    assert [e["seq"] for e in loom.json("events", "--since", str(seqs[5]))] == seqs[6:]
    assert len(loom.json("events", "--limit", "2")) == 2
    assert "status_change  pending -> complete" in loom("events", "--limit", "1").stdout

    # --follow polls until Ctrl-C, which exits 0.
    proc = spawn_loom(loom.env, "events", "--follow", "--since", "0", "--json", "--interval", "0.1")
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(8)]
        assert [json.loads(line)["seq"] for line in lines] == seqs
        with Client(server.url, server.admin_token, project) as c:
            c.post_events([_event(99)])
        assert json.loads(proc.stdout.readline())["entity_id"] == "99.1"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0  # a bound for a hang, not a speed check
    finally:
        stop_process(proc)


def _keepalive(loom: Loom, *command: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "loom", "keepalive", "001-01_alpha", "--ttl", "10", "--", *command],
        env={**os.environ, **loom.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _lease_or_none(client: Client) -> Any:
    try:
        return client.get_lease("001-01_alpha")
    except NotFound:
        return None


def _wait_for(probe: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll ``probe`` until it returns something truthy (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
    return value


def test_keepalive_heartbeats_passes_exit_code_and_releases(
    loom: Loom, tmp_path: Path, client: Client
) -> None:
    loom("import", str(make_tree(tmp_path / "src")))
    # The wrapped command runs until the test has seen a heartbeat (no fixed sleep: the
    # first heartbeat is due at TTL/3 = 3.3 s, and a loaded machine may be later).
    done = tmp_path / "renewed"
    command = (
        "import os, time\n"
        f"while not os.path.exists({str(done)!r}): time.sleep(0.05)\n"
        "raise SystemExit(7)\n"
    )
    proc = _keepalive(loom, sys.executable, "-c", command)
    try:
        first = _wait_for(lambda: _lease_or_none(client))

        def renewal() -> Any:
            lease = _lease_or_none(client)
            return lease if lease is not None and lease.expires_at > first.expires_at else None

        renewed = _wait_for(renewal)
        assert renewed.fencing_token == first.fencing_token
        done.touch()
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 7, err
    assert "holding 001-01_alpha as agent-a" in err
    with pytest.raises(NotFound):
        client.get_lease("001-01_alpha")


def test_keepalive_lost_lease_terminates_the_command(
    loom: Loom, tmp_path: Path, server: Any, project: str
) -> None:
    loom("import", str(make_tree(tmp_path / "src")))
    marker = tmp_path / "finished"
    proc = _keepalive(
        loom, sys.executable, "-c", f"import time; time.sleep(60); open({str(marker)!r}, 'w')"
    )
    try:
        with Client(server.url, server.admin_token, project, holder="thief") as c:
            _wait_for(  # until keepalive holds the lease
                lambda: getattr(_lease_or_none(c), "holder", None) == "agent-a"
            )
            c.release("001-01_alpha", force=True)
            c.claim("001-01_alpha")
            _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 3, err
        assert "lease on 001-01_alpha lost" in err
        assert not marker.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_task_commands_keep_an_in_step_local_copy_in_step(
    loom: Loom, tmp_path: Path, client: Client
) -> None:
    """The README walkthrough: pull, task commands, edit, push — no revision conflict."""
    loom("import", str(make_tree(tmp_path / "src")))
    c = "001-01_alpha"
    local = Path.cwd() / ".ito" / "changes" / c
    loom("pull", c)
    started = loom("tasks", "start", c, "1.1")
    assert "updated" in started.stderr and "revision 2" in started.stderr
    assert (local / ".backend-revision").read_text() == "2"
    assert "- **Status**: [>] in-progress" in (local / "tasks.md").read_text()
    assert (local / "tasks.md").read_text() == client.get_tasks_raw(c).content
    loom("tasks", "complete", c, "1.1", "--note", "done")
    assert (local / ".backend-revision").read_text() == "3"
    (local / "proposal.md").write_text("# Proposal: alpha, edited\n")
    assert loom.json("push", c)["new_revision"] == "4"
    assert client.pull(c).proposal == "# Proposal: alpha, edited\n"

    # Out of step (somebody else wrote in between): the local copy is left alone.
    client.shelve_task(c, "1.2")  # revision 5 on the server, local still at 4
    before = (local / "tasks.md").read_text()
    unshelved = loom("tasks", "unshelve", c, "1.2")  # revision 6
    assert "revision 6" in unshelved.stdout and "updated" not in unshelved.stderr
    assert (local / "tasks.md").read_text() == before
    assert (local / ".backend-revision").read_text() == "4"


def test_lease_and_push_errors_explain_the_recovery_in_cli_terms(
    loom: Loom, tmp_path: Path, client: Client
) -> None:
    loom("import", str(make_tree(tmp_path / "src")))
    c = "001-01_alpha"
    loom("claim", c)
    loom("release", c)
    lost = loom("heartbeat", c, code=3)
    assert "None" not in lost.stderr
    assert "no active lease" in lost.stderr and f"loom claim {c}" in lost.stderr

    loom("pull", c)
    local = Path.cwd() / ".ito" / "changes" / c
    (local / ".backend-revision").unlink()  # as if the directory was copied, never pulled
    (local / "design.md").write_text("# Design\n")
    refused = loom("push", c, code=3)
    assert "If-Match" not in refused.stderr and "body 'revision'" not in refused.stderr
    assert "never pulled" in refused.stderr and f"`loom pull {c}`" in refused.stderr
    assert f"`loom push {c}`" in refused.stderr
    assert client.pull(c).design is None  # nothing changed on the server
    data = json.loads(loom("push", c, "--json", code=3).stdout)
    assert data["kind"] == "precondition_required" and data["exit_code"] == 3
