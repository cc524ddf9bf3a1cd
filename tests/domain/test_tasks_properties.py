"""Property tests: format → parse round trips, and mutations touching only their lines."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from loom.domain.tasks import (
    TaskItem,
    TaskKind,
    TaskStatus,
    add_task,
    complete_task,
    parse_tasks,
    shelve_task,
    start_task,
    unshelve_task,
)
from loom.errors import LoomError

SETTINGS = settings(max_examples=examples(150))
TODAY = date(2027, 2, 3)

_WORD = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1)
_TEXT_CHARS = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:()!?'/=<>`"


@st.composite
def _text(draw: st.DrawFn) -> str:
    """A one-line value: starts with a letter, no leading/trailing space."""
    head = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyzABC"))
    tail = draw(st.text(_TEXT_CHARS, max_size=30))
    return (head + tail).strip()


_PATH = st.text("abcdefghijklmnopqrstuvwxyz0123456789/._-*", min_size=1, max_size=20).filter(
    lambda s: s.strip() == s
)
_REQ = st.text("abcdefghijklmnopqrstuvwxyz0123456789:-", min_size=1, max_size=15)
_DAY = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)).map(date.isoformat)

# Markers that raise no warning for each status.
_MARKERS = {
    TaskStatus.PENDING: " >~-",
    TaskStatus.IN_PROGRESS: " >~",
    TaskStatus.COMPLETE: "xX",
    TaskStatus.SHELVED: "-~",
}


@dataclass(frozen=True)
class _Style:
    bullet: str
    crlf: bool
    final_newline: bool
    blank_after_heading: bool
    task_word: bool


@dataclass(frozen=True)
class _Model:
    waves: tuple[tuple[int, tuple[int, ...], str], ...]
    """(number, depends on, heading suffix)."""
    tasks: tuple[TaskItem, ...]
    """Expected tasks, header_line_index filled in by the formatter."""
    markers: tuple[str, ...]
    action_inline: tuple[bool, ...]
    files_spans: tuple[bool, ...]
    style: _Style


@st.composite
def _task_fields(
    draw: st.DrawFn, task_id: str, wave: int | None, kind: TaskKind, earlier: list[str]
) -> tuple[TaskItem, str, bool, bool]:
    status = draw(st.sampled_from(list(TaskStatus)))
    deps: tuple[str, ...] = ()
    if earlier:
        deps = tuple(draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)))
    item = TaskItem(
        id=task_id,
        name=draw(_text()),
        wave=wave,
        status=status,
        updated_at=draw(st.none() | _DAY),
        dependencies=deps,
        files=tuple(draw(st.lists(_PATH, max_size=3))),
        action="\n".join(draw(st.lists(_text(), max_size=3))),
        verify=draw(st.none() | _text().filter(lambda s: "`" not in s)),
        done_when=draw(st.none() | _text()),
        requirements=tuple(draw(st.lists(_REQ, max_size=3))),
        kind=kind,
    )
    marker = draw(st.sampled_from(_MARKERS[status]))
    return item, marker, draw(st.booleans()), draw(st.booleans())


@st.composite
def enhanced_models(draw: st.DrawFn) -> _Model:
    n_waves = draw(st.integers(0, 3))
    numbers = sorted(
        draw(st.lists(st.integers(1, 12), min_size=n_waves, max_size=n_waves, unique=True))
    )
    waves = []
    tasks: list[TaskItem] = []
    markers: list[str] = []
    inline: list[bool] = []
    spans: list[bool] = []
    for i, w in enumerate(numbers):
        lower = numbers[:i]
        deps = tuple(sorted(draw(st.lists(st.sampled_from(lower), unique=True)))) if lower else ()
        suffix = draw(st.sampled_from(["", ": Foundations", " - Rollout", " (Checkpoint)"]))
        waves.append((w, deps, suffix))
        ids: list[str] = []
        for n in range(1, draw(st.integers(0, 4)) + 1):
            tid = f"{w}.{n}"
            item, marker, a, f = draw(_task_fields(tid, w, TaskKind.NORMAL, list(ids)))
            ids.append(tid)
            tasks.append(item)
            markers.append(marker)
            inline.append(a)
            spans.append(f)
    for cid in draw(
        st.lists(st.sampled_from(["Checkpoint", "Review", "QA"]), unique=True, max_size=2)
    ):
        item, marker, a, f = draw(_task_fields(cid, None, TaskKind.CHECKPOINT, []))
        tasks.append(item)
        markers.append(marker)
        inline.append(a)
        spans.append(f)
    style = _Style(
        bullet=draw(st.sampled_from(["- ", "* ", "  - "])),
        crlf=draw(st.booleans()),
        final_newline=draw(st.booleans()),
        blank_after_heading=draw(st.booleans()),
        task_word=draw(st.booleans()),
    )
    return _Model(tuple(waves), tuple(tasks), tuple(markers), tuple(inline), tuple(spans), style)


def format_enhanced(model: _Model) -> tuple[str, tuple[TaskItem, ...]]:
    """Render the model; returns the text and the expected tasks (with line indexes)."""
    s = model.style
    b = s.bullet
    lines: list[str] = ["# Tasks for: 001-01_model", ""]
    expected: list[TaskItem] = []

    def emit_task(i: int) -> None:
        t = model.tasks[i]
        word = "Task " if s.task_word else ""
        expected.append(dataclasses.replace(t, header_line_index=len(lines)))
        lines.append(f"### {word}{t.id}: {t.name}")
        if s.blank_after_heading:
            lines.append("")
        if t.kind is TaskKind.CHECKPOINT and t.id != "Checkpoint":
            lines.append(f"{b}**Type**: checkpoint (requires human approval)")
        if t.files:
            if model.files_spans[i]:
                lines.append(f"{b}**Files**: " + ", ".join(f"`{f}`" for f in t.files))
            else:
                lines.append(f"{b}**Files**: `{', '.join(t.files)}`")
        deps = ", ".join(f"Task {d}" for d in t.dependencies) or "None"
        lines.append(f"{b}**Dependencies**: {deps}")
        if t.action:
            first, *rest = t.action.split("\n")
            if model.action_inline[i]:
                lines.append(f"{b}**Action**: {first}")
            else:
                lines.extend([f"{b}**Action**:", f"  {first}"])
            lines.extend(f"  {x}" for x in rest)
        if t.verify is not None:
            lines.append(f"{b}**Verify**: `{t.verify}`")
        if t.done_when is not None:
            lines.append(f"{b}**Done When**: {t.done_when}")
        if t.requirements:
            lines.append(f"{b}**Requirements**: {', '.join(t.requirements)}")
        if t.updated_at is not None:
            lines.append(f"{b}**Updated At**: {t.updated_at}")
        lines.append(f"{b}**Status**: [{model.markers[i]}] {t.status.value}")
        lines.append("")

    for w, deps, suffix in model.waves:
        lines.extend(["_" * 70, "", f"## Wave {w}{suffix}", ""])
        dep_text = ", ".join(f"Wave {d}" for d in deps) or "None"
        lines.extend([f"- **Depends On**: {dep_text}", ""])
        for i, t in enumerate(model.tasks):
            if t.wave == w:
                emit_task(i)
    checkpoints = [i for i, t in enumerate(model.tasks) if t.wave is None]
    if checkpoints:
        lines.extend(["## Checkpoints", ""])
        for i in checkpoints:
            emit_task(i)
    eol = "\r\n" if s.crlf else "\n"
    text = eol.join(lines)
    text = text.rstrip("\r\n") + (eol if s.final_newline else "")
    return text, tuple(expected)


@SETTINGS
@given(enhanced_models())
def test_enhanced_round_trip(model: _Model) -> None:
    text, expected = format_enhanced(model)
    result = parse_tasks(text)
    assert result.format == ("enhanced")
    assert result.errors == ()
    assert result.tasks == expected
    assert [(w.wave, w.depends_on) for w in result.waves] == [(w, d) for w, d, _ in model.waves]
    assert result.progress.total == len(expected)


# --------------------------------------------------------------------------- checkbox


@st.composite
def checkbox_files(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, TaskStatus]]]:
    n = draw(st.integers(0, 8))
    explicit_ids = draw(
        st.lists(
            st.lists(st.integers(1, 30), min_size=1, max_size=3).map(
                lambda xs: ".".join(map(str, xs))
            ),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    rows = []
    for i in range(n):
        status = draw(
            st.sampled_from([TaskStatus.PENDING, TaskStatus.IN_PROGRESS, TaskStatus.COMPLETE])
        )
        marker = draw(
            st.sampled_from({"pending": " ", "in-progress": "~>", "complete": "xX"}[status.value])
        )
        name = draw(_text())
        explicit = draw(st.booleans())
        rows.append((explicit_ids[i] if explicit else None, name, status, marker))
    explicit_set = {r[0] for r in rows if r[0] is not None}
    lines = ["# Tasks", ""] if draw(st.booleans()) else []
    expected: list[tuple[str, str, TaskStatus]] = []
    used: set[str] = set()
    for index, (tid, name, status, marker) in enumerate(rows):
        indent = draw(st.sampled_from(["", "  ", "\t"]))
        bullet = draw(st.sampled_from("-*"))
        if tid is None:
            k = index + 1
            while str(k) in explicit_set or str(k) in used:
                k += 1
            real = str(k)
            lines.append(f"{indent}{bullet} [{marker}] {name}")
        else:
            real = tid
            suffix = draw(st.sampled_from(["", ":", "."]))
            lines.append(f"{indent}{bullet} [{marker}] {tid}{suffix} {name}")
        used.add(real)
        expected.append((real, name, status))
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["", "Some prose.", "- [-] not a task", "## Notes"])))
    return "\n".join(lines) + "\n", expected


@SETTINGS
@given(checkbox_files())
def test_checkbox_round_trip(case: tuple[str, list[tuple[str, str, TaskStatus]]]) -> None:
    text, expected = case
    result = parse_tasks(text)
    assert result.format == "checkbox"
    assert [(t.id, t.name, t.status) for t in result.tasks] == expected
    assert result.diagnostics == ()


# --------------------------------------------------------------------------- mutations

_OPS = {
    "start": (start_task, TaskStatus.IN_PROGRESS),
    "complete": (complete_task, TaskStatus.COMPLETE),
    "shelve": (shelve_task, TaskStatus.SHELVED),
    "unshelve": (unshelve_task, TaskStatus.PENDING),
}


_MARK = {
    TaskStatus.PENDING: "[ ] pending",
    TaskStatus.IN_PROGRESS: "[>] in-progress",
    TaskStatus.COMPLETE: "[x] complete",
    TaskStatus.SHELVED: "[-] shelved",
}


def _field_line(lines: list[str], header: int, name: str) -> int | None:
    for i in range(header + 1, len(lines)):
        if lines[i].startswith(("## ", "### ")):
            return None
        if f"**{name}**:" in lines[i]:
            return i
    return None


@SETTINGS
@given(enhanced_models(), st.data())
def test_mutations_touch_only_the_target_lines(model: _Model, data: st.DataObject) -> None:
    text, expected = format_enhanced(model)
    if not expected:
        return
    index = data.draw(st.integers(0, len(expected) - 1))
    op = data.draw(st.sampled_from(sorted(_OPS)))
    fn, new_status = _OPS[op]
    target = expected[index]
    try:
        out = fn(text, target.id, TODAY)
    except LoomError as err:
        assert err.kind in ("task_invalid_state", "task_blocked")
        return

    eol = "\r\n" if model.style.crlf else "\n"
    before = text.split(eol)
    after = out.markdown.split(eol)
    status_at = _field_line(before, target.header_line_index, "Status")
    updated_at = _field_line(before, target.header_line_index, "Updated At")
    assert status_at is not None
    inserted = updated_at is None
    assert len(after) == len(before) + inserted
    shift = 1 if inserted else 0
    for i, line in enumerate(before):
        j = i + (shift if i >= status_at else 0)
        if i == status_at:
            assert after[j] == line.split("**Status**:")[0] + "**Status**: " + _MARK[new_status]
        elif i == updated_at:
            assert after[j] == line.split("**Updated At**:")[0] + "**Updated At**: 2027-02-03"
        else:
            assert after[j] == line, (i, line, after[j])
    if inserted:
        assert after[status_at].endswith("**Updated At**: 2027-02-03")
    assert out.markdown.endswith(eol) == text.endswith(eol)

    reparsed = parse_tasks(out.markdown)
    assert reparsed.errors == ()
    assert out.task == reparsed.tasks[index]
    assert out.task.status is new_status
    assert out.task.updated_at == "2027-02-03"
    for k, (old, new) in enumerate(zip(expected, reparsed.tasks, strict=True)):
        if k == index:
            continue
        moved = old.header_line_index + (shift if old.header_line_index > status_at else 0)
        assert new == dataclasses.replace(old, header_line_index=moved)


@SETTINGS
@given(enhanced_models(), st.integers(1, 14), _text())
def test_add_inserts_one_block_and_keeps_everything_else(
    model: _Model, wave: int, title: str
) -> None:
    text, expected = format_enhanced(model)
    out = add_task(text, title, wave, TODAY)
    # A file without any line break has no style; new lines then use "\n".
    eol = "\r\n" if model.style.crlf and "\n" in text else "\n"
    before, after = text.split(eol), out.markdown.split(eol)
    added = len(after) - len(before)
    assert added > 0
    k = next(
        (i for i, (x, y) in enumerate(zip(before, after, strict=False)) if x != y), len(before)
    )
    assert after[:k] == before[:k]
    assert after[k + added :] == before[k:]
    assert eol.join(after[k : k + added]).count("### Task ") == 1

    reparsed = parse_tasks(out.markdown)
    assert reparsed.errors == ()
    new = out.task
    assert (new.wave, new.name, new.status, new.updated_at) == (
        wave,
        title,
        TaskStatus.PENDING,
        "2027-02-03",
    )
    numbers = [int(t.id.split(".")[1]) for t in expected if t.id.startswith(f"{wave}.")]
    assert new.id == f"{wave}.{max(numbers, default=0) + 1}"
    assert after[new.header_line_index] == f"### Task {new.id}: {title}"
    others = [t for t in reparsed.tasks if t.id != new.id]
    assert others == [
        dataclasses.replace(
            t, header_line_index=t.header_line_index + (added if t.header_line_index >= k else 0)
        )
        for t in expected
    ]
    waves = {w.wave: w.depends_on for w in reparsed.waves}
    if wave not in {w for w, _, _ in model.waves}:
        lower = [w for w, _, _ in model.waves if w < wave]
        assert waves[wave] == ((max(lower),) if lower else ())
