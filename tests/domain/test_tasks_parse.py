"""tasks.md grammar: format detection, both formats, fields, waves and diagnostics."""

from __future__ import annotations

from datetime import date

import pytest

from loom.domain import tasks as tasks_pkg
from loom.domain.tasks import (
    Progress,
    TaskDiagnostic,
    TaskItem,
    TaskKind,
    TasksParseResult,
    TaskStatus,
    WaveInfo,
    compute_progress,
    parse_tasks,
    tasks_template,
)

EXAMPLE = """\
# Tasks for: 011-02_wallet-support

## Wave 1: Groundwork
- **Depends On**: None

### Task 1.1: Add wallet table
- **Files**: `db/schema.sql, src/wallet.py`
- **Dependencies**: None
- **Action**:
  Create the table.
  Add an index on owner.
- **Verify**: `pytest tests/test_wallet.py`
- **Done When**: Migration applies cleanly
- **Requirements**: payments:wallet-storage
- **Updated At**: 2026-06-01
- **Status**: [x] complete

### Task 1.2: Wallet service
- **Dependencies**: Task 1.1
- **Updated At**: 2026-06-02
- **Status**: [>] in-progress

## Wave 2 - Rollout
- **Depends On**: Wave 1

### Task 2.1: Feature flag
- **Updated At**: 2026-06-02
- **Status**: [ ] pending

## Checkpoints

### Checkpoint: Product sign-off
- **Type**: checkpoint (requires human approval)
- **Dependencies**: All Wave 2 tasks
- **Updated At**: 2026-06-02
- **Status**: [ ] pending
"""


def _task(body: str, heading: str = "### Task 1.1: Do it", wave: str = "## Wave 1") -> str:
    return f"{wave}\n- **Depends On**: None\n\n{heading}\n{body}"


def _one(body: str) -> TaskItem:
    result = parse_tasks(_task(body))
    assert len(result.tasks) == 1
    return result.tasks[0]


def _messages(result: TasksParseResult, level: str | None = None) -> list[str]:
    return [d.message for d in result.diagnostics if level is None or d.level == level]


OK = "- **Updated At**: 2026-01-02\n- **Status**: [ ] pending\n"


def test_public_api_is_exported() -> None:
    for name in tasks_pkg.__all__:
        assert hasattr(tasks_pkg, name), name


# --------------------------------------------------------------------------- the example


def test_example_file() -> None:
    r = parse_tasks(EXAMPLE)
    assert r.format == "enhanced"
    assert r.diagnostics == ()
    assert [t.id for t in r.tasks] == ["1.1", "1.2", "2.1", "Checkpoint"]
    t11 = r.tasks[0]
    assert t11 == TaskItem(
        id="1.1",
        name="Add wallet table",
        wave=1,
        status=TaskStatus.COMPLETE,
        updated_at="2026-06-01",
        dependencies=(),
        files=("db/schema.sql", "src/wallet.py"),
        action="Create the table.\nAdd an index on owner.",
        verify="pytest tests/test_wallet.py",
        done_when="Migration applies cleanly",
        requirements=("payments:wallet-storage",),
        kind=TaskKind.NORMAL,
        header_line_index=5,
    )
    assert r.tasks[1].dependencies == ("1.1",)
    assert r.tasks[1].status == "in-progress"
    assert r.tasks[2].wave == 2
    cp = r.tasks[3]
    assert (cp.wave, cp.kind, cp.dependencies) == (None, TaskKind.CHECKPOINT, ())
    assert r.waves == (
        WaveInfo(wave=1, depends_on=(), header_line_index=2, depends_on_line_index=3),
        WaveInfo(wave=2, depends_on=(1,), header_line_index=22, depends_on_line_index=23),
    )
    assert r.progress == Progress(
        total=4, complete=1, shelved=0, in_progress=1, pending=2, remaining=3
    )


