"""module.md parsing, ticking and rendering (ito-domain.md §2.4, D-23, D-25)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loom.domain.modules import (
    CHANGES_PLACEHOLDER,
    PURPOSE_PLACEHOLDER,
    SCOPE_PLACEHOLDER,
    ChecklistEntry,
    module_dir_name,
    parse_module_md,
    tick_change,
)
from loom.errors import ValidationError

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "ito-dotdir"

EXAMPLE = """# Payment Gateway

## Purpose
Card and wallet payments for the storefront.

## Scope
- payments-api
- refunds

## Depends On
- 003_accounts

## Changes
- [x] 011-01_add-card-tokens
- [ ] 011-02_wallet-support
- [ ] 011-03_refund-queue (planned)
- 011-04_plain-bullet
* [X] 011-05_star-bullet
"""


def test_parse_example() -> None:
    doc = parse_module_md(EXAMPLE)
    assert doc.title == "Payment Gateway"
    assert doc.purpose == "Card and wallet payments for the storefront."
    assert doc.description == "Card and wallet payments for the storefront."
    assert doc.scope == ("payments-api", "refunds")
    assert doc.depends_on == ("003_accounts",)
    assert doc.changes == (
        ChecklistEntry("011-01_add-card-tokens", done=True, planned=False),
        ChecklistEntry("011-02_wallet-support", done=False, planned=False),
        ChecklistEntry("011-03_refund-queue", done=False, planned=True),
        ChecklistEntry("011-04_plain-bullet", done=False, planned=False),
        ChecklistEntry("011-05_star-bullet", done=True, planned=False),
    )
    assert [e.line for e in doc.changes] == [14, 15, 16, 17, 18]
    assert [name for name, _ in doc.sections] == ["Purpose", "Scope", "Depends On", "Changes"]


def test_parse_placeholders_and_missing_sections() -> None:
    md = f"# Empty\n\n## Purpose\n{PURPOSE_PLACEHOLDER}\n\n## Scope\n{SCOPE_PLACEHOLDER}\n\n"
    md += f"## Changes\n{CHANGES_PLACEHOLDER}\n"
    doc = parse_module_md(md)
    assert doc.title == "Empty"
    assert doc.description is None
    assert doc.purpose == PURPOSE_PLACEHOLDER
    assert doc.scope == ()
    assert doc.depends_on == ()
    assert doc.changes == ()
    blank = parse_module_md("")
    assert blank.title == "" and blank.sections == () and blank.description is None


def test_description_skips_comments_and_blank_lines_and_stops_at_heading() -> None:
    md = "# X\n\n## purpose\n\n<!-- multi\nline -->\n\n  First real line  \nsecond\n## Scope\n"
    assert parse_module_md(md).description == "First real line"
    assert parse_module_md("# X\n## Purpose\n<!-- c -->\n## Scope\n- a\n").description is None


def test_crlf_and_unknown_sections() -> None:
    md = "# T\r\n\r\n## Rationale\r\nwhy\r\n\r\n## Changes\r\n- [ ] 001-01_a\r\n"
    doc = parse_module_md(md)
    assert doc.changes == (ChecklistEntry("001-01_a", done=False, planned=False),)
    assert doc.sections == (("Rationale", "why"), ("Changes", "- [ ] 001-01_a"))


def test_non_id_bullets_in_changes_are_ignored() -> None:
    md = "## Changes\n- Make things better\n- [ ] 001-01_a trailing words\n- [ ] 001-02_b\n"
    assert [e.change_id for e in parse_module_md(md).changes] == ["001-02_b"]


# --------------------------------------------------------------------------- tick_change


def test_tick_marks_exact_entry_only() -> None:
    md = "## Changes\n- [ ] 011-01_a\n- [ ] 011-01_a-b\n- [ ] 011-01_ab\n"
    assert (
        tick_change(md, "011-01_a")
        == "## Changes\n- [x] 011-01_a\n- [ ] 011-01_a-b\n- [ ] 011-01_ab\n"
    )
    assert (
        tick_change(md, "011-01_a-b")
        == "## Changes\n- [ ] 011-01_a\n- [x] 011-01_a-b\n- [ ] 011-01_ab\n"
    )


def test_tick_keeps_planned_suffix_star_bullets_and_crlf() -> None:
    md = "# T\r\n## Changes\r\n* [ ] 001-01_a (planned)\r\n- [ ] 001-02_b\r\n"
    assert (
        tick_change(md, "001-01_a")
        == "# T\r\n## Changes\r\n* [x] 001-01_a (planned)\r\n- [ ] 001-02_b\r\n"
    )
    assert tick_change(md, "001-02_b").endswith("- [x] 001-02_b\r\n")


def test_tick_last_line_without_newline() -> None:
    assert tick_change("- [ ] 001-01_a", "001-01_a") == "- [x] 001-01_a"


def test_tick_is_noop_when_absent_or_done_or_only_mentioned() -> None:
    md = "## Sequencing\n- Start with `001-01_a` first\n## Changes\n- [x] 001-01_a\n"
    assert tick_change(md, "001-01_a") == md
    assert tick_change(md, "001-09_missing") == md
    assert tick_change("text mentioning - [ ] 001-01_a inline\n", "001-01_a") == (
        "text mentioning - [ ] 001-01_a inline\n"
    )


def test_tick_id_with_regex_characters() -> None:
    md = "- [ ] 001.01-02_a.b\n- [ ] 001x01-02_aXb\n"
    assert tick_change(md, "001.01-02_a.b") == "- [x] 001.01-02_a.b\n- [ ] 001x01-02_aXb\n"


@given(
    st.lists(st.from_regex(r"\A0[0-9]{2}-[0-9]{2}_[a-z]{1,4}(-[a-z]{1,3})?\Z"), min_size=1),
    st.data(),
)
def test_tick_property(ids: list[str], data: st.DataObject) -> None:
    md = "# M\n\n## Changes\n" + "".join(f"- [ ] {i}\n" for i in ids)
    target = data.draw(st.sampled_from(ids))
    ticked = tick_change(md, target)
    assert tick_change(ticked, target) == ticked
    before = md.splitlines()
    after = ticked.splitlines()
    assert len(before) == len(after)
    for old, new in zip(before, after, strict=True):
        if old == f"- [ ] {target}":
            assert new == f"- [x] {target}"
        else:
            assert new == old
    done = {e.change_id for e in parse_module_md(ticked).changes if e.done}
    assert done == {target}


# --------------------------------------------------------------------------- naming


def test_module_dir_name() -> None:
    assert module_dir_name("024", "ito-backend") == "024_ito-backend"
    assert module_dir_name("019.01", "modules") == "01_modules"


@pytest.mark.parametrize(
    ("module_id", "name"),
    [
        ("24", "x"),
        ("024.1", "x"),
        ("abc", "x"),
        ("024", ""),
        ("024", "a/b"),
        ("024", ".."),
        ("024", "a\\b"),
        ("024", " pad"),
    ],
)
def test_module_dir_name_rejects(module_id: str, name: str) -> None:
    with pytest.raises(ValidationError) as info:
        module_dir_name(module_id, name)
    assert info.value.kind == "invalid_id"


# --------------------------------------------------------------------------- corpus


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not available")
def test_corpus_modules_parse() -> None:
    paths = sorted(CORPUS.glob("modules/*/module.md")) + sorted(
        CORPUS.glob("modules/*/sub/*/module.md")
    )
    assert len(paths) == 33
    entries = 0
    described = 0
    for path in paths:
        md = path.read_text(encoding="utf-8")
        doc = parse_module_md(md)
        assert doc.title
        described += doc.description is not None
        entries += len(doc.changes)
        for entry in doc.changes:
            assert md.splitlines()[entry.line - 1].strip().endswith(entry.change_id)
            ticked = tick_change(md, entry.change_id)
            if entry.done:
                assert ticked == md
            else:
                assert ticked != md
                changed = [
                    (a, b)
                    for a, b in zip(md.splitlines(), ticked.splitlines(), strict=True)
                    if a != b
                ]
                assert len(changed) == 1
    # every "- [x] id" / "- [ ] id" line under "## Changes" (grep-counted: 155 + 72)
    assert entries == 227
    # 11 module.md files keep the Purpose placeholder (grep -l 'Describe the purpose')
    assert described == 33 - 11
