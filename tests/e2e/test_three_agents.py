"""The README walkthrough as a test: three agents, one server, one repository.

An operator imports a small ``.ito/`` tree (one module, four active changes with two wave-1
tasks each and a spec delta each, a base spec). Then three agents run at the same time, each a
thread driving real ``python -m loom`` processes from its own working copy, state directory
and ``LOOM_HOLDER``: allocate → pull → start/complete every task → edit the proposal and
push → archive, until ``allocate`` says there is no work.

The task commands move the server's revision on and keep the agent's in-step local copy in
step (tasks.md and ``.backend-revision``), so the proposal edit pushes cleanly on top.
Afterwards the server, the agents' working copies and the audit log must all tell the same
story.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import LiveServer

from ._support import LoomProcess, api_get, clean_env

# The real-process races share one xdist worker (`make test` runs -n 2 --dist loadgroup),
# so they do not compete with each other for the two cores.
# About 30-60 s: some 50 real CLI processes.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("races")]

PROJECT = "acme/widgets"
MODULE = "001"
# change id → (capability its delta adds a requirement to, requirement title)
CHANGES = {
    "001-01_alpha": ("auth", "Alpha login"),
    "001-02_beta": ("billing", "Beta invoices"),
    "001-03_gamma": ("auth", "Gamma sessions"),
    "001-04_delta": ("billing", "Delta refunds"),
}
AGENTS = 3

BASE_SPEC = """# auth Specification

## Purpose
Authentication.

## Requirements

### Requirement: Tokens
The system SHALL check tokens.

#### Scenario: Bad token
- **WHEN** a bad token is sent
- **THEN** the request is refused
"""

MODULE_MD = "# Core\n\n## Purpose\nCore things.\n\n## Changes\n" + "".join(
    f"- [ ] {change_id}\n" for change_id in CHANGES
)


def tasks_md(change_id: str) -> str:
    return f"""# Tasks for: {change_id}

## Wave 1: Build it
- **Depends On**: None

### Task 1.1: Lay the groundwork
- **Files**: `src/{change_id}.py`
- **Dependencies**: None
- **Action**:
  Write the first half.
- **Verify**: `pytest`
- **Done When**: It runs
- **Updated At**: 2026-01-01
- **Status**: [ ] pending

### Task 1.2: Finish it
- **Files**: `src/{change_id}.py`
- **Dependencies**: Task 1.1
- **Action**:
  Write the second half.
- **Verify**: `pytest`
- **Done When**: It works
- **Updated At**: 2026-01-01
- **Status**: [ ] pending
"""


def delta_md(requirement: str) -> str:
    return f"""## ADDED Requirements

### Requirement: {requirement}
The system SHALL support {requirement.lower()}.

