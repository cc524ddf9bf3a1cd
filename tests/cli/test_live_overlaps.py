"""CLI against a real server: overlaps, the stale-base refusal, `loom rebase`, --force."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loom.client import Client

from ._support import Loom

pytestmark = pytest.mark.slow

SPEC = (
    "# auth\n\n## Purpose\nAuth.\n\n## Requirements\n\n"
    "### Requirement: Login\nUsers log in with a password.\n\n"
    "### Requirement: Logout\nUsers log out.\n"
)
A_DELTA = (
    "## MODIFIED Requirements\n\n### Requirement: Login\n"
    "Users log in with a password.\nLogin is rate limited.\n"
)
B_DELTA = (
    "## MODIFIED Requirements\n\n### Requirement: Login\n"
    "Users log in with a password or a passkey.\n"
)
MERGED = (
    "## MODIFIED Requirements\n\n### Requirement: Login\n"
    "Users log in with a password or a passkey.\nLogin is rate limited.\n"
)


@pytest.fixture
def server(shared_server: Any) -> Any:
    """These tests need *a* server: one for the module, a project per test."""
    return shared_server


@pytest.fixture
def project(own_project: str) -> str:
    return own_project


A, B = "001-01_rate-limit", "001-02_passkeys"


def _write_change(ito: Path, change_id: str, delta: str) -> Path:
    root = ito / "changes" / change_id
    (root / "specs" / "auth").mkdir(parents=True)
    (root / "proposal.md").write_text(f"# {change_id}\n")
    (root / "tasks.md").write_text("- [ ] 1.1 do it\n")
    (root / "specs" / "auth" / "spec.md").write_text(delta)
    return root


def test_overlaps_refusal_rebase_push_archive(loom: Loom, client: Client) -> None:
    client.put_spec("auth", SPEC)
    ito = Path.cwd() / ".ito"
    _write_change(ito, A, A_DELTA)
    b_dir = _write_change(ito, B, B_DELTA)
    loom("push", A)
    pushed = loom("push", B)
    assert f"warning: now overlaps {A} (auth: Login)" in pushed.stderr

    pairs = loom.json("overlaps")["overlaps"]
    assert [(p["a"], p["b"], p["strength"]) for p in pairs] == [(A, B, "strong")]
    table = loom("overlaps", A).stdout
    assert B in table and "strong" in table and "auth: Login" in table
    assert loom.json("overlaps", B)["overlaps"][0]["change_id"] == A
    listing = loom("changes").stdout.splitlines()
    assert listing[0].split() == ["CHANGE", "STATUS", "TASKS", "REV", "LEASE", "OVERLAPS"]
    assert all(line.split()[-1] == "!1" for line in listing[1:])
    assert f"overlaps:  {B} (strong: auth: Login)" in loom("show", A).stdout
    assert loom.json("show", A)["overlaps"][0]["change_id"] == B

    # An archive refuses unfinished changes before it looks at spec bases.
    loom("tasks", "complete", A, "1.1")
    loom("tasks", "complete", B, "1.1")
    loom("archive", A)
    refused = loom("archive", B, code=3)
    assert "written against older specs" in refused.stderr
    assert f"loom rebase {B}" in refused.stderr
    assert f"changed by {A}" in refused.stderr
    envelope = json.loads(loom("archive", B, "--json", code=3).stdout)
    assert envelope["kind"] == "stale_spec_base"
    assert client.get_spec("auth").revision == 2  # nothing written

    loom("pull", B)
    assert json.loads((b_dir / ".backend-spec-bases").read_text()) == {"auth": 1}
    rebased = loom.json("rebase", B)
    (spec,) = rebased["specs"]
    assert (spec["capability"], spec["base_revision"], spec["current_revision"]) == ("auth", 1, 2)
    assert spec["stale"] == ["Login"]
    folder = b_dir / "specs" / "auth"
    assert (folder / "spec.md.base").read_text() == SPEC
    assert "Login is rate limited." in (folder / "spec.md.current").read_text()
    report = (folder / "REBASE.md").read_text()
    assert "Users log in with a password.\n" in report  # base
    assert "Login is rate limited." in report  # current
    assert "password or a passkey" in report  # this change
    assert json.loads((b_dir / ".backend-spec-bases").read_text()) == {"auth": 2}
    assert "nothing to do" in loom("rebase", B).stdout

    (folder / "spec.md").write_text(MERGED)
    loom("push", B)
    loom("archive", B)
    merged = client.get_spec("auth")
    assert merged.revision == 3
    assert "password or a passkey.\nLogin is rate limited." in merged.markdown
    history = client.spec_history("auth").revisions
    assert [(r.revision, r.change_id) for r in history] == [(1, None), (2, A), (3, B)]


def test_archive_force_overrides_and_is_recorded(loom: Loom, client: Client) -> None:
    client.put_spec("auth", SPEC)
    ito = Path.cwd() / ".ito"
    _write_change(ito, A, A_DELTA)
    _write_change(ito, B, B_DELTA)
    loom("push", A)
    loom("push", B)
    loom("tasks", "complete", A, "1.1")
    loom("archive", A)
    loom("archive", B, code=3)  # unfinished and stale: force overrides both
    loom("archive", B, "--force")
    assert "passkey" in client.get_spec("auth").markdown
    (event,) = [e for e in client.get_events(op="archive") if e.entity_id == B]
    meta = event.to_json()["meta"]
    assert meta["forced"] is True
    assert meta["unfinished_tasks"] == 1
    assert meta["stale_spec_base"][0]["requirement"] == "Login"


def test_allocate_avoid_overlap_option(loom: Loom, client: Client) -> None:
    ito = Path.cwd() / ".ito"
    _write_change(ito, A, A_DELTA)
    _write_change(ito, B, B_DELTA)
    loom("push", A)
    loom("push", B)
    assert loom("allocate").stdout.strip() == A
    assert loom.json("allocate", "--holder", "two", "--avoid-overlap", "strict") == {"claim": None}
    taken = loom("allocate", "--holder", "two")
    assert taken.stdout.strip() == B and f"shares requirements with {A}" in taken.stderr
    loom("allocate", "--avoid-overlap", "sometimes", code=2)