def test_to_dict_shapes() -> None:
    r = parse_tasks(EXAMPLE)
    d = r.to_dict()
    assert d["format"] == "enhanced"
    assert d["progress"] == {
        "total": 4,
        "complete": 1,
        "shelved": 0,
        "in_progress": 1,
        "pending": 2,
        "remaining": 3,
    }
    assert d["waves"][1] == {
        "wave": 2,
        "depends_on": [1],
        "header_line_index": 22,
        "depends_on_line_index": 23,
    }
    assert d["tasks"][0] == {
        "id": "1.1",
        "name": "Add wallet table",
        "wave": 1,
        "status": "complete",
        "updated_at": "2026-06-01",
        "dependencies": [],
        "files": ["db/schema.sql", "src/wallet.py"],
        "action": "Create the table.\nAdd an index on owner.",
        "verify": "pytest tests/test_wallet.py",
        "done_when": "Migration applies cleanly",
        "requirements": ["payments:wallet-storage"],
        "kind": "normal",
        "header_line_index": 5,
    }
    # Absent optional fields are omitted, as upstream does.
    cp = d["tasks"][3]
    assert "wave" not in cp and "verify" not in cp and "done_when" not in cp
    assert cp["kind"] == "checkpoint"
    bare = TaskItem(id="1", name="x").to_dict()
    assert "updated_at" not in bare
    assert list(bare) == [
        "id",
        "name",
        "status",
        "dependencies",
        "files",
        "action",
        "requirements",
        "kind",
        "header_line_index",
    ]


def test_diagnostic_to_dict_omits_absent_fields() -> None:
    assert TaskDiagnostic("error", "boom").to_dict() == {"level": "error", "message": "boom"}
    assert TaskDiagnostic("warning", "w", "1.1", 3).to_dict() == {
        "level": "warning",
        "message": "w",
        "task_id": "1.1",
        "line": 3,
    }


def test_empty_and_missing_files() -> None:
    for text in (None, ""):
        r = parse_tasks(text)
        assert r == TasksParseResult()
        assert r.format == "checkbox"
        assert r.progress == Progress()
    r = parse_tasks("\n\n   \n")
    assert r.format == "checkbox" and r.tasks == ()


def test_template_parses_cleanly() -> None:
    text = tasks_template("011-02_wallet-support", date(2026, 6, 1))
    r = parse_tasks(text)
    assert r.format == "enhanced"
    assert r.diagnostics == ()
    assert [(t.id, t.kind) for t in r.tasks] == [
        ("1.1", TaskKind.NORMAL),
        ("Checkpoint", TaskKind.CHECKPOINT),
    ]
    assert [w.wave for w in r.waves] == [1]
    assert all(t.updated_at == "2026-06-01" for t in r.tasks)
    assert r.tasks[0].action == "[Describe what needs to be done]"
    assert r.tasks[1].action == "Review the implementation before proceeding"
    assert text.startswith("# Tasks for: 011-02_wallet-support\n")
    assert "ito tasks start 011-02_wallet-support 1.1" in text
    assert text.endswith("- **Status**: [ ] pending\n")


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("# Tasks for: x\n", "enhanced"),
        ("## Wave 3\n", "enhanced"),
        ("## Wave 3: Title\n", "enhanced"),
        ("## Wave 3 (Checkpoint)\n", "enhanced"),
        ("### Task 1: x\n", "enhanced"),
        ("### 1.1: x\n", "enhanced"),
        ("- [ ] a\n", "checkbox"),
        ("## Waves\n- [ ] a\n", "checkbox"),
        ("some prose\n", "checkbox"),
    ],
)
def test_format_detection(text: str, fmt: str) -> None:
    assert parse_tasks(text).format == fmt


def test_loose_detection_falls_back_to_checkbox() -> None:
    # Upstream D-6: these looked enhanced and produced no usable tasks.
    text = "# Tasks for: 001-01_x\n\n- [x] 1.1 First\n- [ ] 1.2 Second\n"
    r = parse_tasks(text)
    assert r.format == "checkbox"
    assert [t.id for t in r.tasks] == ["1.1", "1.2"]
    text = "# Tasks\n\n### Notes: misc\n\n- [x] First\n- [ ] Second\n"
    r = parse_tasks(text)
    assert r.format == "checkbox"
    assert [t.name for t in r.tasks] == ["First", "Second"]
    assert r.diagnostics == ()


