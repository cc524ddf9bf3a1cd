"""The whole real corpus (Ito's own `.ito/` at v0.1.33) through the tree adapter and parsers.

The expected numbers below were computed once by inspection and cross-checked independently
of Loom's code (commands run in ``../shared/corpus/ito-dotdir``):

- active changes: ``find changes -maxdepth 1 -mindepth 1 -type d ! -name archive | wc -l``
  = 21 (all named by valid change ids).
- archived changes: ``find changes/archive -maxdepth 1 -mindepth 1 -type d | wc -l`` = 282
  directories; four ids were archived twice (``2026-03-02-`` and ``2026-03-06-024-0[2-5]_…``),
  the later directory wins, so 278 changes and the four ``2026-03-02-024-0[2-5]_*``
  directories are skipped.
- truth specs: ``find specs -mindepth 2 -maxdepth 2 -name spec.md | wc -l`` = 202.
- modules: ``find modules -name module.md | wc -l`` = 33 (32 modules + sub-module 019.01).
- artifacts (``find changes -maxdepth 3 -name <file>``, minus the four superseded archive
  directories): proposal.md 292, design.md 180, tasks.md 295, .ito.yaml 224; delta specs
  ``find changes -path '*/specs/*' -name spec.md`` minus those directories = 616.
- tasks by status, summed over the 295 tasks.md files with ``parse_tasks``: complete 1562,
  pending 378, in-progress 2, shelved 6 (1948 tasks). Cross-checked with a regex count that
  does not use Loom: files with ``**Status**`` lines or only ``### Task``/``### Checkpoint``
  headings counted one task per heading, status from an exact ``[m] pending|in-progress|
  complete|shelved`` line (anything else, e.g. ``completed``/``discarded``, is an invalid
  status and counts as pending, as upstream); other files counted checkbox lines
  (``[x]`` complete, ``[ ]`` pending, ``[~]``/``[>]`` in-progress, ``[-]`` shelved). That
  gives 1944 tasks with the same complete/in-progress/shelved figures and 374 pending; the
  4 missing tasks are the ``### Phase N:`` headings of
  ``2026-01-23-002-05_clean-up-deprecated-change-commands/tasks.md``, which the parser reads
  as enhanced-format tasks (pending, no status line).
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from loom.domain.modules import parse_module_md
from loom.domain.specs import apply_delta, validate_delta
from loom.domain.tasks import parse_tasks
from loom.errors import ValidationError
from loom.tree import ARTIFACT_FILES, ItoTree, read_tree, write_tree

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "ito-dotdir"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not available")

SUPERSEDED_ARCHIVES = (
    "2026-03-02-024-02_add-cli-backend-client",
    "2026-03-02-024-03_add-backend-project-bootstrap",
    "2026-03-02-024-04_add-backend-event-forwarding",
    "2026-03-02-024-05_add-backend-archive-sync",
)


@pytest.fixture(scope="module")
def corpus_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("corpus") / ".ito"
    shutil.copytree(CORPUS, target, symlinks=True)
    return target


@pytest.fixture(scope="module")
def tree(corpus_copy: Path) -> ItoTree:
    return read_tree(corpus_copy)


def test_counts(tree: ItoTree) -> None:
    active = [c for c in tree.changes if c.archived_on is None]
    archived = [c for c in tree.changes if c.archived_on is not None]
    assert len(active) == 21
    assert len(archived) == 278
    assert len(tree.specs) == 202
    assert len(tree.modules) == 33
    assert [m.id for m in tree.modules if "." in m.id] == ["019.01"]
    assert sum(c.proposal is not None for c in tree.changes) == 292
    assert sum(c.design is not None for c in tree.changes) == 180
    assert sum(c.tasks is not None for c in tree.changes) == 295
    assert sum(c.metadata is not None for c in tree.changes) == 224
    assert sum(len(c.specs) for c in tree.changes) == 616
    assert len({c.id for c in tree.changes}) == 299  # no id is both active and archived


def test_superseded_archives_are_skipped(tree: ItoTree) -> None:
    for name in SUPERSEDED_ARCHIVES:
        assert f"changes/archive/{name}/proposal.md" in tree.skipped
        newer = "2026-03-06-" + name.removeprefix("2026-03-02-")
        change = next(c for c in tree.changes if c.dir_name == newer)
        assert change.archived_on is not None and change.archived_on.isoformat() == "2026-03-06"
    assert all(s.startswith("changes/") for s in tree.skipped)
    assert "changes/012-08_replace-raw-git-worktrees-with-worktrunk/README.md" in tree.skipped


def test_tasks_by_status(tree: ItoTree) -> None:
    statuses: Counter[str] = Counter()
    for change in tree.changes:
        if change.tasks is None:
            continue
        result = parse_tasks(change.tasks)
        statuses.update(task.status.value for task in result.tasks)
        line_count = len(change.tasks.splitlines())
        for diagnostic in result.diagnostics:
            assert diagnostic.message.strip(), change.id
            assert diagnostic.level in ("error", "warning")
            if diagnostic.line is not None:
                assert 1 <= diagnostic.line <= line_count, (change.id, diagnostic)
    assert statuses == {"complete": 1562, "pending": 378, "in-progress": 2, "shelved": 6}


def test_every_delta_and_module_parses(tree: ItoTree) -> None:
    specs = {spec.id: spec.markdown for spec in tree.specs}
    problems: Counter[str] = Counter()
    for change in tree.changes:
        for capability, delta in change.specs:
            try:
                validate_delta(delta, capability)
                apply_delta(specs.get(capability), delta, capability)
            except ValidationError as err:
                assert err.kind == "delta_invalid"
                assert err.message
                line = err.details.get("line")
                if line is not None and err.details["source"] == "delta":
                    assert 1 <= line <= len(delta.splitlines()) + 1
                problems[err.details["problem"]] += 1
    assert problems  # archived deltas re-applied to merged specs mostly collide
    for module in tree.modules:
        doc = parse_module_md(module.markdown)
        assert doc.title, module.id


def _is_artifact(parts: list[str]) -> bool:
    if parts[0] == "specs":
        return len(parts) == 3 and parts[2] == "spec.md"
    if parts[0] == "modules":
        return parts[-1] == "module.md"
    if parts[0] != "changes" or len(parts) < 3:
        return False
    if parts[1] == "archive":
        if parts[2] in SUPERSEDED_ARCHIVES:
            return False
        inner = parts[3:]
    else:
        inner = parts[2:]
    if len(inner) == 3 and inner[0] == "specs":
        return inner[2] == "spec.md"
    return len(inner) == 1 and inner[0] in ARTIFACT_FILES


def _artifacts(root: Path) -> dict[str, bytes]:
    """Every artifact file under ``root``, found by walking the directory."""
    found: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and _is_artifact(rel.split("/")):
            found[rel] = path.read_bytes()
    return found


def test_round_trip_is_byte_identical(tree: ItoTree, corpus_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / ".ito"
    write_tree(tree, out)
    source = _artifacts(corpus_copy)
    written = _artifacts(out)
    assert len(source) == 292 + 180 + 295 + 224 + 616 + 202 + 33
    assert written.keys() == source.keys()
    for rel, data in source.items():
        assert written[rel] == data, rel
    again = read_tree(out)
    assert (again.changes, again.modules, again.specs) == (tree.changes, tree.modules, tree.specs)
    assert again.skipped == ()
