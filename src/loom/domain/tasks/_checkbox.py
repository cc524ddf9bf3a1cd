"""The checkbox format: ``- [x] 1.2 Do the thing`` lines (ito-domain.md §4.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from loom.domain.tasks._model import (
    TaskDiagnostic,
    TaskItem,
    TasksParseResult,
    TaskStatus,
    compute_progress,
)

__all__ = ["CheckboxLine", "parse_checkbox", "scan_checkbox_line"]

_MARKERS = {
    " ": TaskStatus.PENDING,
    "x": TaskStatus.COMPLETE,
    "X": TaskStatus.COMPLETE,
    "~": TaskStatus.IN_PROGRESS,
    ">": TaskStatus.IN_PROGRESS,
}
_ID_TOKEN_RE = re.compile(r"\d+(?:\.\d+)*")
_SPLIT_RE = re.compile(r"[ \t]")


@dataclass(frozen=True, slots=True)
class CheckboxLine:
    """A recognised checkbox line: its status, label and where its marker character sits."""

    status: TaskStatus
    label: str
    marker_col: int


def scan_checkbox_line(line: str) -> CheckboxLine | None:
    """Recognise ``<ws>[-*] [m] label``; None for anything the parser ignores.

    As in Ito, the escaped ``- \\[x\\]`` form some markdown formatters write is not a
    checkbox.
    """
    s = line.lstrip()
    if len(s) < 5 or s[0] not in "-*" or s[1] != " " or s[2] != "[" or s[4] != "]":
        return None
    status = _MARKERS.get(s[3])
    if status is None:
        return None
    rest = s[6:] if len(s) > 5 and s[5] == " " else s[5:]
    return CheckboxLine(status=status, label=rest.strip(), marker_col=len(line) - len(s) + 3)


def _split_label(label: str) -> tuple[str, str] | None:
    m = _SPLIT_RE.search(label)
    if m is None:
        return None
    token = label[: m.start()]
    token = token.removesuffix(":").removesuffix(".")
    if _ID_TOKEN_RE.fullmatch(token) is None:
        return None
    return token, label[m.start() :].strip()


def parse_checkbox(lines: list[str]) -> tuple[TasksParseResult, tuple[int, ...]]:
    """Parse checkbox lines; returns the result and each task's marker column.

    Implicit ids (label without an id token) are ``str(n)`` for the n-th task, bumped past
    any id written explicitly elsewhere in the file, so ids never collide (upstream D-11).
    Duplicate explicit ids get a warning.
    """
    scanned: list[tuple[int, CheckboxLine, tuple[str, str] | None]] = []
    explicit: set[str] = set()
    for index, line in enumerate(lines):
        cb = scan_checkbox_line(line)
        if cb is None:
            continue
        split = _split_label(cb.label)
        if split is not None:
            explicit.add(split[0])
        scanned.append((index, cb, split))

    tasks: list[TaskItem] = []
    columns: list[int] = []
    diagnostics: list[TaskDiagnostic] = []
    used: set[str] = set()
    last_implicit = 0
    for index, cb, split in scanned:
        if split is not None:
            task_id, name = split
            if task_id in used:
                diagnostics.append(
                    TaskDiagnostic("warning", f"Duplicate task id: {task_id}", task_id, index + 1)
                )
        else:
            # Every number between the previous implicit id and this one was taken then and
            # still is: start after it (restarting at len + 1 made this loop quadratic).
            n = max(len(tasks) + 1, last_implicit + 1)
            while str(n) in explicit or str(n) in used:
                n += 1
            last_implicit = n
            task_id, name = str(n), cb.label
        used.add(task_id)
        tasks.append(TaskItem(id=task_id, name=name, status=cb.status, header_line_index=index))
        columns.append(cb.marker_col)
    result = TasksParseResult(
        format="checkbox",
        tasks=tuple(tasks),
        diagnostics=tuple(diagnostics),
        progress=compute_progress(tasks),
    )
    return result, tuple(columns)