def test_enhanced_with_status_lines_stays_enhanced_despite_checkboxes() -> None:
    text = _task("- **Action**:\n  - [ ] sub-step one\n  - [x] sub-step two\n" + OK)
    r = parse_tasks(text)
    assert r.format == "enhanced"
    assert r.tasks[0].action == "- [ ] sub-step one\n- [x] sub-step two"


def test_enhanced_without_status_lines_and_without_checkboxes_is_enhanced() -> None:
    r = parse_tasks("## Wave 1\n- **Depends On**: None\n\n### Task 1.1: x\n")
    assert r.format == "enhanced"
    assert _messages(r, "error") == ["Invalid or missing status"]


# --------------------------------------------------------------------------- checkbox format


def test_checkbox_example() -> None:
    text = (
        "# Tasks\n"
        "- [x] 1.1 Create the schema migration\n"
        "- [~] 1.2 Backfill existing rows\n"
        "* [ ] Write the release note\n"
        "  - [>] 2: Announce in channel\n"
    )
    r = parse_tasks(text)
    assert r.format == "checkbox"
    assert [(t.id, t.name, t.status.value, t.header_line_index) for t in r.tasks] == [
        ("1.1", "Create the schema migration", "complete", 1),
        ("1.2", "Backfill existing rows", "in-progress", 2),
        ("3", "Write the release note", "pending", 3),
        ("2", "Announce in channel", "in-progress", 4),
    ]
    assert r.waves == () and r.diagnostics == ()
    assert all(t.wave is None and t.kind == "normal" and not t.files for t in r.tasks)
    assert r.progress == Progress(
        total=4, complete=1, shelved=0, in_progress=2, pending=1, remaining=3
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("- [ ] a", ("1", "a", "pending")),
        ("- [X] a", ("1", "a", "complete")),
        ("- [x]a", ("1", "a", "complete")),
        ("- [x]  spaced  ", ("1", "spaced", "complete")),
        ("\t* [~] a", ("1", "a", "in-progress")),
        ("- [ ] 2.3.4. label", ("2.3.4", "label", "pending")),
        ("- [ ] 7: label", ("7", "label", "pending")),
        ("- [ ] 1.2", ("1", "1.2", "pending")),
        ("- [ ] 1..2 x", ("1", "1..2 x", "pending")),
        ("- [ ] .1 x", ("1", ".1 x", "pending")),
        ("- [ ] v1.2 x", ("1", "v1.2 x", "pending")),
        ("- [ ]", ("1", "", "pending")),
    ],
)
def test_checkbox_line_grammar(line: str, expected: tuple[str, str, str]) -> None:
    (t,) = parse_tasks(line + "\n").tasks
    assert (t.id, t.name, t.status.value) == expected


@pytest.mark.parametrize(
    "line",
    [
        "- [-] shelved is not a checkbox marker",
        "- [?] unknown",
        "-  [ ] two spaces",
        "+ [ ] plus bullet",
        "- \\[x\\] escaped",
        "[ ] no bullet",
        "- [ x] wide",
        "1. [ ] numbered",
    ],
)
def test_checkbox_ignored_lines(line: str) -> None:
    assert parse_tasks(line + "\n").tasks == ()


def test_checkbox_implicit_ids_never_collide() -> None:
    # Upstream D-11: "foo" got implicit id 1, colliding with the explicit "1".
    r = parse_tasks("- [ ] foo\n- [ ] 1 bar\n- [ ] baz\n- [ ] 2 qux\n")
    assert [t.id for t in r.tasks] == ["3", "1", "4", "2"]
    assert len({t.id for t in r.tasks}) == 4
    assert r.diagnostics == ()


def test_checkbox_duplicate_explicit_ids_warn() -> None:
    r = parse_tasks("- [ ] 1 a\n- [ ] 1 b\n")
    assert [t.id for t in r.tasks] == ["1", "1"]
    assert r.diagnostics == (TaskDiagnostic("warning", "Duplicate task id: 1", "1", 2),)


def test_crlf_checkbox() -> None:
    r = parse_tasks("- [x] 1 a\r\n- [ ] 2 b\r\n")
    assert [(t.id, t.name) for t in r.tasks] == [("1", "a"), ("2", "b")]


