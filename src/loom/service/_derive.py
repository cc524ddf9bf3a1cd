"""Columns derived from a change's artifacts, recomputed in the transaction of every write."""

from __future__ import annotations

import re
from collections.abc import Sequence

from loom.domain.ids import module_of, sub_module_of
from loom.domain.tasks import TasksParseResult, parse_tasks, work_status
from loom.store.changes import Derived

__all__ = ["derive", "sort_key"]

_CANONICAL = re.compile(r"^(\d{3})(?:\.(\d{2}))?-(\d+)_(.+)$")


def sort_key(change_id: str) -> str:
    """A string whose byte order is the canonical change order (numeric, legacy last).

    Module-level changes come before the module's sub-module changes; change numbers compare
    numerically (``2`` before ``10``); legacy slugs sort after every canonical id.
    """
    m = _CANONICAL.match(change_id)
    if m is None:
        return "1" + change_id
    module, sub, number, slug = m.groups()
    sub_part = "000" if sub is None else f"{int(sub) + 1:03d}"
    return f"0{module}{sub_part}{int(number):012d}_{slug}"


def derive(
    change_id: str,
    proposal: str | None,
    design: str | None,
    tasks: str | None,
    specs: Sequence[tuple[str, str]],
    parsed: TasksParseResult | None = None,
) -> Derived:
    result = parsed if parsed is not None else parse_tasks(tasks)
    progress = result.progress
    has_specs = len(specs) > 0
    return Derived(
        sort_key=sort_key(change_id),
        module_id=module_of(change_id),
        sub_module_id=sub_module_of(change_id),
        tasks_format=result.format,
        total_tasks=progress.total,
        completed_tasks=progress.complete,
        shelved_tasks=progress.shelved,
        in_progress_tasks=progress.in_progress,
        pending_tasks=progress.pending,
        has_proposal=proposal is not None,
        has_design=design is not None,
        has_specs=has_specs,
        work_status=work_status(proposal is not None, has_specs, progress),
    )
