"""CLI against a real server: status, import/export, changes, show, tasks, errors 4 and 6."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from loom.tree import read_tree

from ._support import Loom, make_tree


@pytest.fixture
def server(shared_server: Any) -> Any:
    """These tests need *a* server: one for the module, a project per test."""
    return shared_server


@pytest.fixture
def project(own_project: str) -> str:
    return own_project


pytestmark = pytest.mark.slow


def test_status_text_json_and_auth_failures(loom: Loom, server: Any, project: str) -> None:
    text = loom("status").stdout
    assert "health:  ok" in text and "ready:   ready" in text and "admin token" in text
    data = loom.json("status")
    assert data["ok"] is True and data["auth"]["scope"] == "admin"
    scoped = loom.json("status", LOOM_TOKEN=server.project_token(*project.split("/")))
    assert scoped["auth"]["scope"] == "project"
    bad = loom("status", "--token", "nope", code=6)
    assert "auth:    failed" in bad.stdout
    other = server.project_token("acme", "other")
    loom("changes", "--token", other, code=6)
    envelope = json.loads(loom("changes", "--json", "--token", "nope", code=6).stdout)
    assert envelope["code"] == "unauthorized" and envelope["exit_code"] == 6


def test_import_dry_run_rerun_overwrite_and_export_round_trip(loom: Loom, tmp_path: Path) -> None:
    ito = make_tree(tmp_path / "src")
    dry = loom.json("import", str(ito), "--dry-run")
    assert dry["dry_run"] is True
    assert dry["found"] == {"modules": 2, "specs": 1, "active_changes": 2, "archived_changes": 1}
    assert dry["created"] == 0 and dry["requests"] == 1
    assert "changes/001-01_alpha/README.md" in dry["skipped"]
    assert loom.json("changes", "--all") == []  # the dry run sent nothing

    first = loom("import", str(ito))
    assert "CREATED" in first.stdout and "skipped: changes/001-01_alpha/README.md" in first.stderr
    again = loom.json("import", str(ito))
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 6)

    (ito / "changes/001-03_gamma/proposal.md").write_text("# Proposal: gamma v2\n")
    conflict = loom.json("import", str(ito), code=3)
    assert [c["id"] for c in conflict["conflicts"]] == ["001-03_gamma"]
    over = loom.json("import", str(ito), "--overwrite")
    assert (over["updated"], over["conflicts"]) == (1, [])

    out = tmp_path / "exported" / ".ito"
    exported = loom.json("export", str(out))
    assert exported["archived_changes"] == 1 and exported["active_changes"] == 2
    original, copy = read_tree(ito), read_tree(out)
    assert copy.changes == original.changes
    assert copy.specs == original.specs
    assert [(m.id, m.name) for m in copy.modules] == [(m.id, m.name) for m in original.modules]

    # Importing the export into a fresh project yields identical data.
    created = loom.json("import", str(out), "--project", "acme/fresh")
    assert created["created"] == 6
    out2 = tmp_path / "exported2" / ".ito"
    loom("export", str(out2), "--project", "acme/fresh")
    assert read_tree(out2) == read_tree(out)


def test_changes_show_and_not_found(loom: Loom, tmp_path: Path) -> None:
    loom("import", str(make_tree(tmp_path / "src")))
    listed = loom.json("changes")
    assert [c["id"] for c in listed] == ["001-01_alpha", "001-03_gamma"]
    assert listed[0]["total_tasks"] == 2 and listed[0]["lease"] is None
    assert [c["id"] for c in loom.json("changes", "--archived")] == ["001-02_beta"]
    assert len(loom.json("changes", "--all")) == 3
    assert loom.json("changes", "--module", "002") == []
    ready = loom.json("changes", "--status", "ready,in-progress")
    assert {c["work_status"] for c in ready} <= {"ready", "in-progress"}
    text = loom("changes").stdout
    assert text.splitlines()[0].split() == [
        "CHANGE",
        "STATUS",
        "TASKS",
        "REV",
        "LEASE",
        "OVERLAPS",
    ]
    assert "001-01_alpha" in text and "0/2" in text

    shown = loom.json("show", "001-01_alpha")
    assert shown["change"]["id"] == "001-01_alpha"
    assert [t["id"] for t in shown["tasks"]["tasks"]] == ["1.1", "1.2"]
    text = loom("show", "001-01_alpha").stdout
    assert "progress:  0/2 complete" in text and "[ ] 1.1 First task" in text

    missing = loom("show", "009-09_missing", code=4)
    assert "not found" in missing.stderr
    loom("tasks", "status", "009-09_missing", code=4)
    loom("pull", "009-09_missing", code=4)
    loom("claim", "009-09_missing", code=4)


def test_tasks_commands(loom: Loom, tmp_path: Path) -> None:
    loom("import", str(make_tree(tmp_path / "src")))
    c = "001-01_alpha"
    status = loom.json("tasks", "status", c)
    assert status["format"] == "enhanced" and status["ready"] == ["1.1"]
    assert "First task" in loom("tasks", "status", c).stdout
    assert loom.json("tasks", "next", c)["task"]["id"] == "1.1"
    assert loom("tasks", "next", c).stdout.startswith("1.1 First task")

    started = loom.json("tasks", "start", c, "1.1")
    assert started["task"]["status"] == "in-progress"
    assert loom.json("tasks", "next", c)["reason"] == "in-progress"
    blocked = loom("tasks", "start", c, "1.2", code=3)  # blocked by 1.1: a conflict
    assert "error:" in blocked.stderr
    done = loom("tasks", "complete", c, "1.1", "--note", "all good")
    assert "completed 001-01_alpha task 1.1" in done.stdout
    shelved = loom.json("tasks", "shelve", c, "1.2", "--reason", "later")
    assert shelved["task"]["status"] == "shelved"
    assert loom.json("tasks", "unshelve", c, "1.2")["task"]["status"] == "pending"
    added = loom.json("tasks", "add", c, "Third task", "--wave", "1")
    assert added["task"]["name"] == "Third task"
    raw = loom("tasks", "raw", c).stdout
    assert "Third task" in raw and "[x] complete" in raw
    assert loom.json("tasks", "raw", c)["content"] == raw
    assert loom.json("tasks", "init", c)["existed"] is True
    assert "already existed" in loom("tasks", "init", c).stdout
    loom("tasks", "start", c, "9.9", code=4)
    # The revision moved with every task mutation.
    assert int(loom.json("show", c)["change"]["revision"]) >= 6


def test_export_shows_a_progress_bar_only_on_a_terminal(
    loom: Loom, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loom.cli import sync

    loom("import", str(make_tree(tmp_path / "src")))
    real = sync._progress
    calls: list[tuple[bool, str, list[tuple[int, int]]]] = []

    @contextmanager
    def spy(enabled: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
        updates: list[tuple[int, int]] = []
        calls.append((enabled, label, updates))
        with real(enabled, label) as update:
            if update is None:
                yield None
                return

            def record(done: int, total: int) -> None:
                updates.append((done, total))
                update(done, total)

            yield record

    monkeypatch.setattr(sync, "_progress", spy)
    monkeypatch.setattr(sync, "stdout_is_tty", lambda: True)
    assert "exported" in loom("export", str(tmp_path / "tty" / ".ito")).stdout
    enabled, label, updates = calls[-1]
    assert (enabled, label) == (True, "exporting")
    assert updates[0] == (0, 4) and updates[-1] == (4, 4)  # modules+specs, then 3 changes

    assert loom.json("export", str(tmp_path / "json" / ".ito"))["active_changes"] == 2
    assert calls[-1][0] is False  # never with --json

    monkeypatch.setattr(sync, "stdout_is_tty", lambda: False)
    loom("export", str(tmp_path / "piped" / ".ito"))
    assert calls[-1][0] is False  # never when piped
