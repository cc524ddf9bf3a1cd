"""Finding 4: the archive merge is linear in operations + requirements, and keeps the list
semantics (first requirement of a repeated name) of the scan it replaced."""

from __future__ import annotations

import pytest

from loom.domain.specs import apply_delta
from loom.errors import ValidationError

from ._hostile import MAX_GROWTH, best_time


def _added(n: int) -> str:
    return "## ADDED Requirements\n\n" + "".join(
        f"### Requirement: r{i}\nThe system SHALL r{i}.\n\n" for i in range(n)
    )


def test_merge_time_grows_linearly_with_the_number_of_requirements() -> None:
    # Each operation scanned the whole list: 20,000 ADDED requirements took 7.5 s.
    small = best_time(lambda d: apply_delta(None, d, "cap"), _added(5_000))
    big = best_time(lambda d: apply_delta(None, d, "cap"), _added(20_000))
    assert big / max(small, 0.005) < MAX_GROWTH


BASE = (
    "# cap\n\n## Purpose\n\nP.\n\n## Requirements\n\n"
    "### Requirement: a\nA1.\n\n### Requirement: b\nB.\n\n### Requirement: d\nD.\n"
)


def test_remove_then_add_and_modify_keep_the_list_semantics() -> None:
    out = apply_delta(
        BASE,
        "## REMOVED Requirements\n\n### Requirement: a\n\n"
        "## ADDED Requirements\n\n### Requirement: a\nA2.\n\n"
        "## MODIFIED Requirements\n\n### Requirement: d\nD2.\n",
        "cap",
    )
    assert out is not None and "A1." not in out
    assert out.index("### Requirement: b") < out.index("D2.") < out.index("A2.")
    with pytest.raises(ValidationError) as err:
        apply_delta(BASE, "## ADDED Requirements\n\n### Requirement: b\nX.\n", "cap")
    assert err.value.details["problem"] == "add_duplicate"


def test_renames_keep_position_and_refuse_duplicates() -> None:
    renamed = apply_delta(BASE, "## RENAMED Requirements\n\n- FROM: `b`\n- TO: `c`\n", "cap")
    assert renamed is not None
    assert renamed.index("A1.") < renamed.index("### Requirement: c") < renamed.index("D.")
    with pytest.raises(ValidationError) as err:
        apply_delta(BASE, "## RENAMED Requirements\n\n- FROM: `b`\n- TO: `a`\n", "cap")
    assert err.value.details["problem"] == "rename_duplicate"
    then_added = apply_delta(
        BASE,
        "## RENAMED Requirements\n\n- FROM: `b`\n- TO: `c`\n\n"
        "## ADDED Requirements\n\n### Requirement: b\nB2.\n",
        "cap",
    )
    assert then_added is not None and then_added.rstrip().endswith("B2.")
