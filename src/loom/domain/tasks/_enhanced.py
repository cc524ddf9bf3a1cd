"""The enhanced format: ``## Wave N`` sections of ``### Task X: title`` blocks (§4.3).

The parser reads one line at a time. Besides the public :class:`TaskItem` values it records,
per task, where its Status and Updated At lines are, so that mutations rewrite exactly the
lines the parser read (see :class:`TaskLayout`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from loom.domain.tasks._model import TaskDiagnostic, TaskItem, TaskKind, TaskStatus
from loom.domain.tasks._text import THEMATIC_BREAK_RE

__all__ = [
    "FIELD_RE",
    "WAVE_HEADING_RE",
    "EnhancedScan",
    "TaskLayout",
    "WaveSource",
    "match_task_heading",
    "scan_enhanced",
]

_U32_MAX = 2**32 - 1
_U32_DIGITS = 10
"""A wave number with more digits than this is out of range (and never reaches ``int()``,
which refuses strings over 4,300 digits)."""

# Every pattern here is matched against one line of untrusted text: each is anchored and its
# adjacent quantifiers never match the same characters, so a failing match costs time linear
# in the line (the task heading, whose natural pattern backtracks quadratically on a run of
# blanks, is matched with string operations: :func:`match_task_heading`).
WAVE_HEADING_RE = re.compile(r"##[ \t]+Wave[ \t]+(\d+)(?![\w.])(.*)")
_ANY_HEADING_RE = re.compile(r"#{1,3}[ \t]")
_WAVE_DEP_RE = re.compile(r"[ \t]*[-*][ \t]+\*\*Depends On\*\*:(.*)")
FIELD_RE = re.compile(
    r"(?P<prefix>[ \t]*(?:[-*+][ \t]+)?)\*\*(?P<field>Files|Dependencies|Action|Verify|"
    r"Done When|Requirements|Updated At|Status|Type)\*\*:(?P<value>.*)"
)
_STATUS_RE = re.compile(r"\[([ xX\-~>])\][ \t]+(pending|in-progress|complete|shelved)")
_DATE_SHAPE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SPAN_RE = re.compile(r"`([^`]+)`")
_BULLET_RE = re.compile(r"[-*+][ \t]+")
_ALL_WAVE_RE = re.compile(r"all\s+wave\s+\d+\s+tasks", re.IGNORECASE)

_Block = Literal["action", "files", "skip"]


@dataclass(frozen=True, slots=True)
class TaskLayout:
    """Where one task's lines are (0-based); ``end`` is exclusive."""

    header: int
    end: int
    status_line: int | None
    updated_line: int | None
    field_prefix: str | None
    """Indentation + bullet of the task's first field line, e.g. ``"- "``."""


@dataclass(slots=True)
class WaveSource:
    """What the parser saw of one wave before validation."""

    header_line_index: int
    depends_on_raw: str | None = None
    depends_on_line_index: int | None = None


@dataclass(slots=True)
class EnhancedScan:
    """The raw outcome of scanning an enhanced file."""

    tasks: list[TaskItem] = field(default_factory=list)
    layouts: list[TaskLayout] = field(default_factory=list)
    with_status_line: int = 0
    waves: dict[int, WaveSource] = field(default_factory=dict)
    diagnostics: list[TaskDiagnostic] = field(default_factory=list)


@dataclass(slots=True)
class _Builder:
    id: str
    name: str
    wave: int | None
    header: int
    kind: TaskKind
    seen: dict[str, int] = field(default_factory=dict)
    deps_raw: str = ""
    status_value: str | None = None
    status_line: int | None = None
    updated_value: str | None = None
    updated_line: int | None = None
    files: list[str] = field(default_factory=list)
    action: list[str] = field(default_factory=list)
    verify: str | None = None
    done_when: str | None = None
    requirements: tuple[str, ...] = ()
    field_prefix: str | None = None


def match_task_heading(line: str) -> tuple[str, str] | None:
    """``(id, title)`` of a ``### [Task ]<id>: <title>`` heading, else None; linear time.

    The same language and groups (stripped) as the pattern
    ``###[ \\t]+(?:Task[ \\t]+)?([^:]+):[ \\t]+(.*\\S)[ \\t]*`` (fullmatch), which takes time
    quadratic in a run of blanks (40,000 spaces: 8 s).
    """
    if not line.startswith("###"):
        return None
    colon = line.find(":", 3)
    if colon < 0:
        return None
    head, tail = line[3:colon], line[colon + 1 :]
    # ``[ \t]+(?:Task[ \t]+)?[^:]+``: at least one blank, then at least one more character.
    if len(head) < 2 or head[0] not in " \t":
        return None
    body = head.lstrip(" \t")
    if body.startswith("Task") and len(body) > 5 and body[4] in " \t":
        body = body[4:]  # the regex takes "Task " as the prefix whenever an id can follow
    # ``:[ \t]+(.*\S)[ \t]*``: a blank, then text whose last non-blank is not whitespace.
    title = tail.rstrip(" \t")
    if not title or tail[0] not in " \t" or title[-1].isspace():
        return None
    return body.strip(), title.strip()


