"""The real corpus through the real CLI and a real server: import, export, re-import.

A copy of ``../shared/corpus/ito-dotdir`` (Ito's own ``.ito/``) is imported with ``loom import``
into a fresh project, exported with ``loom export`` into an empty directory, and compared file
by file. What must come back is taken from :func:`loom.tree.read_tree` of the source (so the
four ids archived twice are expected only in their winning directory); a few independent
counts keep that expectation from being vacuous.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from conftest import LiveServer, start_server
from loom.tree import ItoTree, read_tree

from ._support import LoomProcess, api_get, artifact_files, clean_env

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "ito-dotdir"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not available")

# Superseded by a later directory for the same id (see tests/test_corpus.py).
SUPERSEDED_ARCHIVES = (
    "changes/archive/2026-03-02-024-02_add-cli-backend-client",
    "changes/archive/2026-03-02-024-03_add-backend-project-bootstrap",
    "changes/archive/2026-03-02-024-04_add-backend-event-forwarding",
    "changes/archive/2026-03-02-024-05_add-backend-archive-sync",
)
FIRST, SECOND = "acme/corpus", "acme/corpus-again"


def expected_paths(tree: ItoTree) -> set[str]:
    """The artifact files ``read_tree`` read, as paths relative to the ``.ito`` directory."""
    paths: set[str] = set()
    for change in tree.changes:
        folder = "changes/archive" if change.archived else "changes"
        base = f"{folder}/{change.dir_name}"
        texts = {
            "proposal.md": change.proposal,
            "design.md": change.design,
            "tasks.md": change.tasks,
            ".ito.yaml": change.metadata,
        }
        paths |= {f"{base}/{name}" for name, text in texts.items() if text is not None}
        paths |= {f"{base}/specs/{cap}/spec.md" for cap, _ in change.specs}
    paths |= {f"modules/{m.dir_name}/module.md" for m in tree.modules}
    paths |= {f"specs/{s.id}/spec.md" for s in tree.specs}
    return paths


def _cli(server: LiveServer, tmp_path: Path, project: str) -> LoomProcess:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = clean_env(
        LOOM_URL=server.url,
        LOOM_TOKEN=server.admin_token,
        LOOM_PROJECT=project,
        LOOM_HOLDER="importer",
        LOOM_CONFIG_HOME=str(tmp_path / "config"),
        LOOM_STATE_DIR=str(tmp_path / "state"),
        LOOM_RETRIES="1",
    )
    return LoomProcess(env, work)


def _totals(report: dict[str, Any]) -> tuple[int, int, int, int]:
    return report["created"], report["updated"], report["unchanged"], len(report["conflicts"])


def roundtrip(server: LiveServer, tmp_path: Path) -> None:
    source = tmp_path / "source" / ".ito"
    shutil.copytree(CORPUS, source, symlinks=True)
    tree = read_tree(source)
    expected = expected_paths(tree)
    # Independent of read_tree: the corpus holds at least these many artifact files, and
    # the superseded archive directories are not expected back.
    assert len(expected) > 1800
    assert not any(p.startswith(SUPERSEDED_ARCHIVES) for p in expected)
    assert all((source / d).is_dir() for d in SUPERSEDED_ARCHIVES)
    n_items = len(tree.modules) + len(tree.specs) + len(tree.changes)

    loom = _cli(server, tmp_path, FIRST)
    first = loom.json("import", str(source))
    assert _totals(first) == (n_items, 0, 0, 0)
    assert set(first["skipped"]) >= {
        f"{d}/proposal.md" for d in SUPERSEDED_ARCHIVES
    }  # the losers are reported, not silently dropped

    # -- export into a new directory: the same artifact files, byte for byte -------------
    exported = tmp_path / "exported" / ".ito"
    report = loom.json("export", str(exported))
    archived = sum(c.archived for c in tree.changes)
    assert (report["active_changes"], report["archived_changes"]) == (
        len(tree.changes) - archived,
        archived,
    )
    got = artifact_files(exported)
    assert set(got) == expected
    differing = sorted(p for p in expected if got[p] != (source / p).read_bytes())
    assert differing == []

    # -- lifecycle of every change, read from the server ----------------------------------
    token, url = server.admin_token, server.url
    rows = api_get(url, token, FIRST, "/changes", lifecycle="all")
    by_id = {row["id"]: row for row in rows}
    assert len(rows) == len(by_id) == len(tree.changes)
    for change in tree.changes:
        row = by_id[change.id]
        if change.archived_on is None:
            assert row["archived_at"] is None, change.id
        else:
            assert row["archived_at"] is not None, change.id
            assert date.fromisoformat(row["archived_at"][:10]) == change.archived_on, change.id
            # The winning directory's date: the later of two archives of the same id.
            assert change.dir_name.startswith(row["archived_at"][:10]), change.id
    active = {r["id"] for r in api_get(url, token, FIRST, "/changes")}
    assert active == {c.id for c in tree.changes if not c.archived}
    archived_ids = {r["id"] for r in api_get(url, token, FIRST, "/changes", lifecycle="archived")}
    assert archived_ids == {c.id for c in tree.changes if c.archived}

    # -- every truth spec and every module (and sub-module) is there -----------------------
    specs = api_get(url, token, FIRST, "/specs")
    assert [s["id"] for s in specs] == sorted(s.id for s in tree.specs)
    modules = api_get(url, token, FIRST, "/modules")
    module_ids = {m["id"] for m in modules} | {
        sub["id"] for m in modules for sub in m["sub_modules"]
    }
    assert module_ids >= {m.id for m in tree.modules}
    for module in tree.modules:
        detail = api_get(url, token, FIRST, f"/modules/{module.id}")
        assert detail["markdown"] == module.markdown, module.id

    # -- re-import: nothing created or updated -------------------------------------------
    again = loom.json("import", str(source))
    assert _totals(again) == (0, 0, n_items, 0)
    assert again["found"] == first["found"]
    # The export reads back as the same tree: importing it is also all unchanged.
    assert _totals(loom.json("import", str(exported))) == (0, 0, n_items, 0)

    # -- the export into a second fresh project: identical GET /export ---------------------
    second = _cli(server, tmp_path, SECOND).json("import", str(exported))
    assert _totals(second) == (n_items, 0, 0, 0)
    one = api_get(url, token, FIRST, "/export")
    two = api_get(url, token, SECOND, "/export")
    assert len(one["changes"]) == len(tree.changes)
    assert one == two


def test_corpus_import_export_roundtrip_sqlite(live_server: LiveServer, tmp_path: Path) -> None:
    roundtrip(live_server, tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_corpus_import_export_roundtrip_postgres(pg_url: str, tmp_path: Path) -> None:
    server = start_server(tmp_path / "server", pg_url)
    try:
        roundtrip(server, tmp_path)
    finally:
        server.stop()