# --------------------------------------------------------------------------- headings


@pytest.mark.parametrize(
    ("heading", "task_id", "name"),
    [
        ("### Task 1.1: Do it", "1.1", "Do it"),
        ("### 1.1: Do it", "1.1", "Do it"),
        ("### Task A7: x: y", "A7", "x: y"),
        ("### Checkpoint: Review", "Checkpoint", "Review"),
        ("###   Task   2.10 :   Spaced   ", "2.10", "Spaced"),
        ("### Task: odd", "Task", "odd"),
    ],
)
def test_task_headings(heading: str, task_id: str, name: str) -> None:
    (t,) = parse_tasks(_task(OK, heading=heading)).tasks
    assert (t.id, t.name) == (task_id, name)


@pytest.mark.parametrize(
    "heading",
    ["### Task 1.1:", "### Task 1.1:   ", "### Task 1.1:x", "#### Task 1.1: x", "### Task 1.1 x"],
)
def test_not_task_headings(heading: str) -> None:
    r = parse_tasks(_task(OK, heading=heading))
    assert r.tasks == ()


@pytest.mark.parametrize(
    ("heading", "wave"),
    [
        ("## Wave 1", 1),
        ("## Wave 12: Foundations", 12),
        ("## Wave 2 - Rollout", 2),
        ("## Wave 3 (Checkpoint)", 3),
        ("## Wave 4 Verification", 4),
        ("##  Wave  5  ", 5),
    ],
)
def test_wave_headings(heading: str, wave: int) -> None:
    r = parse_tasks(_task(OK, wave=heading))
    assert r.tasks[0].wave == wave
    assert [w.wave for w in r.waves] == [wave]


@pytest.mark.parametrize(
    "heading", ["## Wave", "## Wave x", "## Wave 1.5", "## Waves 1", "# Wave 1"]
)
def test_not_wave_headings(heading: str) -> None:
    r = parse_tasks(_task(OK, wave=heading))
    assert r.waves == ()
    assert r.tasks[0].wave is None


def test_wave_with_parenthesised_title_is_its_own_wave() -> None:
    # Upstream D-7: tasks under "## Wave 3 (Checkpoint)" joined wave 2.
    text = (
        "## Wave 2\n- **Depends On**: None\n\n### Task 2.1: a\n" + OK + "\n"
        "## Wave 3 (Checkpoint)\n- **Depends On**: Wave 2\n\n### Task 3.1: b\n" + OK
    )
    r = parse_tasks(text)
    assert [t.wave for t in r.tasks] == [2, 3]
    assert r.diagnostics == ()


def test_huge_wave_number_gives_no_wave() -> None:
    r = parse_tasks(_task(OK, wave="## Wave 99999999999"))
    assert r.waves == () and r.tasks[0].wave is None


def test_repeated_wave_heading_reuses_wave() -> None:
    text = _task(OK) + "\n## Wave 1\n\n### Task 1.2: b\n" + OK
    r = parse_tasks(text)
    assert [t.wave for t in r.tasks] == [1, 1]
    assert r.waves == (WaveInfo(1, (), 0, 1),)
    assert r.diagnostics == ()


def test_other_headings_close_a_task_but_keep_the_wave() -> None:
    text = _task(OK) + "\n## Notes\n- **Status**: [x] complete\n\n### Task 1.2: b\n" + OK
    r = parse_tasks(text)
    assert [(t.id, t.status.value, t.wave) for t in r.tasks] == [
        ("1.1", "pending", 1),
        ("1.2", "pending", 1),
    ]
    assert r.diagnostics == ()


def test_task_outside_wave_warns() -> None:
    r = parse_tasks("# Tasks for: x\n\n### Task 1: a\n" + OK)
    assert r.tasks[0].wave is None
    assert r.diagnostics == (
        TaskDiagnostic(
            "warning",
            "1: Task '1' appears outside any Wave section; wave gating may not behave as expected",
            "1",
            3,
        ),
    )


