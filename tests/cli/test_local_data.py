"""Issue 11, local data and revisions: the real ``loom`` against a real server never loses a
local edit, never makes a revision for nothing, and keeps archived changes archived."""

from __future__ import annotations

import json
from pathlib import Path

from loom.client import Client

from ._support import ENHANCED_TASKS, ORG, REPO, Loom, make_tree

C = "001-01_alpha"


def _setup(loom: Loom, tmp_path: Path) -> Path:
    loom("import", str(make_tree(tmp_path / "src")))
    return Path.cwd() / ".ito"


# --- item 1 --------------------------------------------------------------------------------


def test_a_push_without_edits_is_nothing_to_push(loom: Loom, tmp_path: Path) -> None:
    ito = _setup(loom, tmp_path)
    loom("pull", C)
    for _ in range(3):
        result = loom("push", C)
        assert result.stdout.startswith(f"nothing to push: {C} is unchanged at revision 1")
    assert loom.json("push", C)["changed"] is False
    assert loom.json("show", C)["change"]["revision"] == "1"
    # A second agent's copy, based on revision 1, is still accepted.
    other = tmp_path / "other" / ".ito"
    loom("pull", C, "--ito-dir", str(other), LOOM_HOLDER="agent-b")
    (other / "changes" / C / "design.md").write_text("# Design\n")
    assert loom.json("push", C, "--ito-dir", str(other))["new_revision"] == "2"
    assert (ito / "changes" / C / ".backend-revision").read_text() == "1"


# --- item 2 --------------------------------------------------------------------------------


def test_export_backs_up_local_edits_and_drops_stale_active_copies(
    loom: Loom, tmp_path: Path, client: Client, base_env: dict[str, str]
) -> None:
    ito = _setup(loom, tmp_path)
    loom("pull", C)
    loom("pull", "001-03_gamma")
    proposal = ito / "changes" / C / "proposal.md"
    proposal.write_text("# My unpushed edit\n")
    (ito / "changes" / C / "design.md").write_text("# A local design\n")
    client.archive("001-03_gamma", force=True)  # another agent archives gamma meanwhile

    result = loom("export", str(ito))
    assert f"local edit replaced by the server's copy: changes/{C}/proposal.md" in result.stderr
    assert f"local file removed (the server does not have it): changes/{C}/design.md" in (
        result.stderr
    )
    assert "stale active copy of an archived change removed: changes/001-03_gamma/" in (
        result.stderr
    )
    backup = Path(result.stderr.split("backed up in ")[1].strip())
    assert backup.is_relative_to(Path(base_env["LOOM_STATE_DIR"]))
    assert (backup / "changes" / C / "proposal.md").read_text() == "# My unpushed edit\n"
    assert (backup / "changes" / C / "design.md").read_text() == "# A local design\n"
    assert (backup / "changes" / "001-03_gamma" / "proposal.md").is_file()
    assert not (ito / "changes" / "001-03_gamma").exists()
    assert list((ito / "changes" / "archive").glob("*-001-03_gamma"))

    # The export reads back unchanged, and an overwrite import never un-archives.
    again = loom.json("import", str(ito))
    assert again["conflicts"] == [] and again["created"] == again["updated"] == 0
    active = ito / "changes" / "001-03_gamma"
    active.mkdir()
    (active / "proposal.md").write_text("# resurrected\n")
    over = loom.json("import", str(ito), "--overwrite", code=3)
    assert [c["id"] for c in over["conflicts"]] == ["001-03_gamma"]
    assert loom.json("show", "001-03_gamma")["change"]["archived_at"] is not None


def test_an_export_over_an_identical_tree_backs_nothing_up(loom: Loom, tmp_path: Path) -> None:
    ito = tmp_path / "copy" / ".ito"
    _setup(loom, tmp_path)
    loom("export", str(ito))
    data = loom.json("export", str(ito))
    assert (data["backup"], data["overwritten"], data["removed"]) == (None, [], [])


# --- item 3 --------------------------------------------------------------------------------


def test_pull_of_an_archived_change_writes_it_under_archive(loom: Loom, tmp_path: Path) -> None:
    ito = _setup(loom, tmp_path)
    data = loom.json("pull", "001-02_beta")
    assert data["archived"] is True
    assert Path(data["path"]).parent == ito / "changes" / "archive"
    assert Path(data["path"]).name.endswith("-001-02_beta")
    assert not (ito / "changes" / "001-02_beta").exists()
    assert "pulled archived copy 001-02_beta" in loom("pull", "001-02_beta").stdout


