"""Status mutations: start, complete, shelve, unshelve (§4.9-4.10 with Loom's fixes).

A mutation rewrites only the target task's Status and Updated At lines (inserting them when
missing). Every other byte of the file is kept, including CRLF endings and a missing final
newline. The date is supplied by the caller (the server passes the UTC date).
"""

from __future__ import annotations

from datetime import date

from loom.domain._memo import memoized
from loom.domain.tasks._enhanced import FIELD_RE, TaskLayout
from loom.domain.tasks._model import TaskItem, TaskMutation, TaskStatus
from loom.domain.tasks._parse import ParsedFile, parse_file
from loom.domain.tasks._ready import task_blockers, tasks_invalid
from loom.domain.tasks._text import (
    dominant_eol,
    insert_lines,
    iso_day,
    line_ending,
    raw_lines,
    strip_eol,
)
from loom.errors import NotFound, ValidationError

__all__ = [
    "complete_task",
    "load_for_mutation",
    "shelve_task",
    "start_task",
    "tasks_missing_error",
    "unshelve_task",
]

_ENHANCED_MARK = {
    TaskStatus.PENDING: "[ ] pending",
    TaskStatus.IN_PROGRESS: "[>] in-progress",
    TaskStatus.COMPLETE: "[x] complete",
    TaskStatus.SHELVED: "[-] shelved",
}
_CHECKBOX_MARK = {
    TaskStatus.PENDING: " ",
    TaskStatus.IN_PROGRESS: "~",
    TaskStatus.COMPLETE: "x",
}
_FIELD_LABELS = ("**Status**:", "**Updated At**:")


def _show(text: str) -> str:
    return text if len(text) <= 100 else text[:100] + "…"


def tasks_missing_error(change_id: str | None = None) -> NotFound:
    """The 404 for a change without a tasks file."""
    cid = _show(change_id) if change_id else "<change-id>"
    return NotFound(
        f'No tasks found for "{cid}". Run "ito tasks init {cid}" first.', kind="tasks_missing"
    )


def load_for_mutation(markdown: str | None) -> ParsedFile:
    """Parse for a mutation: a missing file is ``tasks_missing``, errors are ``tasks_invalid``."""
    if markdown is None:
        raise tasks_missing_error()
    parsed = parse_file(markdown)
    if parsed.result.errors:
        raise tasks_invalid(parsed.result)
    return parsed


def _find(parsed: ParsedFile, task_id: str) -> int:
    tasks = parsed.result.tasks
    for i, t in enumerate(tasks):
        if t.id == task_id:
            return i
    if parsed.result.format == "checkbox" and task_id.isascii() and task_id.isdigit():
        k = int(task_id)
        if 1 <= k <= len(tasks):
            return k - 1
    raise NotFound(
        f'Task "{_show(task_id)}" not found in tasks.md', kind="task_not_found", task_id=task_id
    )


def _invalid_state(task: TaskItem, message: str) -> ValidationError:
    return ValidationError(
        message, kind="task_invalid_state", task_id=task.id, status=task.status.value
    )


def _blocked(task: TaskItem, reasons: list[str]) -> ValidationError:
    text = "".join(f"\n- {r}" for r in reasons)
    return ValidationError(
        f'Task "{task.id}" is blocked:{text}',
        kind="task_blocked",
        task_id=task.id,
        reasons=reasons,
    )


# --------------------------------------------------------------------------- rewriting


def _set_value(raw: str, value: str) -> str:
    """Replace the value after ``**Status**:`` / ``**Updated At**:``, keeping the rest."""
    body, eol = strip_eol(raw), line_ending(raw)
    # String operations, not a pattern: a lazy value followed by trailing blanks backtracks
    # quadratically on a long run of spaces.
    found = [(at, label) for label in _FIELD_LABELS if (at := body.find(label)) >= 0]
    if not found:  # pragma: no cover - the parser only records lines that match
        raise AssertionError("not a field line")
    at, label = min(found)
    head, rest = body[: at + len(label)], body[at + len(label) :]
    after_gap = rest.lstrip(" \t")
    gap = rest[: len(rest) - len(after_gap)]
    old_value = after_gap.rstrip()
    tail = after_gap[len(old_value) :]
    return f"{head}{gap or ' '}{value}{tail}{eol}"


def _rewrite_enhanced(
    raws: list[str], layout: TaskLayout, status: TaskStatus, day: str
) -> list[str]:
    """Rewrite the Status line and the Updated At line (inserted above Status if missing).

    A task without a Status line is a parse error, so mutations never reach one.
    """
    out = list(raws)
    s, u = layout.status_line, layout.updated_line
    if s is None:  # pragma: no cover - refused earlier as "Invalid or missing status"
        raise AssertionError("task without a Status line")
    out[s] = _set_value(out[s], _ENHANCED_MARK[status])
    if u is not None:
        out[u] = _set_value(out[u], day)
    else:
        eol = line_ending(out[s]) or dominant_eol(out)
        insert_lines(out, s, [f"{_prefix_of(out[s])}**Updated At**: {day}"], eol)
    return out