def test_checkpoints_section() -> None:
    text = _task(OK) + "\n## Checkpoints\n\n### Review: human sign-off\n" + OK
    r = parse_tasks(text)
    assert [(t.id, t.wave, t.kind.value) for t in r.tasks] == [
        ("1.1", 1, "normal"),
        ("Review", None, "checkpoint"),
    ]
    assert r.diagnostics == ()


def test_checkpoint_kind_from_type_line_and_id() -> None:
    # Upstream D-8: the parser never produced the checkpoint kind.
    text = _task("- **Type**: checkpoint (requires human approval)\n" + OK)
    text += "\n### Checkpoint: later\n" + OK
    r = parse_tasks(text)
    assert [t.kind for t in r.tasks] == [TaskKind.CHECKPOINT, TaskKind.CHECKPOINT]
    assert parse_tasks(_task("- **Type**: normal\n" + OK)).tasks[0].kind == TaskKind.NORMAL


# --------------------------------------------------------------------------- task fields


def test_inline_action_and_continuation() -> None:
    # Upstream D-4: the inline form was dropped.
    t = _one("- **Action**: Add failing tests that:\n  - cover A\n  - cover B\n" + OK)
    assert t.action == "Add failing tests that:\n- cover A\n- cover B"
    assert _one("- **Action**: Just this.\n" + OK).action == "Just this."


def test_block_action_ends_at_fields_headings_and_dividers() -> None:
    t = _one("- **Action**:\n  one\n\n  two\n- **Verify**: `v`\n" + OK)
    assert (t.action, t.verify) == ("one\ntwo", "v")
    text = _task("- **Action**:\n  one\n" + OK + "\n______\n\n## Wave 2\n")
    assert parse_tasks(text).tasks[0].action == "one"
    t = _one("- **Action**:\n  one\n  - **Status**: [x] complete\n- **Updated At**: 2026-01-02\n")
    assert (t.action, t.status) == ("one", TaskStatus.COMPLETE)
    t = _one("- **Action**:\n  one\n  - **Note**: kept\n" + OK)
    assert t.action == "one\n- **Note**: kept"


def test_files_forms() -> None:
    assert _one("- **Files**: `a.py`\n" + OK).files == ("a.py",)
    assert _one("- **Files**: `a.py, b.py`\n" + OK).files == ("a.py", "b.py")
    # Upstream D-5: several spans gave no files.
    assert _one("- **Files**: `a.py`, `b/c.py`\n" + OK).files == ("a.py", "b/c.py")
    assert _one("- **Files**: `a`; `b`; `c, d`\n" + OK).files == ("a", "b", "c", "d")
    assert _one("- **Files**: N/A\n" + OK).files == ()
    assert _one("- **Files**: `a` or `b`\n" + OK).files == ("a", "b")
    block = "- **Files**:\n  - `src/a.py` (main)\n  - docs/b.md\n\n  * `c`\n" + OK
    assert _one(block).files == ("src/a.py", "docs/b.md", "c")


def test_verify_and_done_when() -> None:
    t = _one("- **Verify**: `make test`\n- **Done When**:  Green.  \n" + OK)
    assert (t.verify, t.done_when) == ("make test", "Green.")
    assert _one("- **Verify**: run `a` and `b`\n" + OK).verify == "run `a` and `b`"
    assert _one("- **Verify**: manual check\n" + OK).verify == "manual check"
    t = _one("- **Verify**:\n- **Done When**:\n" + OK)
    assert (t.verify, t.done_when) == (None, None)


@pytest.mark.parametrize(
    ("value", "deps"),
    [
        ("None", ()),
        ("none", ()),
        ("", ()),
        ("Task 1.2", ("1.2",)),
        ("Task 1.2, 1.3 ,, task 1.4", ("1.2", "1.3", "task 1.4")),
        ("All Wave 1 tasks", ()),
        ("all previous waves", ()),
        ("All prior tasks", ()),
        ("Checkpoint", ("Checkpoint",)),
    ],
)
def test_dependencies(value: str, deps: tuple[str, ...]) -> None:
    heading = "### Task 1.9: x"
    body = "".join(f"### Task {d}: dep\n{OK}\n" for d in deps if d.count(".") == 1)
    text = _task(f"- **Dependencies**: {value}\n{OK}\n{body}", heading=heading)
    assert parse_tasks(text).tasks[0].dependencies == deps


