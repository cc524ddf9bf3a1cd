"""Value types of the tasks domain and their JSON shapes (API.md §2.5)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

__all__ = [
    "DiagnosticLevel",
    "Progress",
    "TaskDiagnostic",
    "TaskItem",
    "TaskKind",
    "TaskMutation",
    "TaskStatus",
    "TasksFormat",
    "TasksParseResult",
    "WaveInfo",
    "compare_task_ids",
    "compute_progress",
    "task_sort_key",
]

DiagnosticLevel = Literal["error", "warning"]
TasksFormat = Literal["enhanced", "checkbox"]


class TaskStatus(StrEnum):
    """The status of one task; the values are the enhanced-format labels."""

    PENDING = "pending"
    IN_PROGRESS = "in-progress"
    COMPLETE = "complete"
    SHELVED = "shelved"

    @property
    def is_done(self) -> bool:
        """Complete and shelved both count as done for wave gating."""
        return self in (TaskStatus.COMPLETE, TaskStatus.SHELVED)


class TaskKind(StrEnum):
    """A runnable task, or a checkpoint that needs explicit (human) approval."""

    NORMAL = "normal"
    CHECKPOINT = "checkpoint"


@dataclass(frozen=True, slots=True)
class TaskItem:
    """One task as parsed from ``tasks.md``."""

    id: str
    name: str
    wave: int | None = None
    status: TaskStatus = TaskStatus.PENDING
    updated_at: str | None = None
    dependencies: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    action: str = ""
    verify: str | None = None
    done_when: str | None = None
    requirements: tuple[str, ...] = ()
    kind: TaskKind = TaskKind.NORMAL
    header_line_index: int = 0
    """0-based index of the task's heading (enhanced) or checkbox line."""

    def to_dict(self) -> dict[str, Any]:
        """The API.md TaskItem; ``wave``, ``updated_at``, ``verify``, ``done_when`` are
        omitted when absent (as upstream Ito does)."""
        out: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.wave is not None:
            out["wave"] = self.wave
        out["status"] = self.status.value
        if self.updated_at is not None:
            out["updated_at"] = self.updated_at
        out["dependencies"] = list(self.dependencies)
        out["files"] = list(self.files)
        out["action"] = self.action
        if self.verify is not None:
            out["verify"] = self.verify
        if self.done_when is not None:
            out["done_when"] = self.done_when
        out["requirements"] = list(self.requirements)
        out["kind"] = self.kind.value
        out["header_line_index"] = self.header_line_index
        return out


@dataclass(frozen=True, slots=True)
class WaveInfo:
    """A ``## Wave N`` section and the waves it waits for."""

    wave: int
    depends_on: tuple[int, ...] = ()
    header_line_index: int = 0
    depends_on_line_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "depends_on": list(self.depends_on),
            "header_line_index": self.header_line_index,
            "depends_on_line_index": self.depends_on_line_index,
        }


@dataclass(frozen=True, slots=True)
class TaskDiagnostic:
    """A problem found while parsing; ``line`` is 1-based."""

    level: DiagnosticLevel
    message: str
    task_id: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"level": self.level, "message": self.message}
        if self.task_id is not None:
            out["task_id"] = self.task_id
        if self.line is not None:
            out["line"] = self.line
        return out


@dataclass(frozen=True, slots=True)
class Progress:
    """Counts by status; ``remaining`` = total - (complete + shelved)."""

    total: int = 0
    complete: int = 0
    shelved: int = 0
    in_progress: int = 0
    pending: int = 0
    remaining: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "total": self.total,
            "complete": self.complete,
            "shelved": self.shelved,
            "in_progress": self.in_progress,
            "pending": self.pending,
            "remaining": self.remaining,
        }


@dataclass(frozen=True, slots=True)
class TasksParseResult:
    """Everything parsed from one tracking file. Tasks are in source order, waves by number."""

    format: TasksFormat = "checkbox"
    tasks: tuple[TaskItem, ...] = ()
    waves: tuple[WaveInfo, ...] = ()
    diagnostics: tuple[TaskDiagnostic, ...] = ()
    progress: Progress = field(default_factory=Progress)

    @property
    def errors(self) -> tuple[TaskDiagnostic, ...]:
        """The error-level diagnostics (a file with any is refused by every mutation)."""
        return tuple(d for d in self.diagnostics if d.level == "error")

    def task(self, task_id: str) -> TaskItem | None:
        """The first task with this id, or None."""
        for t in self.tasks:
            if t.id == task_id:
                return t
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "tasks": [t.to_dict() for t in self.tasks],
            "waves": [w.to_dict() for w in self.waves],
            "diagnostics": [d.to_dict() for d in self.diagnostics],
            "progress": self.progress.to_dict(),
        }


def compute_progress(tasks: Iterable[TaskItem]) -> Progress:
    """Count tasks by status."""
    counts = dict.fromkeys(TaskStatus, 0)
    total = 0
    for t in tasks:
        counts[t.status] += 1
        total += 1
    done = counts[TaskStatus.COMPLETE] + counts[TaskStatus.SHELVED]
    return Progress(
        total=total,
        complete=counts[TaskStatus.COMPLETE],
        shelved=counts[TaskStatus.SHELVED],
        in_progress=counts[TaskStatus.IN_PROGRESS],
        pending=counts[TaskStatus.PENDING],
        remaining=total - done,
    )


_NUMERIC_TASK_ID = re.compile(r"\d+(?:\.\d+)*")


def _number_key(digits: str) -> tuple[int, str]:
    """Orders digit strings as their numbers do, without ``int()`` (which refuses strings
    over 4,300 digits): fewer significant digits first, then by digits."""
    significant = digits.lstrip("0")
    return (len(significant), significant)


def task_sort_key(task_id: str) -> tuple[int, tuple[tuple[int, str], ...], str]:
    """Order task ids: dotted numbers first, numerically (``2`` < ``10``, ``1.2`` < ``1.10``),
    then everything else by string."""
    if _NUMERIC_TASK_ID.fullmatch(task_id):
        return (0, tuple(_number_key(p) for p in task_id.split(".")), task_id)
    return (1, (), task_id)


def compare_task_ids(a: str, b: str) -> int:
    """-1, 0 or 1, in :func:`task_sort_key` order."""
    ka, kb = task_sort_key(a), task_sort_key(b)
    return (ka > kb) - (ka < kb)


@dataclass(frozen=True, slots=True)
class TaskMutation:
    """The rewritten markdown and the re-parsed target task.

    ``result`` is the whole re-parsed file and ``previous`` the target as it was before, so
    callers need not parse the markdown again (a large tasks.md takes milliseconds).
    """

    markdown: str
    task: TaskItem
    result: TasksParseResult | None = None
    previous: TaskItem | None = None
