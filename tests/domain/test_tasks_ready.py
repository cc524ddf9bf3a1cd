"""Ready/blocked computation, next task, work status and task-id ordering."""

from __future__ import annotations

import pytest

from loom.domain.tasks import (
    Progress,
    compare_task_ids,
    compute_ready_blocked,
    next_task,
    parse_tasks,
    task_sort_key,
    work_status,
)
from loom.errors import ValidationError

P, IP, C, S = "[ ] pending", "[>] in-progress", "[x] complete", "[-] shelved"


def _file(waves: dict[int, tuple[str, list[tuple[str, str, str]]]], extra: str = "") -> str:
    """waves: number -> (depends on, [(task id, deps, status)])."""
    out = []
    for w, (dep, tasks) in waves.items():
        out.append(f"## Wave {w}\n- **Depends On**: {dep}\n\n")
        for tid, deps, status in tasks:
            out.append(
                f"### Task {tid}: t{tid}\n- **Dependencies**: {deps}\n"
                f"- **Updated At**: 2026-01-02\n- **Status**: {status}\n\n"
            )
    return "".join(out) + extra


CHECKPOINT = (
    "## Checkpoints\n\n### Checkpoint: Review\n- **Dependencies**: All Wave 2 tasks\n"
    "- **Updated At**: 2026-01-02\n- **Status**: [ ] pending\n"
)


# --------------------------------------------------------------------------- ordering


def test_task_sort_key_is_numeric() -> None:
    ids = ["Checkpoint", "10", "2", "1.10", "1.2", "1", "A7", "2.3.4", "10.1", "1.2.1", "b"]
    assert sorted(ids, key=task_sort_key) == [
        "1",
        "1.2",
        "1.2.1",
        "1.10",
        "2",
        "2.3.4",
        "10",
        "10.1",
        "A7",
        "Checkpoint",
        "b",
    ]


def test_compare_task_ids() -> None:
    assert compare_task_ids("2", "10") == -1
    assert compare_task_ids("1.10", "1.2") == 1
    assert compare_task_ids("1.1", "1.1") == 0
    assert compare_task_ids("Checkpoint", "99") == 1


# --------------------------------------------------------------------------- checkbox


def test_checkbox_ready_when_nothing_in_progress() -> None:
    r = parse_tasks("- [ ] 10 a\n- [x] 1 b\n- [ ] 2 c\n")
    assert compute_ready_blocked(r) == (["2", "10"], {})


def test_checkbox_nothing_ready_while_one_is_in_progress() -> None:
    r = parse_tasks("- [ ] 1 a\n- [~] 2 b\n")
    assert compute_ready_blocked(r) == ([], {})


def test_checkbox_next_prefers_in_progress_then_numeric_order() -> None:
    # Upstream D-11: ids sorted as strings picked "10" before "2".
    r = parse_tasks("- [ ] 10 a\n- [ ] 2 b\n")
    task = next_task(r)
    assert task is not None and task.id == "2"
    r = parse_tasks("- [ ] 1 a\n- [~] 10 b\n- [>] 3 c\n")
    task = next_task(r)
    assert task is not None and task.id == "3"
    assert next_task(parse_tasks("- [x] 1 a\n")) is None
    assert next_task(parse_tasks("")) is None


# --------------------------------------------------------------------------- enhanced


def test_first_wave_ready_later_waves_blocked() -> None:
    text = _file(
        {
            1: ("None", [("1.1", "None", P), ("1.2", "None", C), ("1.10", "None", P)]),
            2: ("Wave 1", [("2.1", "None", P)]),
        },
        CHECKPOINT,
    )
    ready, blocked = compute_ready_blocked(parse_tasks(text))
    assert ready == ["1.1", "1.10"]
    assert blocked == {
        "2.1": ["Blocked by Wave 1"],
        "Checkpoint": ["Blocked until all waves are complete"],
    }
    assert list(blocked) == ["2.1", "Checkpoint"]


def test_shelved_counts_as_done_for_waves() -> None:
    text = _file(
        {1: ("None", [("1.1", "None", C), ("1.2", "None", S)]), 2: ("Wave 1", [("2.1", "None", P)])}
    )
    assert compute_ready_blocked(parse_tasks(text)) == (["2.1"], {})


def test_in_progress_keeps_wave_locked_and_is_in_neither_list() -> None:
    text = _file({1: ("None", [("1.1", "None", IP)]), 2: ("Wave 1", [("2.1", "None", P)])})
    ready, blocked = compute_ready_blocked(parse_tasks(text))
    assert ready == []
    assert blocked == {"2.1": ["Blocked by Wave 1"]}


