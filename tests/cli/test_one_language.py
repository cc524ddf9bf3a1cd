"""Issue 11, one language on the command line: ids, --json errors, exit codes, retries and
timeouts, help labels, terminal width, lease wording, events, signals in children."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loom.client import ArtifactBundle, Client

from ._support import Loom, make_tree, spawn_loom, stop_process

C = "001-01_alpha"


@pytest.fixture
def server(shared_server: Any) -> Any:
    """These tests need *a* server: one for the module, a project per test."""
    return shared_server


@pytest.fixture
def project(own_project: str) -> str:
    return own_project


def _setup(loom: Loom, tmp_path: Path) -> None:
    loom("import", str(make_tree(tmp_path / "src")))


# --- item 8: one way to name a change ------------------------------------------------------


def test_short_ids_resolve_for_writes_and_prefixes_are_did_you_mean(
    loom: Loom, tmp_path: Path, client: Client
) -> None:
    _setup(loom, tmp_path)
    assert loom.json("claim", "1-1")["change_id"] == C
    assert loom.json("heartbeat", "001-01")["change_id"] == C
    assert loom.json("tasks", "start", "1-1", "1.1")["change_id"] == C
    assert loom.json("pull", "1-1")["change_id"] == C
    assert loom.json("release", "1-1")["change_id"] == C
    # A prefix that is not a whole id names a change for reading, never for writing.
    assert loom.json("show", "001-01_alph")["change"]["id"] == C
    refused = loom("claim", "001-01_alph", code=4)
    assert f"did you mean {C}?" in refused.stderr
    envelope = json.loads(loom("tasks", "start", "alpha", "1.1", "--json", code=4).stdout)
    assert envelope["did_you_mean"] == C and envelope["exit_code"] == 4
    assert client.list_leases() == []  # nothing was claimed by the refused writes


# --- item 9: one --json error shape, on stdout ---------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "kind"),
    [
        (["claim", "--ttl", "5", C], 2, "usage_error"),  # a usage error (Click)
        (["changes", "--no-such-flag"], 2, "usage_error"),
        (["show", "009-09_nope"], 4, "change_not_found"),  # the server's 404
        (["claim", C, "--holder", "agent-b"], 3, "lease_conflict"),  # a conflict
        (["tasks", "start", C, "1.2"], 3, "task_blocked"),
    ],
)
def test_json_errors_have_one_shape_on_stdout(
    loom: Loom, tmp_path: Path, args: list[str], code: int, kind: str
) -> None:
    _setup(loom, tmp_path)
    loom("claim", C)
    result = loom(*args, "--json", code=code)
    body = json.loads(result.stdout)
    assert {"error", "code", "kind", "exit_code"} <= body.keys()
    assert (body["kind"], body["exit_code"]) == (kind, code)
    assert "{" not in result.stderr  # nothing JSON on stderr


def test_status_json_when_unreachable_is_the_error_shape(base_env: dict[str, str]) -> None:
    loom = Loom({**base_env, "LOOM_URL": "http://127.0.0.1:1", "LOOM_PROJECT": "a/b"})
    body = json.loads(loom("status", "--json", "--retries", "0", code=5).stdout)
    assert body["exit_code"] == 5 and body["kind"] == "connection_failed"
    assert body["status"]["auth"] is None
    text = loom("status", "--retries", "0", code=5).stdout
    assert "auth:    not checked" in text and "failed" not in text


# --- item 10: exit codes -------------------------------------------------------------------


def test_exit_codes_follow_the_documented_table(loom: Loom, tmp_path: Path) -> None:
    _setup(loom, tmp_path)
    assert "10<=x<=86400" in loom("claim", C, "--ttl", "5", code=2).stderr
    loom("claim", C, "--ttl", "86401", code=2)
    loom("push", "001-0", code=2)  # ambiguous: 001-01_alpha or 001-03_gamma
    loom("tasks", "start", C, "1.2", code=3)  # blocked by 1.1
    loom("tasks", "complete", C, "1.1")
    again = loom("tasks", "complete", C, "1.1")  # already in the wanted state
    assert "already complete: nothing to do" in again.stdout
    loom("tasks", "start", C, "1.1", code=3)  # complete, not pending: a conflict
    loom("tasks", "shelve", C, "1.2")
    assert "already shelved" in loom("tasks", "shelve", C, "1.2").stdout
    loom("tasks", "complete", C, "1.2", code=3)  # shelved


# --- item 11: retries said, total bounded, timeouts worded as timeouts --------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    sock.close()


def test_a_silent_server_is_a_bounded_timeout_with_each_retry_said(
    base_env: dict[str, str], silent_server: str
) -> None:
    env = {**os.environ, **base_env, "LOOM_URL": silent_server, "LOOM_PROJECT": "a/b"}
    env.pop("LOOM_RETRIES")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "loom", "changes", "--timeout", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 5
    assert "timed out" in proc.stderr and "did not answer within" in proc.stderr
    assert "ReadTimeout" not in proc.stderr
    # The whole command is bounded by --timeout (3 s), retries included (plus start-up).
    assert elapsed < 3 + 10, elapsed


def test_each_retry_is_said_on_stderr(base_env: dict[str, str]) -> None:
    loom = Loom({**base_env, "LOOM_URL": "http://127.0.0.1:1", "LOOM_PROJECT": "a/b"})
    result = loom("changes", "--retries", "2", code=5)
    retries = [line for line in result.stderr.splitlines() if "retrying GET" in line]
    assert len(retries) == 2, result.stderr
    assert "(retry 1 of 2)" in retries[0] and "(retry 2 of 2)" in retries[1]
    assert "cannot reach the Loom server" in result.stderr.splitlines()[-1]


# --- item 12: help, width, lease wording ---------------------------------------------------


def test_help_has_no_type_labels_on_flags_and_plain_argument_names(
    base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Typer guesses the shell from the process tree unless told not to: with the guess off,
    # `--show-completion SHELL` takes the shell as its value, so the verdict does not depend
    # on whether pytest was started from a shell.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    loom = Loom({**base_env, "COLUMNS": "100"})
    for args in (["claim", "-h"], ["release", "--help"], ["tasks", "complete", "-h"]):
        text = loom(*args).stdout
        assert "<bool>" not in text and "{change}" not in text, text
        assert "CHANGE" in text
    assert "<bool>" not in loom("-h").stdout
    assert loom("--version").stdout.startswith("loom ")
    assert "complete" in loom("--show-completion", "bash").stdout


def test_config_alone_shows_the_configuration(base_env: dict[str, str]) -> None:
    loom = Loom(base_env)
    assert "SETTING" in loom("config").stdout
    assert loom.json("config")["holder"]["value"] == "agent-a"


def test_leases_lists_active_leases_with_time_left(loom: Loom, tmp_path: Path) -> None:
    _setup(loom, tmp_path)
    assert "no active leases" in loom("leases").stderr
    loom("claim", C, "--ttl", "840")
    text = loom("leases").stdout
    assert C in text and "agent-a" in text and "in 14 min" in text
    assert [x["change_id"] for x in loom.json("leases")] == [C]
    assert "expires in 14 min" in loom("claim", C).stdout


def test_lease_conflicts_cite_the_holder_option_not_the_header(loom: Loom, tmp_path: Path) -> None:
    _setup(loom, tmp_path)
    loom("claim", C, "--ttl", "600")
    refused = loom("tasks", "start", C, "1.1", "--holder", "agent-b", code=3)
    assert "X-Loom-Holder" not in refused.stderr
    assert "you are agent-b (set with --holder or LOOM_HOLDER)" in refused.stderr
    assert "held by agent-a until" in refused.stderr and "(expires in 10 min)" in refused.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_ids_are_never_cut_in_an_80_column_terminal(
    loom: Loom, tmp_path: Path, client: Client
) -> None:
    long_id = "001-07_a-change-with-a-rather-long-descriptive-name-that-users-copy"
    client.push_bundle(ArtifactBundle(change_id=long_id, proposal="# P\n", specs=[], revision=""))
    client.claim(long_id)
    env = {**loom.env, "COLUMNS": "80", "LINES": "40"}
    session = f"loom-{os.getpid()}"
    exports = " ".join(f"{k}={v!r}" for k, v in env.items())
    command = f"env {exports} {sys.executable} -m loom changes; sleep 30"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "40", command],
        check=True,
    )
    try:
        screen = ""
        for _ in range(100):
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            if long_id[:20] in screen and "─" in screen.split(long_id[:20])[1]:
                break
            time.sleep(0.1)
        assert long_id in screen, screen  # whole, on one line
        assert max(len(line) for line in screen.splitlines()) <= 80
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


# --- item 17: events -----------------------------------------------------------------------


def test_events_tail_since_change_and_a_readable_text_view(
    loom: Loom, tmp_path: Path, client: Client
) -> None:
    _setup(loom, tmp_path)
    client.start_task(C, "1.1")
    client.complete_task(C, "1.1", note="done with care")
    everything = loom.json("events", "--since", "0")
    seqs = [e["seq"] for e in everything]
    assert [e["seq"] for e in loom.json("events", "--tail", "2")] == seqs[-2:]
    assert [e["seq"] for e in loom.json("events", "--limit", "2")] == seqs[-2:]
    assert [e["seq"] for e in loom.json("events", "--since", "0", "--limit", "1")] == seqs[:1]
    mine = loom.json("events", "--change", "1-1")
    assert mine and all(e["entity_id"] == C or e.get("scope") == C for e in mine)
    text = loom("events", "--change", C).stdout.splitlines()
    assert text[0].split() == ["SEQ", "TIME", "WHAT", "OP", "CHANGE", "BY", "NOTE"]
    assert any("note: done with care" in line for line in text)
    op_column = {line.index("status_change") for line in text if "status_change" in line}
    assert len(op_column) == 1  # aligned


def test_events_follow_starts_from_now(
    loom: Loom, tmp_path: Path, client: Client, server: Any
) -> None:
    _setup(loom, tmp_path)
    client.start_task(C, "1.1")
    proc = spawn_loom(loom.env, "events", "--follow", "--json", "--interval", "0.1")
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert "following new events after seq" in proc.stderr.readline()
        client.complete_task(C, "1.1", note="after")
        first = json.loads(proc.stdout.readline())
        assert first["op"] == "status_change" and first["meta"]["note"] == "after"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        stop_process(proc)


# --- item 18: children get default SIGINT handling ------------------------------------------


def test_spawned_loom_stops_on_sigint_even_when_the_runner_ignores_it(
    loom: Loom, tmp_path: Path, client: Client
) -> None:
    _setup(loom, tmp_path)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under `make test &`
    try:
        proc = spawn_loom(loom.env, "events", "--follow", "--json", "--interval", "0.1")
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert "following new events after seq" in proc.stderr.readline()
        client.start_task(C, "1.1")
        assert json.loads(proc.stdout.readline())["to"] == "in-progress"  # it is following
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0  # Ctrl-C stops it (exit 0), not ignored
    finally:
        stop_process(proc)