def _files_from(text: str) -> list[str]:
    spans = _SPAN_RE.findall(text)
    return [p.strip() for span in spans for p in span.split(",") if p.strip()]


def _parse_dependencies(raw: str) -> tuple[str, ...]:
    r = raw.strip()
    low = r.lower()
    if not r or low == "none" or low in ("all previous waves", "all prior tasks"):
        return ()
    if _ALL_WAVE_RE.fullmatch(r):
        return ()
    out: list[str] = []
    for part in r.split(","):
        p = part.strip()
        if p:
            out.append(p.removeprefix("Task ").strip())
    return tuple(p for p in out if p)


def _ends_block(line: str) -> bool:
    """Whether ``line`` ends an Action / Files continuation block."""
    s = line.lstrip()
    if not s:
        return False
    c = s[0]
    if c == "#":
        return _ANY_HEADING_RE.match(line) is not None
    if c not in "-*_+":
        return False
    if line.startswith(("- **", "* **")) or ("**" in s and FIELD_RE.match(line) is not None):
        return True
    return THEMATIC_BREAK_RE.fullmatch(line) is not None


class _Scanner:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.out = EnhancedScan()
        self.wave: int | None = None
        self.in_checkpoints = False
        self.wave_open = False  # after a wave heading, before that section's first task
        self.current: _Builder | None = None
        self.block: _Block | None = None

    def warn(self, message: str, task_id: str | None, line: int) -> None:
        self.out.diagnostics.append(TaskDiagnostic("warning", message, task_id, line + 1))

    def error(self, message: str, task_id: str | None, line: int) -> None:
        self.out.diagnostics.append(TaskDiagnostic("error", message, task_id, line + 1))

    def run(self) -> EnhancedScan:
        for index, line in enumerate(self.lines):
            self.line(index, line)
        self.flush(len(self.lines))
        return self.out

    def line(self, index: int, line: str) -> None:
        cur = self.current
        if self.block is not None and cur is not None:
            if not _ends_block(line):
                text = line.strip()
                if text and self.block == "action":
                    cur.action.append(text)
                elif text and self.block == "files":
                    item = _BULLET_RE.sub("", text, count=1)
                    cur.files.extend(_files_from(item) or [item])
                return
            self.block = None

        if (line.startswith("#") or line[:1] in (" ", "\t")) and self.heading(index, line):
            return
        if cur is None:
            self.wave_dependency(index, line)
        elif "**" in line:
            field_m = FIELD_RE.fullmatch(line)
            if field_m is not None:
                self.task_field(index, cur, field_m)

    def heading(self, index: int, line: str) -> bool:
        """Handle a heading line; False when ``line`` is not one."""
        wave_m = WAVE_HEADING_RE.fullmatch(line)
        if wave_m is not None:
            self.flush(index)
            digits = wave_m.group(1)
            n = int(digits) if len(digits) <= _U32_DIGITS else None
            self.wave = n if n is not None and n <= _U32_MAX else None
            self.in_checkpoints = False
            self.wave_open = self.wave is not None
            if self.wave is not None and self.wave not in self.out.waves:
                self.out.waves[self.wave] = WaveSource(header_line_index=index)
            return True
        if line.strip() == "## Checkpoints":
            self.flush(index)
            self.wave = None
            self.in_checkpoints = True
            self.wave_open = False
            return True
        task_m = match_task_heading(line)
        if task_m is not None:
            self.flush(index)
            self.start_task(index, *task_m)
            return True
        if _ANY_HEADING_RE.match(line) is not None:
            # Any other h1-h3 heading ends the task block (Ito's updater uses the same
            # boundary), but does not change the wave.
            self.flush(index)
            return True
        return False

    def wave_dependency(self, index: int, line: str) -> None:
        if not self.wave_open or self.wave is None:
            return
        m = _WAVE_DEP_RE.fullmatch(line)
        if m is None:
            return
        source = self.out.waves[self.wave]
        if source.depends_on_raw is not None:
            self.warn(
                f"Wave {self.wave}: duplicate Depends On line; using the first one", None, index
            )
            return
        source.depends_on_raw = m.group(1).strip()
        source.depends_on_line_index = index

    def start_task(self, index: int, task_id: str, name: str) -> None:
        self.wave_open = False
        kind = TaskKind.NORMAL
        if self.in_checkpoints or task_id.lower() == "checkpoint":
            kind = TaskKind.CHECKPOINT
        self.current = _Builder(id=task_id, name=name, wave=self.wave, header=index, kind=kind)
        if self.wave is None and not self.in_checkpoints:
            self.warn(
                f"{task_id}: Task '{task_id}' appears outside any Wave section; "
                "wave gating may not behave as expected",
                task_id,
                index,
            )

    def task_field(self, index: int, cur: _Builder, m: re.Match[str]) -> None:
        name = m.group("field")
        value = m.group("value").strip()
        if cur.field_prefix is None:
            cur.field_prefix = m.group("prefix")
        if name in cur.seen:
            self.warn(f"{cur.id}: duplicate {name} line; using the first one", cur.id, index)
            if name in ("Action", "Files"):
                self.block = "skip"
            return
        cur.seen[name] = index
        if name == "Action":
            if value:
                cur.action.append(value)
            self.block = "action"
        elif name == "Files":
            if value:
                cur.files.extend(_files_from(value))
            else:
                self.block = "files"
        elif name == "Dependencies":
            cur.deps_raw = value
        elif name == "Status":
            cur.status_value, cur.status_line = value, index
        elif name == "Updated At":
            cur.updated_value, cur.updated_line = value, index
        elif name == "Verify":
            spans = _SPAN_RE.fullmatch(value)
            cur.verify = spans.group(1).strip() if spans else (value or None)
        elif name == "Done When":
            cur.done_when = value or None
        elif name == "Requirements":
            cur.requirements = tuple(p.strip() for p in value.split(",") if p.strip())
        elif name == "Type" and value.lower().startswith("checkpoint"):
            cur.kind = TaskKind.CHECKPOINT

    def flush(self, end: int) -> None:
        self.block = None
        cur, self.current = self.current, None
        if cur is None:
            return
        status = self.status_of(cur)
        updated = self.updated_of(cur)
        self.out.tasks.append(
            TaskItem(
                id=cur.id,
                name=cur.name,
                wave=cur.wave,
                status=status,
                updated_at=updated,
                dependencies=_parse_dependencies(cur.deps_raw),
                files=tuple(cur.files),
                action="\n".join(cur.action).strip(),
                verify=cur.verify,
                done_when=cur.done_when,
                requirements=cur.requirements,
                kind=cur.kind,
                header_line_index=cur.header,
            )
        )
        self.out.layouts.append(
            TaskLayout(cur.header, end, cur.status_line, cur.updated_line, cur.field_prefix)
        )
        if cur.status_line is not None:
            self.out.with_status_line += 1

    def status_of(self, cur: _Builder) -> TaskStatus:
        m = _STATUS_RE.fullmatch(cur.status_value or "")
        if m is None:
            self.error("Invalid or missing status", cur.id, cur.header)
            return TaskStatus.PENDING
        marker, status = m.group(1), TaskStatus(m.group(2))
        if status is TaskStatus.COMPLETE and marker not in "xX":
            self.warn("Status marker for complete should be [x]", cur.id, cur.header)
        elif status is TaskStatus.SHELVED and marker not in "-~":
            self.warn("Status marker for shelved should be [-]", cur.id, cur.header)
        elif status in (TaskStatus.PENDING, TaskStatus.IN_PROGRESS) and marker in "xX":
            self.warn("Only complete tasks should use [x]", cur.id, cur.header)
        return status

    def updated_of(self, cur: _Builder) -> str | None:
        value = cur.updated_value
        if not value:
            # Ito's own spec (tasks-tracking) says a missing date is not a parse error.
            self.warn("Missing Updated At field (expected YYYY-MM-DD)", cur.id, cur.header)
            return None
        try:
            if _DATE_SHAPE_RE.fullmatch(value) is None:
                raise ValueError(value)
            date.fromisoformat(value)
        except ValueError:
            self.error(
                f"Invalid Updated At date: {value} (expected YYYY-MM-DD)", cur.id, cur.header
            )
            return None
        return value


def scan_enhanced(lines: list[str]) -> EnhancedScan:
    """Scan an enhanced file's lines (without endings)."""
    return _Scanner(lines).run()