def test_requirements() -> None:
    t = _one("- **Requirements**: a:b, c , ,d\n" + OK)
    assert t.requirements == ("a:b", "c", "d")
    assert _one("- **Requirements**:\n" + OK).requirements == ()


def test_fields_without_bullet_and_with_star_bullet() -> None:
    t = _one("**Verify**: `v`\n* **Done When**: d\n  + **Files**: `f`\n" + OK)
    assert (t.verify, t.done_when, t.files) == ("v", "d", ("f",))


def test_unknown_fields_and_prose_are_ignored() -> None:
    t = _one("Some prose about **Status**: [x] complete\n- **Description**: text\n" + OK)
    assert t.status == TaskStatus.PENDING
    assert t.action == ""


def test_duplicate_field_lines_first_wins_with_warning() -> None:
    body = (
        "- **Status**: [x] complete\n"
        "- **Updated At**: 2026-01-01\n"
        "- **Requirements**: a\n"
        "- **Action**: first\n"
        "- **Action**: second\n  more\n"
        "- **Requirements**: b\n"
        "- **Status**: [ ] pending\n"
        "- **Updated At**: 2026-02-02\n"
    )
    r = parse_tasks(_task(body))
    t = r.tasks[0]
    assert (t.status, t.updated_at, t.requirements, t.action) == (
        TaskStatus.COMPLETE,
        "2026-01-01",
        ("a",),
        "first",
    )
    assert _messages(r, "warning") == [
        "1.1: duplicate Action line; using the first one",
        "1.1: duplicate Requirements line; using the first one",
        "1.1: duplicate Status line; using the first one",
        "1.1: duplicate Updated At line; using the first one",
    ]
    assert [d.line for d in r.diagnostics] == [9, 11, 12, 13]


# --------------------------------------------------------------------------- status / dates


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ("[ ] pending", "pending"),
        ("[>] in-progress", "in-progress"),
        ("[~] in-progress", "in-progress"),
        ("[ ] in-progress", "in-progress"),
        ("[x] complete", "complete"),
        ("[X] complete", "complete"),
        ("[-] shelved", "shelved"),
        ("[~] shelved", "shelved"),
        ("[>] pending", "pending"),
        ("[x]   complete  ", "complete"),
    ],
)
def test_status_values(line: str, status: str) -> None:
    r = parse_tasks(_task(f"- **Updated At**: 2026-01-02\n- **Status**: {line}\n"))
    assert r.tasks[0].status == status
    assert r.errors == ()


@pytest.mark.parametrize(
    ("line", "warning"),
    [
        ("[ ] complete", "Status marker for complete should be [x]"),
        ("[-] complete", "Status marker for complete should be [x]"),
        ("[x] shelved", "Status marker for shelved should be [-]"),
        ("[ ] shelved", "Status marker for shelved should be [-]"),
        ("[x] pending", "Only complete tasks should use [x]"),
        ("[X] in-progress", "Only complete tasks should use [x]"),
    ],
)
def test_status_marker_warnings(line: str, warning: str) -> None:
    r = parse_tasks(_task(f"- **Updated At**: 2026-01-02\n- **Status**: {line}\n"))
    assert r.diagnostics == (TaskDiagnostic("warning", warning, "1.1", 4),)


@pytest.mark.parametrize(
    "line",
    ["[x] completed", "[x] Complete", "complete", "[?] pending", "[x]complete", "", "[x] done"],
)
def test_invalid_status(line: str) -> None:
    r = parse_tasks(_task(f"- **Updated At**: 2026-01-02\n- **Status**: {line}\n"))
    assert r.tasks[0].status == TaskStatus.PENDING
    assert r.diagnostics == (TaskDiagnostic("error", "Invalid or missing status", "1.1", 4),)


def test_missing_status() -> None:
    r = parse_tasks(_task("- **Updated At**: 2026-01-02\n"))
    assert _messages(r, "error") == ["Invalid or missing status"]


