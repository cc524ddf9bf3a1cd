"""``add_task``: append a task to wave N, creating the wave section when needed (§4.10)."""

from __future__ import annotations

import re
from datetime import date

from loom.domain._memo import memoized
from loom.domain.tasks._model import TaskMutation
from loom.domain.tasks._mutate import load_for_mutation
from loom.domain.tasks._parse import ParsedFile, parse_file
from loom.domain.tasks._text import (
    THEMATIC_BREAK_RE,
    dominant_eol,
    insert_lines,
    is_blank_or_break,
    iso_day,
    raw_lines,
)
from loom.errors import InternalError, ValidationError

__all__ = ["add_task", "new_task_block"]

_U32_MAX = 2**32 - 1
_MAX_TASK_NUMBER_DIGITS = 64
"""A task id is at most 64 characters (API.md §0), so longer numbers are never ids."""
_HEADING_RE = re.compile(r"#{1,3}[ \t]")


def _validate_title(title: object) -> str:
    if not isinstance(title, str):
        raise ValidationError("title must be a string", kind="invalid_title", field="title")
    text = title.strip()
    if not text:
        raise ValidationError("title must not be empty", kind="invalid_title", field="title")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text) or "\u2028" in text:
        raise ValidationError(
            "title must be a single line without control characters",
            kind="invalid_title",
            field="title",
        )
    return text


def _validate_wave(wave: object) -> int:
    if wave is None:
        return 1
    if isinstance(wave, bool) or not isinstance(wave, int) or not 0 <= wave <= _U32_MAX:
        raise ValidationError(
            "wave must be a non-negative integer", kind="invalid_wave", field="wave"
        )
    return wave


def new_task_block(task_id: str, title: str, day: str, prefix: str = "- ") -> list[str]:
    """The lines of a new task (Ito's placeholder fields), preceded by a blank line."""
    return [
        "",
        f"### Task {task_id}: {title}",
        "",
        f"{prefix}**Files**: `path/to/file.rs`",
        f"{prefix}**Dependencies**: None",
        f"{prefix}**Action**:",
        "  [Describe what needs to be done]",
        f"{prefix}**Verify**: `cargo test --workspace`",
        f"{prefix}**Done When**: [Success criteria]",
        f"{prefix}**Updated At**: {day}",
        f"{prefix}**Status**: [ ] pending",
    ]


def _back_over_blanks(lines: tuple[str, ...], at: int, floor: int) -> int:
    while at > floor and is_blank_or_break(lines[at - 1]):
        at -= 1
    return at


def _end_of_wave(parsed: ParsedFile, wave: int) -> int:
    """Where a new task of an existing wave goes: after the wave's last task block."""
    lines = parsed.lines
    tasks = parsed.result.tasks
    mine = [i for i, t in enumerate(tasks) if t.wave == wave]
    if mine:
        layout = parsed.layouts[max(mine, key=lambda i: tasks[i].header_line_index)]
        return _back_over_blanks(lines, layout.end, layout.header + 1)
    info = next(w for w in parsed.result.waves if w.wave == wave)
    end = next(
        (i for i in range(info.header_line_index + 1, len(lines)) if _HEADING_RE.match(lines[i])),
        len(lines),
    )
    return _back_over_blanks(lines, end, info.header_line_index + 1)


def _new_wave_section(parsed: ParsedFile, wave: int, block: list[str]) -> tuple[int, list[str]]:
    """Insertion point and lines of a new ``## Wave N`` section, in numeric order."""
    lines = parsed.lines
    waves = parsed.result.waves
    higher = [w for w in waves if w.wave > wave]
    lower = [w.wave for w in waves if w.wave < wave]
    if higher:
        anchor = min(higher, key=lambda w: w.wave).header_line_index
    else:
        anchor = next((i for i, x in enumerate(lines) if x.strip() == "## Checkpoints"), len(lines))
    at = _back_over_blanks(lines, anchor, 0)
    divider = next((x for x in lines if THEMATIC_BREAK_RE.fullmatch(x)), None)
    depends = f"Wave {max(lower)}" if lower else "None"
    if at == 0:
        section: list[str] = []
    elif divider is not None:
        section = ["", divider, ""]
    else:
        section = [""]
    section += [f"## Wave {wave}", "", f"- **Depends On**: {depends}", *block]
    return at, section


@memoized
def add_task(markdown: str | None, title: str, wave: int | None, today: date) -> TaskMutation:
    """Add a pending task ``<wave>.<max+1>`` at the end of wave ``wave`` (default 1).

    When the wave does not exist a ``## Wave N`` section is created in numeric order (before
    a higher wave or ``## Checkpoints``), depending on the closest lower wave so sequential
    gating is kept. Enhanced format only; the title must be a non-empty single line.
    """
    parsed = load_for_mutation(markdown)
    assert markdown is not None
    if parsed.result.format == "checkbox":
        raise ValidationError(
            "Cannot add tasks to checkbox-only tracking file. Convert to enhanced format first.",
            kind="checkbox_unsupported",
        )
    text = _validate_title(title)
    w = _validate_wave(wave)
    day = iso_day(today)
    prefix = f"{w}."
    numbers = [
        int(n)
        for t in parsed.result.tasks
        if t.id.startswith(prefix)
        and (n := t.id[len(prefix) :]).isascii()
        and n.isdigit()
        and len(n) <= _MAX_TASK_NUMBER_DIGITS
    ]
    new_id = f"{w}.{max(numbers, default=0) + 1}"
    prefixes = [lay.field_prefix for lay in parsed.layouts if lay.field_prefix is not None]
    block = new_task_block(new_id, text, day, prefixes[-1] if prefixes else "- ")

    if any(x.wave == w for x in parsed.result.waves):
        at, insert = _end_of_wave(parsed, w), block
    else:
        at, insert = _new_wave_section(parsed, w, block)
    if at < len(parsed.lines) and not is_blank_or_break(parsed.lines[at]):
        insert = [*insert, ""]
    raws = raw_lines(markdown)
    insert_lines(raws, at, insert, dominant_eol(raws))
    out = "".join(raws)
    after = parse_file(out).result
    task = after.task(new_id)
    if task is None:  # pragma: no cover - defensive
        raise InternalError("the added task could not be read back")
    return TaskMutation(markdown=out, task=task, result=after)