def test_multiple_wave_blockers() -> None:
    text = _file(
        {
            1: ("None", [("1.1", "None", P)]),
            2: ("None", [("2.1", "None", P)]),
            3: ("Wave 1, Wave 2", [("3.1", "None", P)]),
        }
    )
    _, blocked = compute_ready_blocked(parse_tasks(text))
    assert blocked == {"3.1": ["Blocked by Wave 1", "Blocked by Wave 2"]}


def test_dependency_blockers() -> None:
    text = _file(
        {
            1: (
                "None",
                [
                    ("1.1", "None", P),
                    ("1.2", "Task 1.1", P),
                    ("1.3", "1.4", P),
                    ("1.4", "None", C),
                    ("1.5", "1.6", P),
                    ("1.6", "None", S),
                    ("1.7", "1.1, 1.6", P),
                    ("1.8", "Checkpoint", P),
                ],
            )
        }
    )
    ready, blocked = compute_ready_blocked(parse_tasks(text))
    assert ready == ["1.1", "1.3", "1.8"]
    assert blocked == {
        "1.2": ["Dependency not complete: 1.1"],
        "1.5": ["Dependency is shelved: 1.6"],
        "1.7": ["Dependency not complete: 1.1", "Dependency is shelved: 1.6"],
    }


def test_missing_and_cross_wave_dependency_blockers() -> None:
    # Such files carry errors, but readiness still reports sensible reasons.
    text = _file(
        {
            1: ("None", [("1.1", "None", C)]),
            2: ("Wave 1", [("2.1", "1.1", P), ("2.2", "7.7", P)]),
        }
    )
    _, blocked = compute_ready_blocked(parse_tasks(text))
    assert blocked == {
        "2.1": ["Cross-wave dependency: 1.1"],
        "2.2": ["Missing dependency: 7.7"],
    }


def test_missing_depends_on_means_all_lower_waves() -> None:
    text = "## Wave 1\n- **Depends On**: None\n\n### Task 1.1: a\n- **Status**: [ ] pending\n"
    text += "\n## Wave 2\n\n### Task 2.1: b\n- **Status**: [ ] pending\n"
    _, blocked = compute_ready_blocked(parse_tasks(text))
    assert blocked == {"2.1": ["Blocked by Wave 1"]}


def test_wave_less_file_is_all_ready() -> None:
    text = "### Task 1: a\n- **Status**: [ ] pending\n### Task 2: b\n- **Status**: [ ] pending\n"
    assert compute_ready_blocked(parse_tasks(text)) == (["1", "2"], {})


def test_checkpoint_ready_once_all_waves_done() -> None:
    text = _file({1: ("None", [("1.1", "None", C)]), 2: ("Wave 1", [("2.1", "None", S)])})
    ready, blocked = compute_ready_blocked(parse_tasks(text + CHECKPOINT))
    assert (ready, blocked) == (["Checkpoint"], {})


def test_enhanced_next_is_first_ready_numerically() -> None:
    text = _file({1: ("None", [("1.10", "None", P), ("1.2", "None", P), ("1.1", "None", IP)])})
    task = next_task(parse_tasks(text))
    assert task is not None and task.id == "1.2"


def test_enhanced_next_none_when_only_blocked_or_in_progress() -> None:
    text = _file({1: ("None", [("1.1", "None", IP)]), 2: ("Wave 1", [("2.1", "None", P)])})
    assert next_task(parse_tasks(text)) is None
    assert next_task(parse_tasks(_file({1: ("None", [("1.1", "None", C)])}))) is None


def test_next_refuses_files_with_errors() -> None:
    text = _file({1: ("None", [("1.1", "9.9", P)])})
    with pytest.raises(ValidationError) as info:
        next_task(parse_tasks(text))
    assert info.value.kind == "tasks_invalid"
    assert info.value.details["diagnostics"][0]["message"] == "Missing dependency: 9.9"


# --------------------------------------------------------------------------- work status


@pytest.mark.parametrize(
    ("proposal", "specs", "progress", "status"),
    [
        (False, True, Progress(1, 0, 0, 0, 1, 1), "draft"),
        (True, False, Progress(1, 0, 0, 0, 1, 1), "draft"),
        (True, True, Progress(), "draft"),
        (True, True, Progress(2, 2, 0, 0, 0, 0), "complete"),
        (True, True, Progress(2, 1, 1, 0, 0, 0), "paused"),
        (True, True, Progress(3, 1, 1, 1, 0, 1), "in-progress"),
        (True, True, Progress(3, 1, 0, 1, 1, 2), "in-progress"),
        (True, True, Progress(3, 1, 1, 0, 1, 1), "ready"),
        (True, True, Progress(1, 0, 0, 0, 1, 1), "ready"),
        (True, True, Progress(2, 0, 2, 0, 0, 0), "paused"),
    ],
)
def test_work_status(proposal: bool, specs: bool, progress: Progress, status: str) -> None:
    assert work_status(proposal, specs, progress) == status
