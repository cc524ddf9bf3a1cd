"""Status mutations: start, complete, shelve, unshelve."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import pytest

from loom.domain.tasks import (
    TaskMutation,
    TaskStatus,
    complete_task,
    parse_tasks,
    shelve_task,
    start_task,
    tasks_missing_error,
    unshelve_task,
)
from loom.errors import LoomError, NotFound, ValidationError

TODAY = date(2026, 7, 4)
Mutation = Callable[[str | None, str, date], TaskMutation]
ALL: list[Mutation] = [start_task, complete_task, shelve_task, unshelve_task]

BASE = """\
# Tasks for: 001-01_x

## Wave 1
- **Depends On**: None

### Task 1.1: First
- **Dependencies**: None
- **Updated At**: 2026-01-01
- **Status**: [ ] pending

### Task 1.2: Second
- **Dependencies**: Task 1.1
- **Updated At**: 2026-01-01
- **Status**: [ ] pending

### Task 1.3: Third
- **Updated At**: 2026-01-01
- **Status**: [>] in-progress

### Task 1.4: Fourth
- **Updated At**: 2026-01-01
- **Status**: [-] shelved

### Task 1.5: Fifth
- **Updated At**: 2026-01-01
- **Status**: [x] complete

## Wave 2
- **Depends On**: Wave 1

