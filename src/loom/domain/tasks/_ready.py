"""What can be worked on now: ready/blocked tasks, the next task, the change's work status."""

from __future__ import annotations

from loom.domain.tasks._model import (
    Progress,
    TaskItem,
    TasksParseResult,
    TaskStatus,
    task_sort_key,
)
from loom.domain.tasks._validate import CHECKPOINT_DEP
from loom.errors import ValidationError

__all__ = ["compute_ready_blocked", "next_task", "task_blockers", "tasks_invalid", "work_status"]


def tasks_invalid(result: TasksParseResult) -> ValidationError:
    """The error raised when a file with error diagnostics is used for work."""
    errors = result.errors
    first = errors[0].message if errors else "unknown problem"
    return ValidationError(
        f"tasks.md contains errors ({len(errors)}; first: {first})",
        kind="tasks_invalid",
        diagnostics=[d.to_dict() for d in errors],
    )


def _blockers_for(result: TasksParseResult) -> dict[str, list[str]]:
    """Blockers of every pending task of an enhanced file (first occurrence of each id)."""
    by_id: dict[str, TaskItem] = {}
    for t in result.tasks:
        by_id.setdefault(t.id, t)
    wave_tasks: dict[int, list[TaskItem]] = {w.wave: [] for w in result.waves}
    for t in result.tasks:
        if t.wave is not None and t.wave in wave_tasks:
            wave_tasks[t.wave].append(t)
    complete_waves = {w for w, ts in wave_tasks.items() if all(t.status.is_done for t in ts)}
    deps_of = {w.wave: w.depends_on for w in result.waves}
    all_complete = len(complete_waves) == len(wave_tasks)

    out: dict[str, list[str]] = {}
    for t in result.tasks:
        if t.status is not TaskStatus.PENDING or t.id in out:
            continue
        reasons: list[str] = []
        if t.wave is not None:
            reasons.extend(
                f"Blocked by Wave {d}"
                for d in deps_of.get(t.wave, ())
                if d != t.wave and d not in complete_waves
            )
        elif not all_complete:
            reasons.append("Blocked until all waves are complete")
        for dep in t.dependencies:
            if not dep or dep == CHECKPOINT_DEP:
                continue
            target = by_id.get(dep)
            if target is None:
                reasons.append(f"Missing dependency: {dep}")
            elif target.wave != t.wave:
                reasons.append(f"Cross-wave dependency: {dep}")
            elif target.status is TaskStatus.SHELVED:
                reasons.append(f"Dependency is shelved: {dep}")
            elif target.status is not TaskStatus.COMPLETE:
                reasons.append(f"Dependency not complete: {dep}")
        out[t.id] = reasons
    return out


def compute_ready_blocked(result: TasksParseResult) -> tuple[list[str], dict[str, list[str]]]:
    """Ready task ids and blocked ids with their reasons (§4.7), both in task-id order.

    Checkbox format: nothing is ready while a task is in progress; otherwise every pending
    task is ready; nothing is ever blocked. Enhanced format: only pending tasks are
    evaluated; a task is blocked by locked waves and by dependencies that are missing, in
    another wave, shelved or not complete.
    """
    if result.format == "checkbox":
        if any(t.status is TaskStatus.IN_PROGRESS for t in result.tasks):
            return [], {}
        ready = {t.id for t in result.tasks if t.status is TaskStatus.PENDING}
        return sorted(ready, key=task_sort_key), {}
    blockers = _blockers_for(result)
    ready_ids = sorted((i for i, r in blockers.items() if not r), key=task_sort_key)
    blocked = {i: blockers[i] for i in sorted(blockers, key=task_sort_key) if blockers[i]}
    return ready_ids, blocked


def task_blockers(result: TasksParseResult, task_id: str) -> list[str]:
    """Why a pending enhanced task cannot start (empty when it is ready)."""
    if result.format == "checkbox":
        return [
            f'Task "{t.id}" is already in-progress (complete it before starting another task)'
            for t in result.tasks
            if t.status is TaskStatus.IN_PROGRESS and t.id != task_id
        ][:1]
    return _blockers_for(result).get(task_id, [])


def next_task(result: TasksParseResult) -> TaskItem | None:
    """The task to work on next (§4.8), ordering ids numerically (``2`` before ``10``).

    Checkbox: the first in-progress task, else the first pending one. Enhanced: the first
    ready task (in-progress tasks are someone's current work and are not offered again).
    Raises ``ValidationError(kind="tasks_invalid")`` when the file has errors.
    """
    if result.errors:
        raise tasks_invalid(result)
    if result.progress.remaining == 0:
        return None
    ordered = sorted(result.tasks, key=lambda t: task_sort_key(t.id))
    if result.format == "checkbox":
        for status in (TaskStatus.IN_PROGRESS, TaskStatus.PENDING):
            for t in ordered:
                if t.status is status:
                    return t
        return None
    ready, _ = compute_ready_blocked(result)
    return result.task(ready[0]) if ready else None


def work_status(has_proposal: bool, has_specs: bool, progress: Progress) -> str:
    """The derived status of a change (§3.3): draft, complete, in-progress, paused or ready."""
    if not (has_proposal and has_specs and progress.total > 0):
        return "draft"
    if progress.complete == progress.total:
        return "complete"
    if progress.in_progress > 0:
        return "in-progress"
    if progress.pending == 0 and progress.shelved > 0:
        return "paused"
    return "ready"
