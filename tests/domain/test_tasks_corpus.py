"""Spot checks of the parser against Ito's real tasks.md files (read-only) and its speed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from loom.domain.tasks import (
    TaskKind,
    TasksParseResult,
    TaskStatus,
    compute_ready_blocked,
    parse_tasks,
    start_task,
)
from loom.errors import LoomError

CHANGES = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "ito-dotdir" / "changes"
if not CHANGES.is_dir():  # pragma: no cover - depends on the checkout layout
    CHANGES = Path("/work/shared/corpus/ito-dotdir/changes")

pytestmark = pytest.mark.skipif(not CHANGES.is_dir(), reason="Ito corpus not available")


def _files() -> list[Path]:
    return sorted(CHANGES.glob("*/tasks.md")) + sorted(CHANGES.glob("archive/*/tasks.md"))


def _parse(rel: str) -> TasksParseResult:
    return parse_tasks((CHANGES / rel).read_text(encoding="utf-8"))


def test_every_file_parses() -> None:
    # Speed is measured by bench/parse_corpus.py, not asserted here (a shared machine makes
    # a wall-clock bound flaky).
    files = _files()
    assert len(files) > 250
    texts = [f.read_text(encoding="utf-8") for f in files]
    results = [parse_tasks(t) for t in texts]
    for result in results:
        compute_ready_blocked(result)
    assert sum(len(r.tasks) for r in results) > 1500


def test_inline_actions_and_multi_span_files() -> None:
    r = _parse("001-25_tracking-file-support/tasks.md")
    assert r.format == "enhanced" and r.errors == ()
    t = r.tasks[0]
    assert (t.id, t.wave, t.status) == ("1.1", 1, TaskStatus.COMPLETE)
    assert t.files == (
        "ito-rs/crates/ito-schemas/src/**",
        "ito-rs/crates/ito-domain/src/**",
        "ito-rs/crates/ito-core/src/**",
    )
    assert t.action.startswith("Implement a shared helper to resolve the tracking file")
    assert t.verify == "bash ito-rs/tools/test-affected.sh"
    assert r.tasks[2].status == TaskStatus.SHELVED
    assert r.tasks[-1].id == "Checkpoint" and r.tasks[-1].kind == TaskKind.CHECKPOINT


def test_inline_action_with_indented_continuation() -> None:
    r = _parse("archive/2026-02-18-023-05_init-update-installer-parity/tasks.md")
    t = r.task("1.1")
    assert t is not None
    assert t.action.startswith("Add failing tests that demonstrate:\n- update clobbers")


def test_files_given_as_an_indented_list() -> None:
    r = _parse("archive/2026-02-05-001-11_tdd-red-green-coverage-guidance/tasks.md")
    t = r.task("2.2")
    assert t is not None
    assert t.files == (".ito/AGENTS.md", "docs/agent-workflow.md")
    assert t.action.startswith("Add a short section documenting RED/GREEN/REFACTOR")


def test_parenthesised_wave_heading_and_checkpoint_type() -> None:
    r = _parse("archive/2026-01-31-001-08_allow-change-number-overflow/tasks.md")
    t = r.task("3.1")
    assert t is not None
    assert (t.wave, t.kind) == (3, TaskKind.CHECKPOINT)
    assert [w.wave for w in r.waves] == [1, 2, 3]


def test_most_enhanced_tasks_now_have_an_action() -> None:
    results = [parse_tasks(f.read_text(encoding="utf-8")) for f in _files()]
    enhanced = [t for r in results if r.format == "enhanced" for t in r.tasks]
    with_action = [t for t in enhanced if t.action]
    assert len(with_action) / len(enhanced) > 0.95
    with_files = [t for t in enhanced if t.files]
    assert len(with_files) / len(enhanced) > 0.75


def test_mutations_on_real_files_never_crash() -> None:
    today = date(2026, 7, 4)
    for path in sorted(CHANGES.glob("*/tasks.md")):
        text = path.read_text(encoding="utf-8")
        for task in parse_tasks(text).tasks:
            try:
                out = start_task(text, task.id, today)
            except LoomError:
                continue
            assert out.task.status == TaskStatus.IN_PROGRESS
            assert len(out.markdown) >= len(text)
