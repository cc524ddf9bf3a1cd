"""Spec delta parsing and merging (ito-domain.md §5.4-5.5, D-28)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loom.domain.specs import (
    ITO_END_MARKER,
    ITO_START_MARKER,
    NEW_SPEC_PURPOSE_PLACEHOLDER,
    DeltaOp,
    apply_delta,
    parse_delta,
    parse_spec,
    validate_delta,
)
from loom.errors import ValidationError

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "ito-dotdir"

BASE = (
    "# Capability Specification\n\n## Purpose\n\nStable behavior.\n\n## Requirements\n\n"
    "### Requirement: Keep\nOld keep text.\n\n#### Scenario: Kept\n- **WHEN** used\n"
    "- **THEN** works\n\n### Requirement: Change\nOld text.\n\n"
    "### Requirement: Remove\nRemove me.\n"
)


def _error(base: str | None, delta: str) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        apply_delta(base, delta, "cap")
    err = info.value
    assert err.kind == "delta_invalid"
    assert err.code == "bad_request"
    assert err.details["capability"] == "cap"
    assert err.message.startswith("invalid spec delta for 'cap': ")
    return err


# --------------------------------------------------------------------------- merging


def test_ito_fixture_new_spec_gets_requirements_heading() -> None:
    delta = "## ADDED Requirements\n\n### Requirement: Remote archive\nRemote archive behavior.\n"
    merged = apply_delta(None, delta, "remote-archive")
    assert merged is not None
    assert "## Requirements" in merged
    assert "## ADDED Requirements" not in merged
    assert merged == (
        "# remote-archive\n\n## Purpose\n\n"
        f"{NEW_SPEC_PURPOSE_PLACEHOLDER}\n\n"
        "## Requirements\n\n### Requirement: Remote archive\nRemote archive behavior.\n"
    )


def test_add_modify_remove_keeps_unrelated_requirements() -> None:
    delta = (
        "## ADDED Requirements\n\n### Requirement: Add\nAdded text.\n\n"
        "## MODIFIED Requirements\n\n### Requirement: Change\nNew text.\n\n"
        "## REMOVED Requirements\n\n### Requirement: Remove\nRemove me.\n"
    )
    merged = apply_delta(BASE, delta, "cap")
    assert merged == (
        "# Capability Specification\n\n## Purpose\n\nStable behavior.\n\n## Requirements\n\n"
        "### Requirement: Keep\nOld keep text.\n\n#### Scenario: Kept\n- **WHEN** used\n"
        "- **THEN** works\n\n### Requirement: Change\nNew text.\n\n"
        "### Requirement: Add\nAdded text.\n"
    )


def test_modified_is_replaced_in_place_and_added_is_appended() -> None:
    base = "## Requirements\n\n### Requirement: A\na\n\n### Requirement: B\nb\n"
    delta = (
        "## ADDED Requirements\n### Requirement: C\nc\n"
        "## MODIFIED Requirements\n### Requirement: A\nA2\n"
    )
    merged = apply_delta(base, delta, "cap")
    assert merged == (
        "## Requirements\n\n### Requirement: A\nA2\n\n### Requirement: B\nb\n\n"
        "### Requirement: C\nc\n"
    )


def test_rename_by_exact_heading() -> None:
    delta = "## RENAMED Requirements\n\nFROM: Change\nTO: Changed Name\n"
    merged = apply_delta(BASE, delta, "cap")
    assert merged is not None
    assert "### Requirement: Changed Name\nOld text." in merged
    assert "### Requirement: Change\n" not in merged


def test_rename_strips_bullets_backticks_and_heading_prefix() -> None:
    delta = (
        "## RENAMED Requirements\n"
        "- FROM: `### Requirement: Change`\n"
        "- TO: `### Requirement: Renamed`\n"
    )
    merged = apply_delta(BASE, delta, "cap")
    assert merged is not None
    assert "### Requirement: Renamed\nOld text." in merged


def test_renames_apply_before_modify_regardless_of_order() -> None:
    delta = (
        "## MODIFIED Requirements\n\n### Requirement: Changed Name\nNew text.\n\n"
        "## RENAMED Requirements\n\nFROM: Change\nTO: Changed Name\n"
    )
    merged = apply_delta(BASE, delta, "cap")
    assert merged is not None
    assert "### Requirement: Changed Name\nNew text." in merged
    assert "Old text." not in merged


def test_rename_to_own_name_is_allowed() -> None:
    delta = "## RENAMED Requirements\nFROM: Keep\nTO: Keep\n"
    assert apply_delta(BASE, delta, "cap") is not None


def test_removing_last_requirement_deletes_spec() -> None:
    base = "## Requirements\n\n### Requirement: Remove\nOld.\n"
    delta = "## REMOVED Requirements\n\n### Requirement: Remove\nOld.\n"
    assert apply_delta(base, delta, "cap") is None


def test_empty_result_without_removal_is_an_error() -> None:
    # Base without requirements, delta renames nothing that exists -> rename error first;
    # a delta that only removes from an empty base fails on the missing requirement.
    err = _error("# T\n", "## REMOVED Requirements\n### Requirement: X\n")
    assert err.details["problem"] == "remove_missing"


def test_managed_delta_wraps_unmanaged_base_once() -> None:
    delta = (
        f"{ITO_START_MARKER}\n## ADDED Requirements\n\n### Requirement: Add\nAdded text.\n"
        f"{ITO_END_MARKER}\n"
    )
    merged = apply_delta(BASE, delta, "cap")
    assert merged is not None
    assert merged.count(ITO_START_MARKER) == 1
    assert merged.count(ITO_END_MARKER) == 1
    assert merged.startswith(f"{ITO_START_MARKER}\n\n# Capability Specification")
    assert merged.endswith(f"### Requirement: Add\nAdded text.\n{ITO_END_MARKER}\n")


def test_new_managed_spec_without_preamble_has_title_inside_markers() -> None:
    delta = (
        f"{ITO_START_MARKER}\n## ADDED Requirements\n\n### Requirement: New\nNew.\n"
        f"{ITO_END_MARKER}\n"
    )
    merged = apply_delta(None, delta, "fresh")
    assert merged is not None
    assert merged.startswith(f"{ITO_START_MARKER}\n\n# fresh\n\n## Purpose\n\n")
    assert merged.endswith(f"### Requirement: New\nNew.\n{ITO_END_MARKER}\n")


@pytest.mark.parametrize("base", [None, "", "  \n\n"])
def test_blank_base_is_a_new_spec(base: str | None) -> None:
    merged = apply_delta(base, "## ADDED Requirements\n### Requirement: A\na\n", "cap")
    assert merged is not None
    assert merged.startswith("# cap\n\n## Purpose\n\n")


def test_new_spec_keeps_delta_preamble_as_prefix() -> None:
    delta = "# Wallets\n\n## Purpose\nPay.\n\n## ADDED Requirements\n### Requirement: W\nw\n"
    merged = apply_delta(None, delta, "wallets")
    assert merged == ("# Wallets\n\n## Purpose\nPay.\n\n## Requirements\n\n### Requirement: W\nw\n")


def test_managed_base_keeps_markers() -> None:
    base = (
        f"{ITO_START_MARKER}\n# T\n\n## Purpose\np\n\n## Requirements\n\n"
        f"### Requirement: A\na\n{ITO_END_MARKER}\n"
    )
    merged = apply_delta(base, "## ADDED Requirements\n### Requirement: B\nb\n", "cap")
    assert merged == (
        f"{ITO_START_MARKER}\n\n# T\n\n## Purpose\np\n\n## Requirements\n\n"
        f"### Requirement: A\na\n\n### Requirement: B\nb\n{ITO_END_MARKER}\n"
    )


def test_legacy_prefix_without_requirements_is_kept() -> None:
    base = "# Legacy Capability\n\n## Purpose\n\nStable context.\n"
    merged = apply_delta(base, "## ADDED Requirements\n\n### Requirement: New\nNew.\n", "cap")
    assert merged == (
        "# Legacy Capability\n\n## Purpose\n\nStable context.\n\n## Requirements\n\n"
        "### Requirement: New\nNew.\n"
    )


def test_crlf_is_normalised() -> None:
    base = BASE.replace("\n", "\r\n")
    delta = "## MODIFIED Requirements\r\n\r\n### Requirement: Change\r\nWindows text.\r\n"
    merged = apply_delta(base, delta, "cap")
    assert merged is not None
    assert merged.startswith("# Capability Specification\n\n## Purpose\n\nStable behavior.")
    assert "### Requirement: Change\nWindows text." in merged
    assert "\r" not in merged


def test_d28_trailing_section_is_not_swallowed() -> None:
    base = (
        "# T\n\n## Purpose\np\n\n## Requirements\n\n### Requirement: A\na\n\n"
        "### Requirement: B\nb\n\n## Notes\nKeep me.\n"
    )
    merged = apply_delta(base, "## MODIFIED Requirements\n### Requirement: B\nb2\n", "cap")
    assert merged == (
        "# T\n\n## Purpose\np\n\n## Requirements\n\n### Requirement: A\na\n\n"
        "### Requirement: B\nb2\n\n## Notes\nKeep me.\n"
    )
    added = apply_delta(base, "## ADDED Requirements\n### Requirement: C\nc\n", "cap")
    assert added is not None
    assert added.endswith("### Requirement: C\nc\n\n## Notes\nKeep me.\n")


def test_d28_trailing_section_stays_inside_markers() -> None:
    base = (
        f"{ITO_START_MARKER}\n## Requirements\n\n### Requirement: A\na\n\n## Notes\nn\n"
        f"{ITO_END_MARKER}\n"
    )
    merged = apply_delta(base, "## ADDED Requirements\n### Requirement: B\nb\n", "cap")
    assert merged == (
        f"{ITO_START_MARKER}\n\n## Requirements\n\n### Requirement: A\na\n\n"
        f"### Requirement: B\nb\n\n## Notes\nn\n{ITO_END_MARKER}\n"
    )


def test_intro_text_under_requirements_is_kept() -> None:
    base = "## Requirements\n\nIntro.\n\n### Requirement: A\na\n"
    merged = apply_delta(base, "## ADDED Requirements\n### Requirement: B\nb\n", "cap")
    assert merged == "## Requirements\n\nIntro.\n\n### Requirement: A\na\n\n### Requirement: B\nb\n"


def test_fenced_headings_are_text() -> None:
    delta = (
        "## ADDED Requirements\n\n### Requirement: Docs\nShow this:\n\n```markdown\n"
        "## RENAMED Requirements\n- FROM: `### Requirement: Old`\n"
        f"{ITO_END_MARKER}\n```\n\nDone.\n"
    )
    parsed = validate_delta(delta, "cap")
    assert [op.requirement.name for op in parsed.operations] == ["Docs"]
    assert parsed.operations[0].requirement.markdown.endswith("```\n\nDone.")
    assert parsed.renames == ()
    assert not parsed.managed


def test_unmatched_fence_is_ordinary_text() -> None:
    delta = (
        "## ADDED Requirements\n### Requirement: A\n```\n"
        "## REMOVED Requirements\n### Requirement: B\n"
    )
    parsed = parse_delta(delta, "cap")
    assert [(o.op, o.requirement.name) for o in parsed.operations] == [
        (DeltaOp.ADDED, "A"),
        (DeltaOp.REMOVED, "B"),
    ]


def test_delta_block_ends_at_ito_end_marker() -> None:
    delta = f"## ADDED Requirements\n### Requirement: A\na\n{ITO_END_MARKER}\ntrailer\n"
    parsed = parse_delta(delta, "cap")
    assert parsed.operations[0].requirement.markdown == "### Requirement: A\na"


def test_non_operation_heading_ends_section() -> None:
    delta = "## ADDED Requirements\n### Requirement: A\na\n\n## Notes\nfree text\n"
    parsed = validate_delta(delta, "cap")
    assert parsed.operations[0].requirement.markdown == "### Requirement: A\na"


def test_parse_spec_parts() -> None:
    doc = parse_spec(
        f"{ITO_START_MARKER}\n# T\n\n## Requirements\nIntro\n### Requirement: A\na\n## Notes\nn\n"
        f"{ITO_END_MARKER}\n",
        "cap",
    )
    assert doc.prefix == "# T"
    assert doc.intro == "Intro"
    assert [r.name for r in doc.requirements] == ["A"]
    assert doc.requirements[0].line == 6
    assert doc.trailing == "## Notes\nn"
    assert doc.managed and doc.has_requirements_heading


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("base", "delta", "problem", "message", "line"),
    [
        (
            BASE,
            "## ADDED Requirements\n\n### RequirementFoo: Not valid\nText.\n",
            "malformed_heading",
            "delta contains malformed requirement heading '### RequirementFoo: Not valid'",
            3,
        ),
        (
            BASE,
            "## ADDED Requirements\n### Requirement:   \n",
            "malformed_heading",
            "delta contains malformed requirement heading '### Requirement:'",
            2,
        ),
        (
            BASE,
            "## ADDED Requirements\n\n### Requirement: Add\nAdded.\n\n## MODIFED Requirements\n"
            "### Requirement: Change\nChanged.\n",
            "unrecognized_heading",
            "unrecognized requirement operation heading '## MODIFED Requirements'",
            6,
        ),
        (
            BASE,
            "## Added\n### Requirement: X\nx\n",
            "unrecognized_heading",
            "unrecognized requirement operation heading '## Added'",
            1,
        ),
        (
            BASE,
            "# Title\n### Requirement: Loose\nx\n",
            "outside_section",
            "requirement 'Loose' is outside a delta section",
            2,
        ),
        (
            BASE,
            "## ADDED Requirements\n### Requirement: A\na\n## Notes\n### Requirement: B\nb\n",
            "outside_section",
            "requirement 'B' is outside a delta section",
            5,
        ),
        (
            BASE,
            "## RENAMED Requirements\n### Requirement: Keep\n",
            "rename_block",
            "RENAMED Requirements must use FROM:/TO: pairs",
            2,
        ),
        (
            BASE,
            "## ADDED Requirements\n",
            "empty_section",
            "ADDED Requirements section contains no valid requirement payload",
            1,
        ),
        (
            BASE,
            "## ADDED Requirements\n\n### Requirement: Add\nAdded.\n\n## MODIFIED Requirements\n\n"
            "## REMOVED Requirements\n\n### Requirement: Remove\nRemove.\n",
            "empty_section",
            "MODIFIED Requirements section contains no valid requirement payload",
            6,
        ),
        (
            BASE,
            "## REMOVED Requirements\nnothing here\n",
            "empty_section",
            "REMOVED Requirements section contains no valid requirement payload",
            1,
        ),
        (
            BASE,
            "## RENAMED Requirements\nFROM:  ``\nTO: X\n",
            "rename_empty_from",
            "RENAMED Requirements contains an empty FROM:",
            2,
        ),
        (
            BASE,
            "## RENAMED Requirements\n\nFROM: Change\nTO:\n",
            "rename_empty_to",
            "RENAMED Requirements contains an empty TO:",
            4,
        ),
        (
            BASE,
            "## RENAMED Requirements\n\nFROM: Change\nFROM: Keep\nTO: Changed\n",
            "rename_consecutive_from",
            "RENAMED Requirements contains consecutive FROM: entries",
            4,
        ),
        (
            BASE,
            "## RENAMED Requirements\nTO: X\n",
            "rename_to_without_from",
            "RENAMED Requirements contains TO: without FROM:",
            2,
        ),
        (
            BASE,
            "## RENAMED Requirements\nFROM: Keep\n\n## ADDED Requirements\n### Requirement: Z\n",
            "rename_from_without_to",
            "RENAMED Requirements contains FROM: without TO:",
            2,
        ),
        (
            BASE,
            "## RENAMED Requirements\n\n",
            "rename_no_pair",
            "RENAMED Requirements section contains no complete FROM:/TO: pair",
            1,
        ),
        (
            BASE,
            "## ADDED Requirements\n\n### Requirement: Add\nAdded.\n\n## RENAMED Requirements\n\n"
            "FROM Change\nTO Changed\n",
            "rename_malformed",
            "RENAMED Requirements contains malformed entry 'FROM Change'",
            8,
        ),
        (
            BASE,
            "## ADDED Requirements\n### Requirement: Keep\nagain\n",
            "add_duplicate",
            "cannot add duplicate requirement 'Keep'",
            2,
        ),
        (
            BASE,
            "## ADDED Requirements\n### Requirement: N\nn\n### Requirement: N\nn\n",
            "add_duplicate",
            "cannot add duplicate requirement 'N'",
            4,
        ),
        (
            BASE,
            "## MODIFIED Requirements\n\n### Requirement: Missing\nNew.\n",
            "modify_missing",
            "cannot modify missing requirement 'Missing'",
            3,
        ),
        (
            BASE,
            "## REMOVED Requirements\n### Requirement: Missing\n",
            "remove_missing",
            "cannot remove missing requirement 'Missing'",
            2,
        ),
        (
            BASE,
            "## RENAMED Requirements\nFROM: Missing\nTO: Other\n",
            "rename_missing",
            "cannot rename missing requirement 'Missing'",
            2,
        ),
        (
            BASE,
            "## RENAMED Requirements\nFROM: Keep\nTO: Change\n",
            "rename_duplicate",
            "cannot rename requirement 'Keep' to duplicate name 'Change'",
            2,
        ),
    ],
)
def test_delta_errors(base: str, delta: str, problem: str, message: str, line: int) -> None:
    err = _error(base, delta)
    assert err.details["problem"] == problem
    assert err.message == f"invalid spec delta for 'cap': {message}"
    assert err.details["source"] == "delta"
    assert err.details["line"] == line


@pytest.mark.parametrize("delta", ["", "# Only a title\n\nSome words.\n", "## Notes\nnothing\n"])
def test_no_operations(delta: str) -> None:
    err = _error(BASE, delta)
    assert err.details["problem"] == "no_operations"
    assert err.message.endswith("delta contains no valid requirement operations")
    assert "line" not in err.details
    with pytest.raises(ValidationError):
        validate_delta(delta, "cap")
    assert parse_delta(delta, "cap").operations == ()


def test_empty_result_error() -> None:
    # A base that only renames into nothing is impossible; an empty base plus a delta that
    # renames nothing would fail earlier, so reach the rule through a requirement-less base
    # and a delta whose blocks are all removals of requirements added in the same delta.
    delta = (
        "## ADDED Requirements\n### Requirement: T\nt\n"
        "## REMOVED Requirements\n### Requirement: T\n"
    )
    err = _error(None, delta)
    assert err.details["problem"] == "empty_result"
    assert err.message.endswith(
        "delta produced an empty spec without removing existing requirements"
    )


@pytest.mark.parametrize(
    ("base", "problem", "message", "line"),
    [
        (
            "## Requirements\n\n### RequirementFoo: Existing\nOld.\n",
            "malformed_heading",
            "current spec contains malformed requirement heading '### RequirementFoo: Existing'",
            3,
        ),
        (
            "## ADDED Requirements\n\n### Requirement: Existing\nOld.\n",
            "base_has_delta_headings",
            "current spec contains delta section headings; reconcile it before archiving "
            "another change",
            1,
        ),
        (
            "## Requirements\n### Requirement: A\na\n### Requirement: A\nb\n",
            "base_duplicate_requirement",
            "current spec contains duplicate requirement headings",
            4,
        ),
    ],
)
def test_base_errors(base: str, problem: str, message: str, line: int) -> None:
    err = _error(base, "## ADDED Requirements\n### Requirement: New\nn\n")
    assert err.details["problem"] == problem
    assert err.message == f"invalid spec delta for 'cap': {message}"
    assert err.details["source"] == "base"
    assert err.details["line"] == line


def test_base_without_requirements_heading() -> None:
    err = _error("# T\n\n### Requirement: A\na\n", "## ADDED Requirements\n### Requirement: B\n")
    assert err.details["problem"] == "base_missing_requirements_heading"
    assert err.message.endswith(
        "current spec requirements are missing the '## Requirements' section"
    )


def test_fenced_malformed_heading_is_ignored() -> None:
    delta = "## ADDED Requirements\n### Requirement: A\n~~~\n### RequirementX\n~~~\n"
    assert validate_delta(delta, "cap").operations[0].requirement.name == "A"


# --------------------------------------------------------------------------- round trips


def test_merge_is_stable_when_reapplied_as_modification() -> None:
    merged = apply_delta(BASE, "## ADDED Requirements\n### Requirement: Z\nz\n", "cap")
    assert merged is not None
    again = apply_delta(merged, "## MODIFIED Requirements\n### Requirement: Z\nz\n", "cap")
    assert again == merged


def test_truth_spec_survives_a_no_op_modification() -> None:
    """A canonical truth spec is reproduced exactly by modifying a block to itself."""
    doc = parse_spec(BASE, "cap")
    block = doc.requirements[1]
    merged = apply_delta(BASE, f"## MODIFIED Requirements\n\n{block.markdown}\n", "cap")
    assert merged == BASE


# --------------------------------------------------------------------------- corpus


def _corpus_deltas() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(CORPUS.glob("changes/**/specs/*/spec.md"))


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not available")
def test_every_corpus_delta_merges_or_fails_cleanly() -> None:
    deltas = _corpus_deltas()
    assert len(deltas) > 600
    outcomes = {"merged": 0, "deleted": 0, "invalid": 0}
    for path in deltas:
        capability = path.parent.name
        base_path = CORPUS / "specs" / capability / "spec.md"
        base = base_path.read_text(encoding="utf-8") if base_path.is_file() else None
        delta = path.read_text(encoding="utf-8")
        try:
            result = apply_delta(base, delta, capability)
        except ValidationError as err:
            assert err.kind == "delta_invalid"
            assert err.details["capability"] == capability
            assert err.details["problem"]
            if "line" in err.details:
                source = delta if err.details["source"] == "delta" else base
                assert source is not None
                assert 1 <= err.details["line"] <= len(source.splitlines()) + 1
            outcomes["invalid"] += 1
            continue
        if result is None:
            outcomes["deleted"] += 1
        else:
            assert "## Requirements\n\n" in result
            assert result.endswith("\n")
            assert "\r" not in result
            outcomes["merged"] += 1
    assert sum(outcomes.values()) == len(deltas)
    assert outcomes["merged"] > 0


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not available")
def test_every_corpus_truth_spec_parses() -> None:
    specs = sorted((CORPUS / "specs").glob("*/spec.md"))
    assert specs
    for path in specs:
        doc = parse_spec(path.read_text(encoding="utf-8"), path.parent.name)
        assert doc.requirements, os.fspath(path)