def _prefix_of(raw: str) -> str:
    m = FIELD_RE.match(strip_eol(raw))
    return m.group("prefix") if m else "- "


def _apply(
    markdown: str, parsed: ParsedFile, index: int, status: TaskStatus, today: date
) -> TaskMutation:
    day = iso_day(today)
    raws = raw_lines(markdown)
    if parsed.result.format == "checkbox":
        line = parsed.result.tasks[index].header_line_index
        col = parsed.marker_cols[index]
        raw = raws[line]
        raws[line] = raw[:col] + _CHECKBOX_MARK[status] + raw[col + 1 :]
    else:
        raws = _rewrite_enhanced(raws, parsed.layouts[index], status, day)
    text = "".join(raws)
    after = parse_file(text).result
    return TaskMutation(
        markdown=text,
        task=_same_task(after.tasks, parsed, index),
        result=after,
        previous=parsed.result.tasks[index],
    )


def _same_task(tasks: tuple[TaskItem, ...], parsed: ParsedFile, index: int) -> TaskItem:
    """The re-parsed target: the n-th task with the same id as before (ids may repeat)."""
    before = parsed.result.tasks
    target = before[index].id
    nth = sum(1 for t in before[:index] if t.id == target)
    matches = [t for t in tasks if t.id == target]
    return matches[nth]


# --------------------------------------------------------------------------- operations


@memoized
def start_task(markdown: str | None, task_id: str, today: date) -> TaskMutation:
    """Mark a task in progress.

    Enhanced: the task must be pending (a shelved task must be unshelved first) and ready.
    Checkbox: the task must be pending and no other task may be in progress.
    """
    parsed = load_for_mutation(markdown)
    assert markdown is not None
    i = _find(parsed, task_id)
    task = parsed.result.tasks[i]
    if task.status is TaskStatus.SHELVED:
        raise _invalid_state(task, f'Task "{task.id}" is shelved (unshelve it first)')
    if task.status is not TaskStatus.PENDING:
        raise _invalid_state(
            task, f'Task "{task.id}" is not pending (current: {task.status.value})'
        )
    reasons = task_blockers(parsed.result, task.id)
    if reasons:
        raise _blocked(task, reasons)
    return _apply(markdown, parsed, i, TaskStatus.IN_PROGRESS, today)


@memoized
def complete_task(markdown: str | None, task_id: str, today: date) -> TaskMutation:
    """Mark a task complete.

    Refused for a shelved task (unshelve first) and an already complete one. An in-progress
    task can always be completed; an enhanced pending task only when it is not blocked.
    """
    parsed = load_for_mutation(markdown)
    assert markdown is not None
    i = _find(parsed, task_id)
    task = parsed.result.tasks[i]
    if task.status is TaskStatus.SHELVED:
        raise _invalid_state(task, f'Task "{task.id}" is shelved (unshelve it first)')
    if task.status is TaskStatus.COMPLETE:
        raise _invalid_state(task, f'Task "{task.id}" is already complete')
    if task.status is TaskStatus.PENDING and parsed.result.format == "enhanced":
        reasons = task_blockers(parsed.result, task.id)
        if reasons:
            raise _blocked(task, reasons)
    return _apply(markdown, parsed, i, TaskStatus.COMPLETE, today)


def _enhanced_only(parsed: ParsedFile, what: str) -> None:
    if parsed.result.format == "checkbox":
        raise ValidationError(
            f"Checkbox-only tasks.md does not support {what}. Convert to the enhanced format "
            "first.",
            kind="checkbox_unsupported",
        )


@memoized
def shelve_task(markdown: str | None, task_id: str, today: date) -> TaskMutation:
    """Shelve (defer) a pending or in-progress task. Enhanced format only."""
    parsed = load_for_mutation(markdown)
    assert markdown is not None
    _enhanced_only(parsed, "shelving")
    i = _find(parsed, task_id)
    task = parsed.result.tasks[i]
    if task.status is TaskStatus.COMPLETE:
        raise _invalid_state(task, f'Task "{task.id}" is already complete')
    if task.status is TaskStatus.SHELVED:
        raise _invalid_state(task, f'Task "{task.id}" is already shelved')
    return _apply(markdown, parsed, i, TaskStatus.SHELVED, today)


@memoized
def unshelve_task(markdown: str | None, task_id: str, today: date) -> TaskMutation:
    """Return a shelved task to pending. Enhanced format only."""
    parsed = load_for_mutation(markdown)
    assert markdown is not None
    _enhanced_only(parsed, "shelving")
    i = _find(parsed, task_id)
    task = parsed.result.tasks[i]
    if task.status is not TaskStatus.SHELVED:
        raise _invalid_state(task, f'Task "{task.id}" is not shelved')
    return _apply(markdown, parsed, i, TaskStatus.PENDING, today)
