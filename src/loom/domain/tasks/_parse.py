"""Format detection and the ``parse_tasks`` entry point."""

from __future__ import annotations

import re
from dataclasses import dataclass

from loom.domain._memo import memoized
from loom.domain.tasks._checkbox import parse_checkbox, scan_checkbox_line
from loom.domain.tasks._enhanced import (
    WAVE_HEADING_RE,
    TaskLayout,
    match_task_heading,
    scan_enhanced,
)
from loom.domain.tasks._model import TasksFormat, TasksParseResult, compute_progress
from loom.domain.tasks._text import content_lines
from loom.domain.tasks._validate import build_waves, relational_diagnostics

__all__ = ["ParsedFile", "detect_format", "parse_file", "parse_tasks"]

_TASKS_FOR_RE = re.compile(r"# Tasks for:")


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """A parse result plus where each task lives in the file (for the mutations)."""

    result: TasksParseResult
    lines: tuple[str, ...]
    layouts: tuple[TaskLayout, ...] = ()
    """Enhanced format: one per task, aligned with ``result.tasks``."""
    marker_cols: tuple[int, ...] = ()
    """Checkbox format: the column of each task's marker character."""


def detect_format(lines: list[str]) -> TasksFormat:
    """Ito's detection (§4.1): any enhanced heading makes the file look enhanced."""
    for line in lines:
        if (
            _TASKS_FOR_RE.match(line)
            or WAVE_HEADING_RE.fullmatch(line)
            or match_task_heading(line) is not None
        ):
            return "enhanced"
    return "checkbox"


@memoized
def parse_file(markdown: str | None) -> ParsedFile:
    """Parse and keep the layout. ``None`` (no file) parses as an empty checkbox result."""
    if not markdown:
        return ParsedFile(result=TasksParseResult(), lines=())
    lines = content_lines(markdown)
    if detect_format(lines) == "enhanced":
        scan = scan_enhanced(lines)
        # Upstream D-6: a file that merely looks enhanced (a "# Tasks for:" title, a stray
        # "### Notes: x" heading) but has no task with a Status line, while it does have
        # checkbox items, is a checkbox file.
        if scan.with_status_line or not any(scan_checkbox_line(x) for x in lines):
            diagnostics = scan.diagnostics
            waves = build_waves(scan.waves, diagnostics)
            diagnostics.extend(relational_diagnostics(scan.tasks, waves))
            result = TasksParseResult(
                format="enhanced",
                tasks=tuple(scan.tasks),
                waves=waves,
                diagnostics=tuple(diagnostics),
                progress=compute_progress(scan.tasks),
            )
            return ParsedFile(result=result, lines=tuple(lines), layouts=tuple(scan.layouts))
    result, cols = parse_checkbox(lines)
    return ParsedFile(result=result, lines=tuple(lines), marker_cols=cols)


def parse_tasks(markdown: str | None) -> TasksParseResult:
    """Parse a ``tasks.md`` file in either format (ito-domain.md §4.1-4.6, with Loom's fixes).

    ``None`` or an empty string gives the empty checkbox result (no tasks, zero progress).
    Never raises on any text.
    """
    return parse_file(markdown).result
