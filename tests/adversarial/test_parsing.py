"""Finding 1 (and the integer part of 7): parsers run in linear time on hostile text, and no
text makes them raise anything but a clean domain error."""

from __future__ import annotations

import contextlib
import re
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import examples
from loom.domain import tasks as t
from loom.domain.modules import parse_module_md, tick_change
from loom.domain.specs import apply_delta, parse_spec
from loom.errors import LoomError

from ._hostile import MAX_GROWTH, PIECES, growth, hostile

_OLD_HEADING = re.compile(r"###[ \t]+(?:Task[ \t]+)?([^:]+):[ \t]+(.*\S)[ \t]*")
DAY = date(2026, 1, 1)

PARSERS = {
    "parse_tasks": t.parse_tasks,
    "start_task": lambda s: t.start_task(s, "1.1", DAY),
    "add_task": lambda s: t.add_task(s, "new", 1, DAY),
    "module.md": parse_module_md,
    "tick_change": lambda s: tick_change(s, "001-01_a"),
    "delta": lambda s: apply_delta("# x\n\n## Requirements\n", s, "cap"),
    "spec": lambda s: parse_spec(s, "cap"),
}


@given(st.lists(st.sampled_from([*PIECES, "Task", "###", "a", "\x0b", "\u2028"]), max_size=12))
@settings(max_examples=400)
def test_task_heading_is_the_old_pattern_in_linear_time(pieces: list[str]) -> None:
    from loom.domain.tasks._enhanced import match_task_heading

    line = "###" + "".join(pieces).replace("\n", "")
    old = _OLD_HEADING.fullmatch(line)
    expected = None if old is None else (old.group(1).strip(), old.group(2).strip())
    assert match_task_heading(line) == expected


@pytest.mark.parametrize(
    "line", ["### a:" + " " * 40_000, "### " + " " * 40_000, "### " + " " * 20_000 + "x"]
)
def test_the_reported_heading_lines_grow_linearly(line: str) -> None:
    # Was 8.4 s for the first line (quadratic): 8x the input took 64x the time.
    parts = (line[:6], " ", "x")
    assert growth(t.parse_tasks, parts, 16_000) < MAX_GROWTH


@pytest.mark.slow
@given(parts=hostile(), name=st.sampled_from(sorted(PARSERS)))
@settings(max_examples=examples(40), deadline=None)
def test_every_parser_grows_linearly_on_hostile_text(
    parts: tuple[str, str, str], name: str
) -> None:
    ratio = growth(PARSERS[name], parts, 16_000)
    assert ratio < MAX_GROWTH, (name, parts, ratio)


def test_module_bullets_and_mutations_grow_linearly() -> None:
    # Two more patterns with a lazy group before trailing blanks (module bullets, the
    # Status/Updated At rewrite): quadratic on a run of spaces inside the value.
    assert growth(parse_module_md, ("## Scope\n- a", " ", "x"), 16_000) < MAX_GROWTH
    enhanced = (
        "## Wave 1\n- **Depends On**: None\n### Task 1.1: t\n- **Updated At**: 2026-01-01\n"
        "- **Status**: [ ] pending\n- **Action**: a",
        " ",
        "x\n",
    )
    assert growth(lambda s: t.start_task(s, "1.1", DAY), enhanced, 16_000) < MAX_GROWTH


def test_checkbox_implicit_ids_are_linear() -> None:
    # Implicit ids restarted their search at len+1 for every task: quadratic when explicit
    # ids 1..n come after n implicit tasks.
    def text(n: int) -> str:
        implicit = "".join("- [ ] task\n" for _ in range(n))
        explicit = "".join(f"- [ ] {i} t\n" for i in range(1, n + 1))
        return implicit + explicit

    result = t.parse_tasks(text(3))
    assert [x.id for x in result.tasks] == ["4", "5", "6", "1", "2", "3"]
    from ._hostile import best_time

    small, big = best_time(t.parse_tasks, text(8_000)), best_time(t.parse_tasks, text(32_000))
    assert big / max(small, 0.005) < MAX_GROWTH


BIG = "9" * 5_000


@pytest.mark.parametrize(
    "markdown",
    [
        f"## Wave {BIG}\n- **Depends On**: None\n### Task 1.1: t\n- **Status**: [ ] pending\n",
        f"## Wave 1\n- **Depends On**: Wave {BIG}\n### Task 1.1: t\n- **Status**: [ ] pending\n",
        f"## Wave 1\n- **Depends On**: None\n### Task {BIG}: t\n- **Status**: [ ] pending\n"
        f"### Task 1.{BIG}: u\n- **Status**: [ ] pending\n",
        f"- [ ] {BIG} t\n- [ ] 1.{BIG} u\n- [ ] v\n",
    ],
)
def test_integers_beyond_4300_digits_are_diagnostics_not_crashes(markdown: str) -> None:
    # int() refuses strings over 4,300 digits (ValueError): was a 500 on push and on read.
    result = t.parse_tasks(markdown)
    t.compute_ready_blocked(result)
    for op in (
        lambda: t.start_task(markdown, "1.1", DAY),
        lambda: t.add_task(markdown, "x", 1, DAY),
        lambda: t.next_task(result),
    ):
        with contextlib.suppress(LoomError):
            op()
