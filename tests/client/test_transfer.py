"""Export writes the whole tree and reports progress step by step."""

from __future__ import annotations

from pathlib import Path

import httpx

from loom.client import ProjectSnapshot, export_tree
from loom.models import ImportChange, ImportModule, ImportSpec
from loom.tree import read_tree

from ._fakes import Recorder, make_client

SNAPSHOT = ProjectSnapshot(
    modules=[ImportModule(id="001", name="core", markdown="# Core\n")],
    specs=[ImportSpec(id="auth", markdown="# auth\n")],
    changes=[
        ImportChange(id="001-01_a", proposal="# A\n", tasks="- [ ] one\n"),
        ImportChange(id="001-02_b", proposal="# B\n"),
        ImportChange(id="001-03_c", proposal="# C\n", archived_at="2026-01-02T00:00:00Z"),
    ],
)


def _client() -> Recorder:
    body = SNAPSHOT.model_dump(mode="json", by_alias=True)
    return Recorder(handler=lambda r: httpx.Response(200, json=body))


def test_export_reports_progress_per_change(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    ito = tmp_path / ".ito"
    report = export_tree(make_client(_client()), ito, on_progress=lambda d, t: calls.append((d, t)))
    # Fetched (0 of 4), then modules and specs, then each of the three changes.
    assert calls == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]
    assert (report.modules, report.specs, report.active_changes, report.archived_changes) == (
        1,
        1,
        2,
        1,
    )
    tree = read_tree(ito)
    assert sorted(c.id for c in tree.changes) == ["001-01_a", "001-02_b", "001-03_c"]
    assert [s.id for s in tree.specs] == ["auth"] and [m.id for m in tree.modules] == ["001"]


def test_export_without_progress_writes_the_same_tree(tmp_path: Path) -> None:
    export_tree(make_client(_client()), tmp_path / "a" / ".ito")
    export_tree(make_client(_client()), tmp_path / "b" / ".ito", on_progress=lambda d, t: None)
    assert read_tree(tmp_path / "a" / ".ito") == read_tree(tmp_path / "b" / ".ito")