def test_missing_updated_at_is_a_warning() -> None:
    # Upstream D-10: the code said error, Ito's own spec says not an error.
    r = parse_tasks(_task("- **Status**: [ ] pending\n"))
    assert r.tasks[0].updated_at is None
    assert r.diagnostics == (
        TaskDiagnostic("warning", "Missing Updated At field (expected YYYY-MM-DD)", "1.1", 4),
    )
    r = parse_tasks(_task("- **Updated At**:\n- **Status**: [ ] pending\n"))
    assert r.errors == ()


@pytest.mark.parametrize("value", ["2026-13-01", "2026-02-30", "2026-1-2", "soon", "2026-01-02x"])
def test_invalid_updated_at_is_an_error(value: str) -> None:
    r = parse_tasks(_task(f"- **Updated At**: {value}\n- **Status**: [ ] pending\n"))
    assert r.tasks[0].updated_at is None
    assert r.diagnostics == (
        TaskDiagnostic(
            "error", f"Invalid Updated At date: {value} (expected YYYY-MM-DD)", "1.1", 4
        ),
    )


# --------------------------------------------------------------------------- waves


def _waves(deps: list[str | None]) -> str:
    out = []
    for i, dep in enumerate(deps, start=1):
        out.append(f"## Wave {i}\n")
        if dep is not None:
            out.append(f"- **Depends On**: {dep}\n")
        out.append(f"\n### Task {i}.1: t\n{OK}\n")
    return "".join(out)


@pytest.mark.parametrize(
    ("deps", "expected", "errors"),
    [
        (["None", "Wave 1"], [(), (1,)], []),
        (["none", "wave 1, Wave 1"], [(), (1,)], []),
        (["None", "1", "2, 1"], [(), (1,), (1, 2)], []),
        (
            [None, None],
            [(), (1,)],
            ["Wave 1: missing Depends On line", "Wave 2: missing Depends On line"],
        ),
        (["", "None"], [(), ()], ["Wave 1: Depends On is empty"]),
        (["None", "Wave one"], [(), ()], ["Wave 2: invalid Depends On entry 'Wave one'"]),
        (["None", "Wave 2"], [(), (2,)], ["Wave 2: cannot depend on itself"]),
        (["None", "Wave 7"], [(), (7,)], ["Wave 2: depends on missing Wave 7"]),
        (["Wave 2", "Wave 1"], [(2,), (1,)], ["Wave dependency cycle detected: 1 -> 2 -> 1"]),
    ],
)
def test_wave_depends_on(
    deps: list[str | None], expected: list[tuple[int, ...]], errors: list[str]
) -> None:
    r = parse_tasks(_waves(deps))
    assert [w.depends_on for w in r.waves] == expected
    assert _messages(r, "error") == errors


def test_wave_depends_on_line_rules() -> None:
    text = (
        "## Wave 1\n- **Depends On**: None\n* **Depends On**: Wave 9\n\n"
        "### Task 1.1: t\n- **Depends On**: Wave 8\n" + OK
    )
    r = parse_tasks(text)
    assert r.waves[0].depends_on == ()
    assert r.diagnostics == (
        TaskDiagnostic(
            "warning", "Wave 1: duplicate Depends On line; using the first one", None, 3
        ),
    )


def test_wave_depends_on_after_first_task_is_ignored() -> None:
    text = "## Wave 1\n\n### Task 1.1: t\n" + OK + "\n## Notes\n- **Depends On**: None\n"
    r = parse_tasks(text)
    assert _messages(r, "error") == ["Wave 1: missing Depends On line"]


def test_empty_wave_is_kept() -> None:
    r = parse_tasks("## Wave 1\n- **Depends On**: None\n\n## Wave 2\n- **Depends On**: Wave 1\n")
    assert [w.wave for w in r.waves] == [1, 2]
    assert r.tasks == ()


# --------------------------------------------------------------------------- relational