#### Scenario: {requirement} happens
- **WHEN** {requirement.lower()} is requested
- **THEN** it is done
"""


def make_tree(ito: Path) -> Path:
    files = {
        "modules/001_core/module.md": MODULE_MD,
        "specs/auth/spec.md": BASE_SPEC,
    }
    for change_id, (cap, requirement) in CHANGES.items():
        base = f"changes/{change_id}"
        files[f"{base}/proposal.md"] = f"# Proposal: {change_id}\n\n## Why\nBecause.\n"
        files[f"{base}/tasks.md"] = tasks_md(change_id)
        files[f"{base}/specs/{cap}/spec.md"] = delta_md(requirement)
        files[f"{base}/.ito.yaml"] = "schema: spec-driven\ncreated: 2026-01-01\n"
    for rel, text in files.items():
        path = ito / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ito


def signature(holder: str) -> str:
    return f"\nImplemented by {holder}.\n"


def note(holder: str, task_id: str) -> str:
    return f"{holder} finished {task_id}"


@dataclass
class AgentRun:
    """What one agent did: the changes it archived, with the archive results."""

    holder: str
    root: Path
    archived: dict[str, dict[str, Any]] = field(default_factory=dict)


def run_agent(loom: LoomProcess, holder: str, start: threading.Barrier) -> AgentRun:
    run = AgentRun(holder, loom.cwd)
    ito = loom.cwd / ".ito"
    start.wait(timeout=60)
    while True:
        claim = loom.json("allocate", "--ttl", "300")["claim"]
        if claim is None:
            break
        change_id = claim["change_id"]
        assert claim["holder"] == holder
        assert change_id not in run.archived, f"{holder} was given {change_id} twice"

        pulled = loom.json("pull", change_id)
        local = ito / "changes" / change_id
        assert (local / "tasks.md").is_file()
        assert Path(pulled["path"]).resolve() == local.resolve()

        for task_id in ("1.1", "1.2"):
            started = loom.json("tasks", "start", change_id, task_id)
            assert started["task"]["status"] == "in-progress"
            done = loom.json(
                "tasks", "complete", change_id, task_id, "--note", note(holder, task_id)
            )
            assert done["task"]["status"] == "complete"

        # The four task writes moved the server on, and the local copy with it.
        assert (local / ".backend-revision").read_text() == str(int(pulled["revision"]) + 4)
        assert (local / "tasks.md").read_text().count("- **Status**: [x] complete") == 2
        proposal = local / "proposal.md"
        proposal.write_text(proposal.read_text() + signature(holder))
        pushed = loom.json("push", change_id)
        assert pushed["base_revision"] == str(int(pulled["revision"]) + 4)

        run.archived[change_id] = loom.json("archive", change_id)
    return run


def _events_for(events: list[dict[str, Any]], change_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if (e["entity"] == "change" and e["entity_id"] == change_id)
        or (e["entity"] == "task" and e.get("scope") == change_id)
        or (e["entity"] == "module" and (e.get("meta") or {}).get("change_id") == change_id)
    ]


def test_three_agents_work_through_the_module(live_server: LiveServer, tmp_path: Path) -> None:
    token = live_server.project_token("acme", "widgets")

    def cli(name: str, holder: str) -> LoomProcess:
        root = tmp_path / name
        (root / ".ito").mkdir(parents=True)  # the working copy: its .ito marks the root
        env = clean_env(
            LOOM_URL=live_server.url,
            LOOM_TOKEN=token,
            LOOM_PROJECT=PROJECT,
            LOOM_HOLDER=holder,
            LOOM_CONFIG_HOME=str(tmp_path / f"{name}-config"),
            LOOM_STATE_DIR=str(tmp_path / f"{name}-state"),
        )
        return LoomProcess(env, root)

    operator = cli("operator", "operator")
    source = make_tree(tmp_path / "source" / ".ito")
    imported = operator.json("import", str(source))
    assert (imported["created"], imported["conflicts"]) == (len(CHANGES) + 2, [])
    listed = operator.json("changes")
    assert [(c["id"], c["work_status"], c["lease"]) for c in listed] == [
        (change_id, "ready", None) for change_id in CHANGES
    ]

    holders = [f"agent-{n}" for n in range(1, AGENTS + 1)]
    agents = [cli(holder, holder) for holder in holders]
    barrier = threading.Barrier(AGENTS)
    with ThreadPoolExecutor(AGENTS) as pool:
        futures = [
            pool.submit(run_agent, loom, holder, barrier)
            for loom, holder in zip(agents, holders, strict=True)
        ]
        runs = [f.result(timeout=300) for f in futures]

    # -- every change archived exactly once, by exactly one agent ---------------------------
    done_by = {change_id: run for run in runs for change_id in run.archived}
    assert sum(len(run.archived) for run in runs) == len(CHANGES)
    assert set(done_by) == set(CHANGES)
    url = live_server.url
    archived_rows = api_get(url, token, PROJECT, "/changes", lifecycle="archived")
    assert sorted(r["id"] for r in archived_rows) == sorted(CHANGES)
    assert all(r["lease"] is None and r["archived_at"] for r in archived_rows)
    assert api_get(url, token, PROJECT, "/changes") == []
    assert operator.json("allocate") == {"claim": None}

    # -- the truth specs hold every merged requirement --------------------------------------
    for cap in {cap for cap, _ in CHANGES.values()}:
        markdown = api_get(url, token, PROJECT, f"/specs/{cap}")["markdown"]
        for cap_of, requirement in CHANGES.values():
            if cap_of == cap:
                assert markdown.count(f"### Requirement: {requirement}\n") == 1, (cap, markdown)
        if cap == "auth":
            assert "### Requirement: Tokens\n" in markdown  # the base spec survives

    # -- the module checklist is ticked for every change -----------------------------------
    module_md = api_get(url, token, PROJECT, f"/modules/{MODULE}")["markdown"]
    for change_id in CHANGES:
        assert f"- [x] {change_id}\n" in module_md
    assert "- [ ]" not in module_md

    # -- the server kept each agent's proposal edit ---------------------------------------
    for change_id, run in done_by.items():
        detail = api_get(url, token, PROJECT, f"/changes/{change_id}", lifecycle="archived")
        assert detail["proposal"].endswith(signature(run.holder))
        assert detail["progress"]["complete"] == 2

    # -- each agent's working copy has its archived changes and the merged specs ----------
    for run in runs:
        ito = run.root / ".ito"
        for change_id, result in run.archived.items():
            day = result["archived_at"][:10]
            archived_dir = ito / "changes" / "archive" / f"{day}-{change_id}"
            assert Path(result["path"]).resolve() == archived_dir.resolve()
            assert not (ito / "changes" / change_id).exists()
            assert (archived_dir / "proposal.md").read_text().endswith(signature(run.holder))
            assert (archived_dir / "tasks.md").read_text().count("[x] complete") == 2
            cap, requirement = CHANGES[change_id]
            assert result["specs"] == [cap]
            local_spec = (ito / "specs" / cap / "spec.md").read_text()
            assert f"### Requirement: {requirement}\n" in local_spec
        # Nothing it did not archive was moved into its archive.
        archive_root = ito / "changes" / "archive"
        assert sorted(p.name[11:] for p in archive_root.iterdir()) == sorted(run.archived)

    # -- the audit log tells the story, in order ------------------------------------------
    events = operator.json("events", "--since", "0")
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)) and len(seqs) == len(events)
    allocations = [e for e in events if e["op"] == "allocate"]
    assert sorted(e["entity_id"] for e in allocations) == sorted(CHANGES)  # one each
    for change_id, run in done_by.items():
        story = _events_for(events, change_id)
        ops = [(e["entity"], e["op"]) for e in story]
        assert ops == [
            ("change", "allocate"),
            *[("task", "status_change")] * 4,
            ("change", "update"),
            ("change", "release"),
            ("change", "archive"),
            ("module", "change_completed"),
        ], (change_id, ops)
        allocate, *task_events, update, release, archive, completed = story
        # The import is one summary event naming every change it created.
        (imported,) = [e for e in events if e["op"] == "import"]
        assert change_id in imported["meta"]["changes_created"]
        # The push of the signed proposal says what it changed, and from which revision.
        assert update["meta"]["artifacts"] == ["proposal"]
        assert int(update["meta"]["new_revision"]) == int(update["meta"]["old_revision"]) + 1
        assert allocate["meta"]["holder"] == run.holder
        transitions = [(e["entity_id"], e["from"], e["to"]) for e in task_events]
        assert transitions == [
            ("1.1", "pending", "in-progress"),
            ("1.1", "in-progress", "complete"),
            ("1.2", "pending", "in-progress"),
            ("1.2", "in-progress", "complete"),
        ]
        notes = [(e.get("meta") or {}).get("note") for e in task_events]
        assert notes == [None, note(run.holder, "1.1"), None, note(run.holder, "1.2")]
        assert release["meta"] == {"holder": run.holder, "reason": "archived"}
        assert archive["meta"]["specs"] == [CHANGES[change_id][0]]
        assert archive["meta"]["archive_name"] == Path(run.archived[change_id]["path"]).name
        assert completed["entity_id"] == MODULE
        story_seqs = [e["seq"] for e in story]
        assert story_seqs == sorted(set(story_seqs))
