"""Hostile text for the parsers, and a robust test of "time grows linearly"."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from hypothesis import strategies as st

# Pieces that make backtracking patterns and naive loops misbehave: runs of blanks, colons,
# brackets, digits, markdown markers, nesting and non-ASCII (including Unicode spaces).
PIECES = [
    " ",
    "\t",
    ":",
    ": ",
    "[",
    "]",
    "[ ] ",
    "1",
    "1.",
    "#",
    "`",
    "*",
    "**",
    "- ",
    "+ ",
    "_",
    "(",
    "{",
    ",",
    "é",
    "\u3000",
    "\u00a0",
    "x",
    "\n",
    "\r\n",
]
PREFIXES = [
    "",
    "### a:",
    "### ",
    "### Task ",
    "## Wave ",
    "## Wave 1\n- **Depends On**:",
    "- **Status**:",
    "- **Files**:",
    "- **Dependencies**:",
    "- **Verify**: `",
    "- **Action**:\n",
    "- [ ] ",
    "- ",
    "### Requirement:",
    "## ADDED Requirements\n### Requirement: a\n",
    "## RENAMED Requirements\n- FROM: `",
    "## Changes\n- ",
    "## Scope\n- a",
    "```",
    "# Tasks for:",
]
SUFFIXES = ["", "x", "\n", " x\n", ":", "\n- [ ] 1 t\n"]


@st.composite
def hostile(draw: st.DrawFn) -> tuple[str, str, str]:
    """(prefix, unit, suffix): the text is ``prefix + unit * n + suffix``."""
    unit = "".join(draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=4)))
    return draw(st.sampled_from(PREFIXES)), unit, draw(st.sampled_from(SUFFIXES))


def text_of(parts: tuple[str, str, str], size: int) -> str:
    prefix, unit, suffix = parts
    return prefix + unit * max(1, size // len(unit)) + suffix


def best_time(fn: Callable[[str], object], text: str, runs: int = 3) -> float:
    best = float("inf")
    # The collector is off while the runs are timed: a collection landing in one run is not
    # the parser's time. No gc.collect() first: in a worker that has run a thousand tests it
    # costs ~100 ms a call (most of this file's CPU), and with the collector off nothing it
    # would free can be charged to the parser anyway.
    gc.disable()
    try:
        for _ in range(runs):
            start = time.perf_counter()
            try:
                fn(text)
            except Exception as exc:  # a clean domain error is fine; the time is what counts
                if exc.__class__.__name__ in ("RecursionError", "OverflowError"):
                    raise
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return best


MAX_GROWTH = 10


def growth(fn: Callable[[str], object], parts: tuple[str, str, str], small: int) -> float:
    """How much longer ``fn`` takes on 4x the input: ~4 when linear, ~16 when quadratic
    (the tests allow up to :data:`MAX_GROWTH`).

    Each size is timed as the best of three runs with the collector off, the small time is
    floored at 5 ms, and sizes start at 16,000 characters (below that, inputs that fit in
    the CPU caches make a linear parser look 5x faster per character), so a loaded machine
    cannot fake a quadratic ratio.

    The big input (which costs most) is run once first: one run's time is never below the
    best of three, so a first run already under the limit gives the same verdict the best
    of three would; only a first run at or over the limit is run twice more. A linear parser
    thus costs 3 small runs and 1 big run instead of 3 and 3.
    """
    t_small = max(best_time(fn, text_of(parts, small)), 0.005)
    big = text_of(parts, small * 4)
    t_big = best_time(fn, big, runs=1)
    if t_big / t_small >= MAX_GROWTH:
        t_big = min(t_big, best_time(fn, big, runs=2))
    return t_big / t_small
