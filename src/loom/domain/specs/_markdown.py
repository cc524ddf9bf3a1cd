"""Shared pieces of the spec parsers: the value types and a fence-aware line scanner."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, NoReturn

from loom.errors import ValidationError

__all__ = [
    "ITO_END_MARKER",
    "ITO_START_MARKER",
    "NEW_SPEC_PURPOSE_PLACEHOLDER",
    "REQUIREMENTS_HEADING",
    "REQUIREMENT_PREFIX",
    "SECTION_KINDS",
    "DeltaOp",
    "DeltaOperation",
    "Fail",
    "Line",
    "Rename",
    "Requirement",
    "SpecDelta",
    "SpecDocument",
    "check_headings",
    "document_prefix",
    "is_level_two",
    "is_managed",
    "is_marker",
    "join_lines",
    "looks_like_operation",
    "normalize_newlines",
    "requirement_name",
    "scan",
    "section_kind",
    "strip_markers",
]

ITO_START_MARKER: Final = "<!-- ITO:START -->"
ITO_END_MARKER: Final = "<!-- ITO:END -->"
NEW_SPEC_PURPOSE_PLACEHOLDER: Final = "<!-- Describe the purpose of this capability -->"

REQUIREMENTS_HEADING: Final = "## Requirements"
REQUIREMENT_PREFIX: Final = "### Requirement:"


class DeltaOp(enum.StrEnum):
    """A delta section kind."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    REMOVED = "REMOVED"
    RENAMED = "RENAMED"


SECTION_KINDS: Final[dict[str, DeltaOp]] = {f"## {op.value} Requirements": op for op in DeltaOp}


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``### Requirement: <name>`` block; ``markdown`` starts with the heading, trimmed."""

    name: str
    markdown: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class DeltaOperation:
    """An ADDED, MODIFIED or REMOVED requirement block of a delta."""

    op: DeltaOp
    requirement: Requirement


@dataclass(frozen=True, slots=True)
class Rename:
    """A ``FROM:``/``TO:`` pair of a RENAMED section."""

    from_name: str
    to_name: str
    line: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class SpecDelta:
    """A parsed delta: operations and renames in document order, plus its preamble."""

    operations: tuple[DeltaOperation, ...]
    renames: tuple[Rename, ...]
    prefix: str
    managed: bool


@dataclass(frozen=True, slots=True)
class SpecDocument:
    """A parsed truth spec.

    ``prefix`` is the text before ``## Requirements`` (ITO markers stripped), ``intro`` the text
    between that heading and the first requirement, ``trailing`` the non-requirement ``## ``
    sections found after the requirements.
    """

    prefix: str
    intro: str
    requirements: tuple[Requirement, ...]
    trailing: str
    managed: bool
    has_requirements_heading: bool


class Line(NamedTuple):
    """One source line; ``key`` is its trimmed text, or ``""`` inside a code fence.

    A named tuple rather than a dataclass: parsing the corpus builds tens of thousands.
    """

    text: str
    number: int
    code: bool
    stripped: str
    key: str
    requirement: str | None  # the name of a well-formed requirement heading


class Fail:
    """Raises ``delta_invalid`` errors for one capability."""

    def __init__(self, capability: str, source: str) -> None:
        self.capability = capability
        self.source = source

    def __call__(
        self, message: str, problem: str, line: int | None = None, **extra: Any
    ) -> NoReturn:
        details: dict[str, Any] = {"capability": self.capability, "problem": problem, **extra}
        if line is not None:
            details["source"] = self.source
            details["line"] = line
        raise ValidationError(
            f"invalid spec delta for '{self.capability}': {message}",
            kind="delta_invalid",
            **details,
        )


# --------------------------------------------------------------------------- line scanning


def normalize_newlines(document: str) -> str:
    return document.replace("\r\n", "\n").replace("\r", "\n")


def _fence_opener(text: str) -> tuple[str, int] | None:
    s = text.lstrip()
    if not s.startswith(("```", "~~~")):
        return None
    for char in "`~":
        if s.startswith(char * 3):
            size = len(s) - len(s.lstrip(char))
            return char, size
    return None


def _closes_fence(text: str, char: str, size: int) -> bool:
    s = text.strip()
    return len(s) >= size and s == char * len(s)


def _fenced(texts: list[str]) -> set[int]:
    """Indexes of the lines inside matched code fences (delimiters included)."""
    fenced: set[int] = set()
    candidates = [i for i, text in enumerate(texts) if "```" in text or "~~~" in text]
    position = 0
    while position < len(candidates):
        i = candidates[position]
        opener = _fence_opener(texts[i])
        position += 1
        if opener is None:
            continue
        close = next(
            (
                (k, j)
                for k, j in enumerate(candidates[position:], start=position)
                if _closes_fence(texts[j], *opener)
            ),
            None,
        )
        if close is None:  # an unmatched opener is ordinary text
            continue
        fenced.update(range(i, close[1] + 1))
        position = close[0] + 1
    return fenced


def scan(document: str) -> list[Line]:
    """Split into lines (like Rust ``lines()``) and mark those inside matched code fences."""
    texts = normalize_newlines(document).split("\n")
    if texts and texts[-1] == "":
        texts.pop()
    fenced = _fenced(texts) if "```" in document or "~~~" in document else set()
    lines: list[Line] = []
    append = lines.append
    prefix_len = len(REQUIREMENT_PREFIX)
    for number, text in enumerate(texts, start=1):
        stripped = text.strip()
        if number - 1 in fenced:
            append(Line(text, number, True, stripped, "", None))
        elif stripped.startswith(REQUIREMENT_PREFIX):
            name = stripped[prefix_len:].strip() or None
            append(Line(text, number, False, stripped, stripped, name))
        else:
            append(Line(text, number, False, stripped, stripped, None))
    return lines


def requirement_name(line: Line) -> str | None:
    return line.requirement


def is_level_two(line: Line) -> bool:
    return line.key.startswith("## ")


def section_kind(line: Line) -> DeltaOp | None:
    return SECTION_KINDS.get(line.key)


def is_marker(line: Line, marker: str) -> bool:
    return line.key == marker


def looks_like_operation(heading: str) -> bool:
    upper = heading.removeprefix("## ").upper()
    return upper.endswith("REQUIREMENTS") or any(op.value in upper for op in DeltaOp)


def check_headings(lines: list[Line], fail: Fail, what: str) -> None:
    for line in lines:
        if line.requirement is None and line.key.startswith("### Requirement"):
            fail(
                f"{what} contains malformed requirement heading '{line.key}'",
                "malformed_heading",
                line.number,
            )


def join_lines(lines: list[Line]) -> str:
    return "\n".join(line.text for line in lines).strip()


def strip_markers(text: str) -> str:
    text = text.strip().removesuffix(ITO_END_MARKER).rstrip()
    return text.removeprefix(ITO_START_MARKER).lstrip()


def document_prefix(lines: list[Line]) -> str:
    """The preamble: everything before ``## Requirements`` or the first delta heading."""
    end = next(
        (
            i
            for i, line in enumerate(lines)
            if section_kind(line) is not None or line.key == REQUIREMENTS_HEADING
        ),
        len(lines),
    )
    return strip_markers(join_lines(lines[:end]))


def is_managed(lines: list[Line]) -> bool:
    return any(is_marker(line, ITO_START_MARKER) for line in lines)