def test_pull_names_the_local_edits_it_replaced(loom: Loom, tmp_path: Path) -> None:
    ito = _setup(loom, tmp_path)
    loom("pull", C)
    (ito / "changes" / C / "proposal.md").write_text("# mine\n")
    result = loom("pull", C)
    assert "local edits replaced: proposal.md" in result.stderr
    backup = Path(result.stderr.split("backed up in ")[1].strip())
    assert (backup / "proposal.md").read_text() == "# mine\n"


# --- item 4 --------------------------------------------------------------------------------


def test_a_task_write_keeps_an_unpushed_tasks_edit_and_says_so(
    loom: Loom, tmp_path: Path, client: Client
) -> None:
    ito = _setup(loom, tmp_path)
    loom("pull", C)
    tasks = ito / "changes" / C / "tasks.md"
    edited = ENHANCED_TASKS.replace("Do the first thing.", "Do the first thing, carefully.")
    tasks.write_text(edited)
    result = loom("tasks", "start", C, "1.1")
    assert "was not updated: it has unpushed local edits (tasks.md)" in result.stderr
    assert tasks.read_text() == edited  # not replaced
    assert (ito / "changes" / C / ".backend-revision").read_text() == "1"

    # Behind the server: said, and left alone.
    loom("pull", C)
    client.complete_task(C, "1.1")
    behind = loom("tasks", "start", C, "1.2")
    assert "is at revision 2, the server was at 3" in behind.stderr
    assert f"`loom pull {C}`" in behind.stderr

    # In step: updated.
    loom("pull", C)
    step = loom("tasks", "complete", C, "1.2")
    assert "updated" in step.stderr and "tasks.md (revision 5)" in step.stderr
    assert tasks.read_text().count("[x] complete") == 2


# --- item 5 and 6 --------------------------------------------------------------------------


def test_archive_refuses_an_unfinished_change_unless_forced(loom: Loom, tmp_path: Path) -> None:
    ito = _setup(loom, tmp_path)
    loom("pull", C)
    refused = loom("archive", C, code=3)
    assert "is unfinished: 0/2 tasks complete" in refused.stderr
    envelope = json.loads(loom("archive", C, "--json", code=3).stdout)
    assert envelope["kind"] == "change_unfinished" and envelope["pending"] == 2
    assert (ito / "changes" / C).is_dir()
    loom("archive", C, "--force")
    archive = [e for e in loom.json("events", "--since", "0") if e["op"] == "archive"]
    assert archive[0]["meta"]["forced"] is True


def test_archive_ticks_the_local_module_md(loom: Loom, tmp_path: Path, client: Client) -> None:
    ito = _setup(loom, tmp_path)
    loom("export", str(ito))
    module_md = ito / "modules" / "001_core" / "module.md"
    assert "- [ ] 001-01_alpha" in module_md.read_text()
    module_md.write_text(module_md.read_text() + "\nA local note.\n")
    for task in ("1.1", "1.2"):
        client.complete_task(C, task)
    loom("pull", C)
    result = loom("archive", C)
    assert f"module ticked: {module_md}" in result.stdout
    text = module_md.read_text()
    assert "- [x] 001-01_alpha" in text and "A local note." in text
    assert client.get_module("001").markdown is not None
    assert "- [x] 001-01_alpha" in (client.get_module("001").markdown or "")


# --- item 7 --------------------------------------------------------------------------------


def test_serve_require_lease_refuses_writes_nobody_holds(
    tmp_path: Path, base_env: dict[str, str]
) -> None:
    from conftest import start_server

    server = start_server(tmp_path / "strict", None, "--require-lease")
    try:
        loom = Loom(
            {
                **base_env,
                "LOOM_URL": server.url,
                "LOOM_TOKEN": server.admin_token,
                "LOOM_PROJECT": f"{ORG}/{REPO}",
            }
        )
        ito = _setup(loom, tmp_path)
        loom("pull", C)
        (ito / "changes" / C / "design.md").write_text("# D\n")
        refused = loom("push", C, code=3)
        assert "has no active lease" in refused.stderr
        assert json.loads(loom("tasks", "start", C, "1.1", "--json", code=3).stdout)["kind"] == (
            "lease_required"
        )
        loom("claim", C)
        loom("push", C)
        loom("tasks", "start", C, "1.1")
        assert "required for writes" in "".join(server.log)
    finally:
        server.stop()
