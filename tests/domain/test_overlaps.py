"""The requirement index (requirement_refs), stale detection, and overlaps between changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from loom.domain.overlaps import find_overlaps
from loom.domain.specs import (
    RequirementRef,
    apply_delta,
    requirement_refs,
    stale_requirements,
)

# The repository sits next to ``shared/`` (a checkout in ``main/``) or one level deeper (a
# worktree in ``wt/<name>/``).
CORPUS = next(
    (
        p / "shared" / "corpus" / "ito-dotdir"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "corpus" / "ito-dotdir").is_dir()
    ),
    Path("/nonexistent"),
)
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not available")


def _ops(delta: str) -> set[tuple[str, str]]:
    return {(r.op, r.requirement) for r in requirement_refs(delta, "cap")}


def test_every_operation_form() -> None:
    delta = (
        "## ADDED Requirements\n\n### Requirement: New one\nText.\n\n"
        "## MODIFIED Requirements\n\n### Requirement: Changed\nNew text.\n\n"
        "## REMOVED Requirements\n\n### Requirement: Gone\n**Reason**: obsolete\n\n"
        "## RENAMED Requirements\n\n- FROM: `### Requirement: Old name`\n"
        "- TO: `### Requirement: New name`\n"
    )
    refs = requirement_refs(delta, "cap")
    assert set(refs) == {
        RequirementRef("cap", "New one", "ADDED"),
        RequirementRef("cap", "Changed", "MODIFIED"),
        RequirementRef("cap", "Gone", "REMOVED"),
        RequirementRef("cap", "Old name", "RENAMED", "Old name", "New name"),
        RequirementRef("cap", "New name", "RENAMED", "Old name", "New name"),
    }
    assert list(refs) == sorted(refs)


def test_fenced_headings_and_markers_are_not_requirements() -> None:
    delta = (
        "<!-- ITO:START -->\n## ADDED Requirements\n\n### Requirement: Real\nText:\n"
        "```markdown\n### Requirement: Example only\n## MODIFIED Requirements\n```\n"
        "<!-- ITO:END -->\n"
    )
    assert _ops(delta) == {("ADDED", "Real")}


def test_openspec_era_bare_headings_are_read_leniently() -> None:
    # ``## ADDED`` without "Requirements": parse_delta refuses it, the index still reads it.
    delta = "## ADDED\n\n### Requirement: One\nx\n\n## MODIFIED\n\n### Requirement: Two\ny\n"
    assert _ops(delta) == {("ADDED", "One"), ("MODIFIED", "Two")}


def test_lenient_renames_and_foreign_sections() -> None:
    delta = (
        "## RENAMED\nFROM: ### Requirement: A\nTO: ### Requirement: B\nTO: dangling\n"
        "## Notes\n### Requirement: Not in a delta section\n"
    )
    refs = requirement_refs(delta, "cap")
    assert {(r.requirement, r.from_name, r.to_name) for r in refs} == {
        ("A", "A", "B"),
        ("B", "A", "B"),
    }


def test_full_spec_without_delta_sections_touches_nothing() -> None:
    spec = "# Cap\n\n## Purpose\n\nx\n\n## Requirements\n\n### Requirement: R\ntext\n"
    assert requirement_refs(spec, "cap") == ()


def test_linear_on_a_hostile_delta() -> None:
    # Pathological inputs for a backtracking pattern: long runs of '#', '`' and spaces.
    delta = "## ADDED Requirements\n" + ("### Requirement: " + "#" * 2000 + " `" * 2000 + "\n") * 50
    refs = requirement_refs(delta, "cap")
    assert refs == ()  # names longer than MAX_REQUIREMENT_NAME are not indexed


BASE = "# Cap\n\n## Purpose\n\nP.\n\n## Requirements\n\n### Requirement: R\nOld.\n"


def test_stale_when_another_archive_changed_the_requirement() -> None:
    mine = "## MODIFIED Requirements\n\n### Requirement: R\nMine.\n"
    theirs = "## MODIFIED Requirements\n\n### Requirement: R\nTheirs.\n"
    current = apply_delta(BASE, theirs, "cap")
    (stale,) = stale_requirements("cap", mine, BASE, current)
    assert (stale.requirement, stale.op) == ("R", "MODIFIED")
    assert stale.base == "### Requirement: R\nOld."
    assert stale.current == "### Requirement: R\nTheirs."
    assert stale.theirs == "### Requirement: R\nMine."
    assert stale_requirements("cap", mine, BASE, BASE) == []


def test_untouched_requirements_do_not_make_a_change_stale() -> None:
    mine = "## MODIFIED Requirements\n\n### Requirement: R\nMine.\n"
    other = "## ADDED Requirements\n\n### Requirement: S\nNew.\n"
    current = apply_delta(BASE, other, "cap")
    assert stale_requirements("cap", mine, BASE, current) == []


def test_added_requirement_that_now_exists_is_stale() -> None:
    mine = "## ADDED Requirements\n\n### Requirement: S\nMine.\n"
    current = apply_delta(BASE, "## ADDED Requirements\n\n### Requirement: S\nTheirs.\n", "cap")
    (stale,) = stale_requirements("cap", mine, BASE, current)
    assert (stale.op, stale.base, stale.current) == ("ADDED", None, "### Requirement: S\nTheirs.")


def test_removed_and_renamed_requirements_go_stale_when_removed_meanwhile() -> None:
    current = apply_delta(BASE, "## REMOVED Requirements\n\n### Requirement: R\nx\n", "cap")
    removing = "## REMOVED Requirements\n\n### Requirement: R\nno longer needed\n"
    renaming = "## RENAMED Requirements\n- FROM: `### Requirement: R`\n- TO: `### Requirement: Q`\n"
    for delta in (removing, renaming):
        (stale,) = stale_requirements("cap", delta, BASE, current)
        assert (stale.requirement, stale.current, stale.theirs) == ("R", None, None)


def test_spec_created_after_the_base() -> None:
    mine = "## ADDED Requirements\n\n### Requirement: R\nMine.\n"
    (stale,) = stale_requirements("cap", mine, None, BASE)
    assert (stale.base, stale.current) == (None, "### Requirement: R\nOld.")


def _refs_of(change_dir: Path) -> tuple[list[RequirementRef], list[str]]:
    refs: list[RequirementRef] = []
    caps: list[str] = []
    specs = change_dir / "specs"
    if specs.is_dir():
        for cap_dir in sorted(specs.iterdir()):
            delta = cap_dir / "spec.md"
            if delta.is_file():
                caps.append(cap_dir.name)
                refs.extend(requirement_refs(delta.read_text(encoding="utf-8"), cap_dir.name))
    return refs, caps


def _oracle(delta: str) -> set[tuple[str, str]]:
    """A second, naive reading: '### Requirement:' lines outside ``` fences, under a
    '## <OP> ...' heading."""
    out: set[tuple[str, str]] = set()
    op, fence = None, False
    for raw in delta.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            fence = not fence
            continue
        if fence:
            continue
        if line.startswith("## "):
            word = (line[3:].split() or [""])[0].upper()
            op = word if word in ("ADDED", "MODIFIED", "REMOVED") else None
        elif op and line.startswith("### Requirement:"):
            name = line[len("### Requirement:") :].strip()
            if name:
                out.add((op, name))
    return out


@needs_corpus
def test_every_corpus_delta_is_indexed_as_a_naive_reading_says() -> None:
    files = sorted((CORPUS / "changes").rglob("specs/*/spec.md"))
    assert len(files) > 500
    forms: set[str] = set()
    indexed = 0
    for path in files:
        delta = path.read_text(encoding="utf-8")
        cap = path.parent.name
        refs = requirement_refs(delta, cap)
        got = {(r.op, r.requirement) for r in refs if r.op != "RENAMED"}
        assert got == _oracle(delta), path
        assert all(r.capability == cap for r in refs)
        forms.update(line.strip() for line in delta.splitlines() if line.startswith("## "))
        indexed += bool(refs)
    # The corpus's forms: the standard headings and the OpenSpec-era bare ones.
    for heading in ("## ADDED Requirements", "## MODIFIED Requirements", "## ADDED"):
        assert heading in forms
    assert "## REMOVED Requirements" in forms and "## MODIFIED" in forms
    assert indexed > 400


@needs_corpus
def test_the_corpus_active_changes_strong_overlaps() -> None:
    refs: dict[str, list[RequirementRef]] = {}
    caps: dict[str, list[str]] = {}
    for change_dir in sorted((CORPUS / "changes").iterdir()):
        if change_dir.is_dir() and change_dir.name != "archive":
            refs[change_dir.name], caps[change_dir.name] = _refs_of(change_dir)
    overlaps = find_overlaps(refs, caps)
    strong = {
        (o.a, o.b): sorted(s.requirement for s in o.requirements)
        for o in overlaps
        if o.strength == "strong"
    }
    # Checked by hand: the same '### Requirement:' heading under a delta section of both.
    assert strong == {
        ("011-04_ito-init-update", "012-08_replace-raw-git-worktrees-with-worktrunk"): [
            "AGENTS.md rendered with worktree context"
        ],
        ("031-04_remove-tmux-integration", "031-05_consolidate-seven-lifecycle-skills"): [
            "Tmux skill includes helper scripts",
            "Tmux skill is distributed with Ito",
        ],
    }
    weak = [o for o in overlaps if o.strength == "weak"]
    assert ("025-12_narrow-coordination-branch", "030-03_coordination-branch-sync") in {
        (o.a, o.b) for o in weak
    }
    assert all(o.capabilities for o in overlaps)


def test_find_overlaps_orders_and_reports_each_side() -> None:
    a = [RequirementRef("cap", "R", "MODIFIED")]
    b = [RequirementRef("cap", "R", "REMOVED"), RequirementRef("cap", "S", "ADDED")]
    c: list[RequirementRef] = []
    (strong, weak) = find_overlaps(
        {"a": a, "b": b, "c": c}, {"a": ["cap"], "b": ["cap"], "c": ["other", "cap"]}
    )[:2]
    assert (strong.a, strong.b, strong.strength) == ("a", "b", "strong")
    assert [s.to_json() for s in strong.requirements] == [
        {"capability": "cap", "requirement": "R", "a_ops": ["MODIFIED"], "b_ops": ["REMOVED"]}
    ]
    assert (weak.a, weak.b, weak.strength, weak.capabilities) == ("a", "c", "weak", ("cap",))
    order = {"a": "2", "b": "1"}
    (first,) = find_overlaps({"a": a, "b": b}, {"a": ["cap"], "b": ["cap"]}, order)
    assert (first.a, first.b) == ("b", "a")
    assert first.requirements[0].a_ops == ("REMOVED",)