def _rel(*tasks: tuple[str, str, str, int]) -> TasksParseResult:
    """tasks: (id, deps, status line, wave)."""
    waves: dict[int, list[str]] = {}
    for tid, deps, status, wave in tasks:
        waves.setdefault(wave, []).append(
            f"### Task {tid}: t\n- **Dependencies**: {deps}\n"
            f"- **Updated At**: 2026-01-02\n- **Status**: {status}\n\n"
        )
    text = ""
    for w in sorted(waves):
        dep = "None" if w == min(waves) else f"Wave {w - 1}"
        text += f"## Wave {w}\n- **Depends On**: {dep}\n\n" + "".join(waves[w])
    return parse_tasks(text)


P, C, S = "[ ] pending", "[x] complete", "[-] shelved"


def test_relational_clean() -> None:
    r = _rel(("1.1", "None", P, 1), ("1.2", "Task 1.1", P, 1), ("2.1", "None", P, 2))
    assert r.diagnostics == ()


@pytest.mark.parametrize(
    ("tasks", "errors"),
    [
        ([("1.1", "None", P, 1), ("1.1", "None", P, 1)], ["Duplicate task id: 1.1"]),
        ([("1.1", "1.1", P, 1)], ["Task cannot depend on itself"]),
        ([("1.1", "9.9", P, 1)], ["Missing dependency: 9.9"]),
        (
            [("1.1", "None", P, 1), ("2.1", "1.1", P, 2)],
            ["Cross-wave dependency not allowed: 2.1 depends on 1.1"],
        ),
        (
            [("1.1", "1.2", P, 1), ("1.2", "1.3", P, 1), ("1.3", "1.1", P, 1)],
            ["Dependency cycle detected: 1.1 -> 1.2 -> 1.3 -> 1.1"],
        ),
        ([("1.1", "Checkpoint", P, 1)], []),
    ],
)
def test_relational_errors(tasks: list[tuple[str, str, str, int]], errors: list[str]) -> None:
    assert _messages(_rel(*tasks), "error") == errors


def test_wave_less_task_depending_on_wave_task_is_cross_wave() -> None:
    text = _task(OK) + "\n## Checkpoints\n\n### Checkpoint: c\n- **Dependencies**: 1.1\n" + OK
    assert _messages(parse_tasks(text), "error") == [
        "Cross-wave dependency not allowed: Checkpoint depends on 1.1"
    ]


def test_dependency_on_shelved_task_is_a_warning() -> None:
    # Upstream made this an error, which then refused the "unshelve" that fixes it (D-12).
    r = _rel(("1.1", "None", S, 1), ("1.2", "1.1", P, 1))
    assert r.errors == ()
    assert _messages(r, "warning") == ["Dependency is shelved: 1.1"]
    r = _rel(("1.1", "None", S, 1), ("1.2", "1.1", S, 1))
    assert r.diagnostics == ()


def test_diagnostic_lines_are_one_based() -> None:
    r = _rel(("1.1", "9.9", P, 1))
    assert r.diagnostics[0].line == 4
    assert r.tasks[0].header_line_index == 3


# --------------------------------------------------------------------------- progress


def test_compute_progress() -> None:
    items = [
        TaskItem("1", "a", status=TaskStatus.COMPLETE),
        TaskItem("2", "b", status=TaskStatus.SHELVED),
        TaskItem("3", "c", status=TaskStatus.IN_PROGRESS),
        TaskItem("4", "d"),
        TaskItem("5", "e"),
    ]
    assert compute_progress(items) == Progress(5, 1, 1, 1, 2, 3)
    assert compute_progress([]) == Progress()


def test_never_crashes_on_odd_text() -> None:
    for text in [
        "\x00\x01\x02",
        "\r\r\r",
        "### Task \udcff: x\n",
        "## Wave 1\n- **Depends On**: " + ",".join(["x"] * 1000),
        "- **Status**: [x] complete\n",
        "\u2028## Wave 1\u2028### Task 1: x",
        "#" * 10000,
    ]:
        assert isinstance(parse_tasks(text), TasksParseResult)


def test_lines_split_only_on_newline() -> None:
    text = _task("- **Action**: a\x0cb\u2028c\n" + OK)
    assert parse_tasks(text).tasks[0].action == "a\x0cb\u2028c"
    r = parse_tasks(text.replace("\n", "\r\n"))
    assert r.tasks[0].action == "a\x0cb\u2028c"
    assert r.diagnostics == ()