### Task 2.1: Later
- **Updated At**: 2026-01-01
- **Status**: [ ] pending
"""


def _changed(before: str, after: str) -> dict[int, tuple[str, str]]:
    a, b = before.split("\n"), after.split("\n")
    assert len(a) == len(b)
    return {i: (x, y) for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y}


def _error(fn: Mutation, md: str | None, task_id: str) -> LoomError:
    with pytest.raises(LoomError) as info:
        fn(md, task_id, TODAY)
    return info.value


# --------------------------------------------------------------------------- start


def test_start_changes_only_status_and_date() -> None:
    out = start_task(BASE, "1.1", TODAY)
    assert _changed(BASE, out.markdown) == {
        7: ("- **Updated At**: 2026-01-01", "- **Updated At**: 2026-07-04"),
        8: ("- **Status**: [ ] pending", "- **Status**: [>] in-progress"),
    }
    assert out.task.id == "1.1"
    assert out.task.status == TaskStatus.IN_PROGRESS
    assert out.task.updated_at == "2026-07-04"
    assert out.task.header_line_index == 5


def test_start_allows_parallel_in_progress_tasks() -> None:
    md = start_task(BASE, "1.1", TODAY).markdown
    r = parse_tasks(md)
    assert [t.id for t in r.tasks if t.status == TaskStatus.IN_PROGRESS] == ["1.1", "1.3"]


@pytest.mark.parametrize(
    ("task_id", "kind", "fragment"),
    [
        ("1.3", "task_invalid_state", "is not pending (current: in-progress)"),
        ("1.5", "task_invalid_state", "is not pending (current: complete)"),
        ("1.4", "task_invalid_state", "is shelved (unshelve it first)"),
    ],
)
def test_start_refuses_wrong_state(task_id: str, kind: str, fragment: str) -> None:
    err = _error(start_task, BASE, task_id)
    assert isinstance(err, ValidationError)
    assert (err.kind, err.http_status) == (kind, 400)
    assert fragment in err.message
    assert err.details["task_id"] == task_id


def test_start_refuses_blocked_task_with_reasons() -> None:
    err = _error(start_task, BASE, "1.2")
    assert err.kind == "task_blocked"
    assert err.details["reasons"] == ["Dependency not complete: 1.1"]
    assert err.message == 'Task "1.2" is blocked:\n- Dependency not complete: 1.1'
    err = _error(start_task, BASE, "2.1")
    assert err.details["reasons"] == ["Blocked by Wave 1"]


# --------------------------------------------------------------------------- complete


def test_complete_in_progress_task() -> None:
    out = complete_task(BASE, "1.3", TODAY)
    assert _changed(BASE, out.markdown) == {
        16: ("- **Updated At**: 2026-01-01", "- **Updated At**: 2026-07-04"),
        17: ("- **Status**: [>] in-progress", "- **Status**: [x] complete"),
    }
    assert out.task.status == TaskStatus.COMPLETE


def test_complete_ready_pending_task() -> None:
    out = complete_task(BASE, "1.1", TODAY)
    assert out.task.status == TaskStatus.COMPLETE
    # ... which unblocks its dependent.
    assert start_task(out.markdown, "1.2", TODAY).task.status == TaskStatus.IN_PROGRESS


def test_complete_in_progress_task_ignores_blockers() -> None:
    md = BASE.replace(
        "### Task 1.2: Second\n- **Dependencies**: Task 1.1\n- **Updated At**: "
        "2026-01-01\n- **Status**: [ ] pending",
        "### Task 1.2: Second\n- **Dependencies**: Task 1.1\n- **Updated At**: "
        "2026-01-01\n- **Status**: [>] in-progress",
    )
    assert complete_task(md, "1.2", TODAY).task.status == TaskStatus.COMPLETE


@pytest.mark.parametrize(
    ("task_id", "kind", "fragment"),
    [
        ("1.4", "task_invalid_state", "is shelved (unshelve it first)"),
        ("1.5", "task_invalid_state", "is already complete"),
        ("1.2", "task_blocked", "Dependency not complete: 1.1"),
        ("2.1", "task_blocked", "Blocked by Wave 1"),
    ],
)
def test_complete_refusals(task_id: str, kind: str, fragment: str) -> None:
    # Upstream D-13: complete enforced nothing.
    err = _error(complete_task, BASE, task_id)
    assert err.kind == kind
    assert fragment in err.message


# --------------------------------------------------------------------------- shelve / unshelve


@pytest.mark.parametrize("task_id", ["1.1", "1.3"])
def test_shelve(task_id: str) -> None:
    out = shelve_task(BASE, task_id, TODAY)
    assert out.task.status == TaskStatus.SHELVED
    changed = _changed(BASE, out.markdown)
    assert len(changed) == 2
    assert any(new == "- **Status**: [-] shelved" for _, new in changed.values())


@pytest.mark.parametrize(
    ("task_id", "fragment"), [("1.5", "is already complete"), ("1.4", "is already shelved")]
)
def test_shelve_refusals(task_id: str, fragment: str) -> None:
    err = _error(shelve_task, BASE, task_id)
    assert err.kind == "task_invalid_state"
    assert fragment in err.message


def test_shelving_a_dependency_keeps_the_file_usable() -> None:
    md = shelve_task(BASE, "1.1", TODAY).markdown
    assert parse_tasks(md).errors == ()
    assert _error(start_task, md, "1.2").details["reasons"] == ["Dependency is shelved: 1.1"]
    md = unshelve_task(md, "1.1", TODAY).markdown
    assert parse_tasks(md).tasks[0].status == TaskStatus.PENDING


def test_unshelve() -> None:
    out = unshelve_task(BASE, "1.4", TODAY)
    assert out.task.status == TaskStatus.PENDING
    assert _changed(BASE, out.markdown) == {
        20: ("- **Updated At**: 2026-01-01", "- **Updated At**: 2026-07-04"),
        21: ("- **Status**: [-] shelved", "- **Status**: [ ] pending"),
    }


@pytest.mark.parametrize("task_id", ["1.1", "1.3", "1.5"])
def test_unshelve_refuses_unshelved(task_id: str) -> None:
    err = _error(unshelve_task, BASE, task_id)
    assert err.kind == "task_invalid_state"
    assert "is not shelved" in err.message


# --------------------------------------------------------------------------- shared rules


@pytest.mark.parametrize("fn", ALL)
def test_unknown_task(fn: Mutation) -> None:
    err = _error(fn, BASE, "9.9")
    assert isinstance(err, NotFound)
    assert err.kind == "task_not_found"
    assert err.message == 'Task "9.9" not found in tasks.md'


@pytest.mark.parametrize("fn", ALL)
def test_missing_file(fn: Mutation) -> None:
    err = _error(fn, None, "1.1")
    assert isinstance(err, NotFound)
    assert err.kind == "tasks_missing"
    assert 'Run "ito tasks init <change-id>" first' in err.message


def test_tasks_missing_error_names_the_change() -> None:
    err = tasks_missing_error("001-01_x")
    assert err.kind == "tasks_missing" and err.http_status == 404
    assert 'Run "ito tasks init 001-01_x" first.' in err.message


@pytest.mark.parametrize("fn", ALL)
def test_files_with_errors_are_refused(fn: Mutation) -> None:
    md = BASE.replace("- **Dependencies**: None\n", "- **Dependencies**: 7.7\n", 1)
    err = _error(fn, md, "1.4")
    assert err.kind == "tasks_invalid"
    assert err.details["diagnostics"] == [
        {"level": "error", "message": "Missing dependency: 7.7", "task_id": "1.1", "line": 6}
    ]


def test_warnings_do_not_block_mutations() -> None:
    md = BASE.replace(
        "- **Updated At**: 2026-01-01\n- **Status**: [ ] pending\n\n### Task 1.2",
        "- **Status**: [ ] pending\n\n### Task 1.2",
    )
    assert parse_tasks(md).errors == ()
    assert start_task(md, "1.1", TODAY).task.status == TaskStatus.IN_PROGRESS


def test_today_may_be_a_datetime_but_must_be_a_date() -> None:
    out = start_task(BASE, "1.1", datetime(2026, 7, 4, 23, 59))
    assert out.task.updated_at == "2026-07-04"
    with pytest.raises(TypeError):
        start_task(BASE, "1.1", "2026-07-04")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- byte fidelity


def test_crlf_and_missing_final_newline_are_kept() -> None:
    md = BASE.replace("\n", "\r\n").rstrip("\r\n")
    out = start_task(md, "1.1", TODAY).markdown
    assert out == start_task(BASE, "1.1", TODAY).markdown.replace("\n", "\r\n").rstrip("\r\n")
    assert "\n" not in out.replace("\r\n", "")


def test_status_line_layout_is_kept() -> None:
    md = (
        "## Wave 1\n- **Depends On**: None\n\n### Task 1.1: a\n"
        "  * **Updated At**:   2026-01-01  \n"
        "  * **Status**:\t[ ] pending   \n"
    )
    out = start_task(md, "1.1", TODAY).markdown
    assert out.split("\n")[4:6] == [
        "  * **Updated At**:   2026-07-04  ",
        "  * **Status**:\t[>] in-progress   ",
    ]


def test_missing_updated_at_is_inserted_above_status() -> None:
    md = "## Wave 1\n- **Depends On**: None\n\n### Task 1.1: a\n  - **Status**: [ ] pending\n"
    out = start_task(md, "1.1", TODAY)
    assert out.markdown == (
        "## Wave 1\n- **Depends On**: None\n\n### Task 1.1: a\n"
        "  - **Updated At**: 2026-07-04\n  - **Status**: [>] in-progress\n"
    )
    assert out.task.updated_at == "2026-07-04"


def test_inserted_updated_at_keeps_a_missing_final_newline_missing() -> None:
    md = "## Wave 1\n- **Depends On**: None\n\n### Task 1.1: a\n- **Status**: [ ] pending"
    out = start_task(md, "1.1", TODAY)
    assert out.markdown == (
        "## Wave 1\n- **Depends On**: None\n\n### Task 1.1: a\n"
        "- **Updated At**: 2026-07-04\n- **Status**: [>] in-progress"
    )
    crlf = md.replace("\n", "\r\n")
    assert start_task(crlf, "1.1", TODAY).markdown == out.markdown.replace("\n", "\r\n")


def test_checkbox_markers_change_only() -> None:
    md = "# Tasks\n  - [ ] 1 a\r\n* [~] 2 b\r\n- [x] 3 c"
    out = complete_task(md, "2", TODAY)
    assert out.markdown == "# Tasks\n  - [ ] 1 a\r\n* [x] 2 b\r\n- [x] 3 c"
    assert out.task.status == TaskStatus.COMPLETE
    out = start_task(out.markdown, "1", TODAY)
    assert out.markdown == "# Tasks\n  - [~] 1 a\r\n* [x] 2 b\r\n- [x] 3 c"
    assert out.task.header_line_index == 1


# --------------------------------------------------------------------------- checkbox rules


def test_checkbox_start_refuses_when_another_is_in_progress() -> None:
    err = _error(start_task, "- [ ] 1 a\n- [~] 2 b\n", "1")
    assert err.kind == "task_blocked"
    assert err.details["reasons"] == [
        'Task "2" is already in-progress (complete it before starting another task)'
    ]


@pytest.mark.parametrize(("task_id", "state"), [("2", "in-progress"), ("3", "complete")])
def test_checkbox_start_refuses_non_pending(task_id: str, state: str) -> None:
    err = _error(start_task, "- [ ] 1 a\n- [~] 2 b\n- [x] 3 c\n", task_id)
    assert err.kind == "task_invalid_state"
    assert f"(current: {state})" in err.message


def test_checkbox_complete_rules() -> None:
    md = "- [ ] 1 a\n- [~] 2 b\n- [x] 3 c\n"
    assert complete_task(md, "1", TODAY).markdown == "- [x] 1 a\n- [~] 2 b\n- [x] 3 c\n"
    assert complete_task(md, "2", TODAY).task.status == TaskStatus.COMPLETE
    assert _error(complete_task, md, "3").kind == "task_invalid_state"


@pytest.mark.parametrize("fn", [shelve_task, unshelve_task])
def test_checkbox_cannot_shelve(fn: Mutation) -> None:
    err = _error(fn, "- [ ] 1 a\n", "1")
    assert err.kind == "checkbox_unsupported"
    err = _error(fn, "", "1")
    assert err.kind == "checkbox_unsupported"


def test_checkbox_index_fallback_counts_only_parsed_lines() -> None:
    # Upstream D-11: the fallback counted "- [-]" lines the parser ignores.
    md = "- [ ] first\n- [-] ignored\n- [ ] 5 five\n- [ ] last\n"
    r = parse_tasks(md)
    assert [t.id for t in r.tasks] == ["1", "5", "3"]
    out = start_task(md, "2", TODAY)
    assert out.task.id == "5"
    assert out.markdown == "- [ ] first\n- [-] ignored\n- [~] 5 five\n- [ ] last\n"
    assert _error(start_task, md, "4").kind == "task_not_found"
    assert _error(start_task, md, "0").kind == "task_not_found"


def test_checkbox_duplicate_ids_target_the_first() -> None:
    md = "- [ ] 1 a\n- [ ] 1 b\n"
    out = complete_task(md, "1", TODAY)
    assert out.markdown == "- [x] 1 a\n- [ ] 1 b\n"
    assert out.task.name == "a"
