"""add_task placement, ids, new waves and validation; the init template."""

from __future__ import annotations

from datetime import date

import pytest

from loom.domain.tasks import (
    TaskKind,
    TaskStatus,
    add_task,
    compute_ready_blocked,
    parse_tasks,
    tasks_template,
)
from loom.errors import NotFound, ValidationError

TODAY = date(2026, 7, 4)
DIV = "_" * 70


def _block(task_id: str, title: str) -> str:
    return (
        f"\n### Task {task_id}: {title}\n\n"
        "- **Files**: `path/to/file.rs`\n"
        "- **Dependencies**: None\n"
        "- **Action**:\n"
        "  [Describe what needs to be done]\n"
        "- **Verify**: `cargo test --workspace`\n"
        "- **Done When**: [Success criteria]\n"
        "- **Updated At**: 2026-07-04\n"
        "- **Status**: [ ] pending\n"
    )


def _task(task_id: str, status: str = "[ ] pending") -> str:
    return f"### Task {task_id}: t\n- **Updated At**: 2026-01-01\n- **Status**: {status}\n"


def test_add_to_template_wave_1() -> None:
    md = tasks_template("001-01_x", date(2026, 6, 1))
    out = add_task(md, "Write docs", None, TODAY)
    t = out.task
    assert (t.id, t.name, t.wave, t.status, t.updated_at, t.kind) == (
        "1.2",
        "Write docs",
        1,
        TaskStatus.PENDING,
        "2026-07-04",
        TaskKind.NORMAL,
    )
    assert t.files == ("path/to/file.rs",)
    assert t.action == "[Describe what needs to be done]"
    assert (t.verify, t.done_when) == ("cargo test --workspace", "[Success criteria]")
    lines = out.markdown.split("\n")
    assert lines[t.header_line_index] == "### Task 1.2: Write docs"
    # Inserted right after task 1.1, before the divider that starts the next section.
    old = md.split("- **Status**: [ ] pending\n", 1)
    assert (
        out.markdown
        == old[0] + "- **Status**: [ ] pending\n" + _block("1.2", "Write docs") + old[1]
    )
    r = parse_tasks(out.markdown)
    assert r.diagnostics == ()
    assert [x.id for x in r.tasks] == ["1.1", "1.2", "Checkpoint"]


def test_add_to_existing_wave_goes_to_that_wave_not_the_last() -> None:
    # Upstream D-15: the task landed in the last wave section.
    md = (
        "## Wave 1\n- **Depends On**: None\n\n" + _task("1.1") + "\n" + DIV + "\n\n"
        "## Wave 2\n- **Depends On**: Wave 1\n\n" + _task("2.1") + "\n" + DIV + "\n\n"
        "## Checkpoints\n\n### Checkpoint: c\n- **Updated At**: 2026-01-01\n"
        "- **Status**: [ ] pending\n"
    )
    out = add_task(md, "New", 1, TODAY)
    assert out.task.id == "1.2" and out.task.wave == 1
    assert out.markdown == md.replace(
        _task("1.1") + "\n", _task("1.1") + _block("1.2", "New") + "\n", 1
    )
    out = add_task(md, "Later", 2, TODAY)
    assert out.task.id == "2.2" and out.task.wave == 2
    assert parse_tasks(out.markdown).diagnostics == ()


def test_wave_1_does_not_match_wave_10() -> None:
    md = "## Wave 10\n- **Depends On**: None\n\n" + _task("10.1")
    out = add_task(md, "One", 1, TODAY)
    assert out.task.wave == 1 and out.task.id == "1.1"
    r = parse_tasks(out.markdown)
    assert [(w.wave, w.depends_on) for w in r.waves] == [(1, ()), (10, ())]
    assert out.markdown.startswith("## Wave 1\n\n- **Depends On**: None\n\n### Task 1.1: One\n")
    assert out.markdown.endswith(
        "- **Status**: [ ] pending\n\n## Wave 10\n- **Depends On**: None\n\n" + _task("10.1")
    )


def test_new_wave_is_created_in_order_with_sequential_gating() -> None:
    md = (
        "# Tasks for: x\n\n"
        + DIV
        + "\n\n## Wave 1\n- **Depends On**: None\n\n"
        + _task("1.1")
        + "\n"
        + DIV
        + "\n\n## Checkpoints\n\n### Checkpoint: c\n"
        "- **Updated At**: 2026-01-01\n- **Status**: [ ] pending\n"
    )
    out = add_task(md, "Second wave", 2, TODAY)
    assert out.task.id == "2.1" and out.task.wave == 2
    expected_section = (
        "\n" + DIV + "\n\n## Wave 2\n\n- **Depends On**: Wave 1\n" + _block("2.1", "Second wave")
    )
    assert out.markdown == md.replace(
        _task("1.1") + "\n", _task("1.1") + expected_section + "\n", 1
    )
    r = parse_tasks(out.markdown)
    assert r.diagnostics == ()
    assert [(w.wave, w.depends_on) for w in r.waves] == [(1, ()), (2, (1,))]
    ready, blocked = compute_ready_blocked(r)
    assert ready == ["1.1"]
    assert blocked["2.1"] == ["Blocked by Wave 1"]


def test_new_wave_between_existing_waves_depends_on_closest_lower() -> None:
    md = (
        "## Wave 1\n- **Depends On**: None\n\n" + _task("1.1") + "\n"
        "## Wave 5\n- **Depends On**: Wave 1\n\n" + _task("5.1")
    )
    out = add_task(md, "Mid", 3, TODAY)
    r = parse_tasks(out.markdown)
    assert r.diagnostics == ()
    assert [(w.wave, w.depends_on) for w in r.waves] == [(1, ()), (3, (1,)), (5, (1,))]
    assert [t.id for t in r.tasks] == ["1.1", "3.1", "5.1"]


