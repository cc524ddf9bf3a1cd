"""The ``tasks.md`` tracking file: parsing (both formats), readiness and mutations.

Pure functions over markdown text. Dates are supplied by callers. See
``shared/reference/ito-domain.md`` §4 for the format and ``docs/ito-compat.md`` for where
Loom deliberately differs from upstream Ito.
"""

from __future__ import annotations

from loom.domain.tasks._add import add_task
from loom.domain.tasks._model import (
    DiagnosticLevel,
    Progress,
    TaskDiagnostic,
    TaskItem,
    TaskKind,
    TaskMutation,
    TasksFormat,
    TasksParseResult,
    TaskStatus,
    WaveInfo,
    compare_task_ids,
    compute_progress,
    task_sort_key,
)
from loom.domain.tasks._mutate import (
    complete_task,
    shelve_task,
    start_task,
    tasks_missing_error,
    unshelve_task,
)
from loom.domain.tasks._parse import parse_tasks
from loom.domain.tasks._ready import compute_ready_blocked, next_task, work_status
from loom.domain.tasks._template import tasks_template

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
    "add_task",
    "compare_task_ids",
    "complete_task",
    "compute_progress",
    "compute_ready_blocked",
    "next_task",
    "parse_tasks",
    "shelve_task",
    "start_task",
    "task_sort_key",
    "tasks_missing_error",
    "tasks_template",
    "unshelve_task",
    "work_status",
]