def test_new_wave_appended_at_end_without_checkpoints() -> None:
    md = "## Wave 1\n- **Depends On**: None\n\n" + _task("1.1") + "\n\n"
    out = add_task(md, "Tail", 4, TODAY)
    assert out.markdown == (
        md.rstrip("\n")
        + "\n\n## Wave 4\n\n- **Depends On**: Wave 1\n"
        + _block("4.1", "Tail")
        + "\n\n"
    )
    assert out.task.wave == 4


def test_add_keeps_a_missing_final_newline_missing_and_crlf() -> None:
    md = "## Wave 1\r\n- **Depends On**: None\r\n\r\n" + _task("1.1").replace("\n", "\r\n")
    md = md.rstrip("\r\n")
    out = add_task(md, "X", 1, TODAY)
    assert not out.markdown.endswith("\n")
    assert "\n" not in out.markdown.replace("\r\n", "")
    assert out.markdown.startswith(md + "\r\n\r\n### Task 1.2: X\r\n")
    assert parse_tasks(out.markdown).diagnostics == ()


def test_add_to_empty_wave_and_to_wave_less_file() -> None:
    md = "## Wave 1\n- **Depends On**: None\n\n## Wave 2\n- **Depends On**: Wave 1\n"
    out = add_task(md, "A", 1, TODAY)
    assert out.markdown.startswith("## Wave 1\n- **Depends On**: None\n\n### Task 1.1: A\n")
    assert [t.wave for t in parse_tasks(out.markdown).tasks] == [1]
    md = "# Tasks for: x\n"
    out = add_task(md, "First", None, TODAY)
    assert out.markdown == "# Tasks for: x\n\n## Wave 1\n\n- **Depends On**: None\n" + _block(
        "1.1", "First"
    )
    assert parse_tasks(out.markdown).diagnostics == ()


def test_new_id_is_max_plus_one_anywhere_in_file() -> None:
    md = (
        "## Wave 1\n- **Depends On**: None\n\n" + _task("1.1") + _task("1.9") + "\n"
        "## Wave 2\n- **Depends On**: Wave 1\n\n" + _task("2.1") + _task("1.12")
    )
    out = add_task(md, "Next", 1, TODAY)
    assert out.task.id == "1.13"
    r = parse_tasks(out.markdown)
    assert r.errors == ()
    # Placed after the last task of wave 1 ("1.12" sits in the wave 2 section).
    assert [(t.id, t.wave) for t in r.tasks] == [
        ("1.1", 1),
        ("1.9", 1),
        ("1.13", 1),
        ("2.1", 2),
        ("1.12", 2),
    ]


def test_field_style_follows_the_file() -> None:
    md = "## Wave 1\n- **Depends On**: None\n\n### Task 1.1: t\n  * **Status**: [ ] pending\n"
    out = add_task(md, "Styled", 1, TODAY)
    assert "\n  * **Updated At**: 2026-07-04\n  * **Status**: [ ] pending\n" in out.markdown


@pytest.mark.parametrize("title", ["", "   ", "two\nlines", "cr\rhere", "tab\tin", "nul\x00"])
def test_add_rejects_bad_titles(title: str) -> None:
    with pytest.raises(ValidationError) as info:
        add_task(tasks_template("x", TODAY), title, 1, TODAY)
    assert info.value.kind == "invalid_title"


def test_add_trims_title() -> None:
    out = add_task(tasks_template("x", TODAY), "  Padded title  ", 1, TODAY)
    assert out.task.name == "Padded title"


@pytest.mark.parametrize("wave", [-1, True, 2**32, 1.5, "1"])
def test_add_rejects_bad_waves(wave: object) -> None:
    with pytest.raises(ValidationError) as info:
        add_task(tasks_template("x", TODAY), "t", wave, TODAY)  # type: ignore[arg-type]
    assert info.value.kind == "invalid_wave"


def test_add_refusals() -> None:
    with pytest.raises(ValidationError) as info:
        add_task("- [ ] 1 a\n", "t", 1, TODAY)
    assert info.value.kind == "checkbox_unsupported"
    with pytest.raises(ValidationError) as info:
        add_task("", "t", 1, TODAY)
    assert info.value.kind == "checkbox_unsupported"
    with pytest.raises(NotFound) as nf:
        add_task(None, "t", 1, TODAY)
    assert nf.value.kind == "tasks_missing"
    bad = "## Wave 1\n\n" + _task("1.1")
    with pytest.raises(ValidationError) as info:
        add_task(bad, "t", 1, TODAY)
    assert info.value.kind == "tasks_invalid"


def test_added_task_can_be_added_twice() -> None:
    md = tasks_template("x", TODAY)
    md = add_task(md, "a", 1, TODAY).markdown
    out = add_task(md, "b", 1, TODAY)
    assert out.task.id == "1.3"
    assert [t.id for t in parse_tasks(out.markdown).tasks] == ["1.1", "1.2", "1.3", "Checkpoint"]


def test_template_text() -> None:
    text = tasks_template("024-03_add-x", date(2026, 3, 2))
    assert text.count("2026-03-02") == 2
    assert text.count(DIV) == 2
    assert "## Wave 1\n\n- **Depends On**: None\n\n### Task 1.1: [Task Name]\n" in text
    assert "### Checkpoint: Review Implementation\n" in text
    assert "- **Dependencies**: All Wave 1 tasks\n" in text
