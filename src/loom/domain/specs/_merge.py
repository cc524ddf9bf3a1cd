"""Truth spec parsing and delta merging (Ito §5.3, §5.5)."""

from __future__ import annotations

from collections import deque

from loom.domain._memo import memoized
from loom.domain.specs._delta import validate_delta
from loom.domain.specs._markdown import (
    ITO_END_MARKER,
    ITO_START_MARKER,
    NEW_SPEC_PURPOSE_PLACEHOLDER,
    REQUIREMENT_PREFIX,
    REQUIREMENTS_HEADING,
    DeltaOp,
    Fail,
    Line,
    Rename,
    Requirement,
    SpecDelta,
    SpecDocument,
    check_headings,
    is_level_two,
    is_managed,
    is_marker,
    join_lines,
    requirement_name,
    scan,
    section_kind,
    strip_markers,
)

__all__ = ["apply_delta", "parse_spec"]


def parse_spec(markdown: str, capability: str) -> SpecDocument:
    """Parse a truth spec (``specs/<cap>/spec.md``) and apply Ito's base checks.

    Raises ``delta_invalid`` when the spec contains a malformed requirement heading, a delta
    section heading, requirements without a ``## Requirements`` heading, or duplicate names.
    """
    fail = Fail(capability, "base")
    lines = scan(markdown)
    check_headings(lines, fail, "current spec")
    for line in lines:
        if section_kind(line) is not None:
            fail(
                "current spec contains delta section headings; "
                "reconcile it before archiving another change",
                "base_has_delta_headings",
                line.number,
            )
    doc = _split_spec(lines)
    if doc.requirements and not doc.has_requirements_heading:
        fail(
            "current spec requirements are missing the '## Requirements' section",
            "base_missing_requirements_heading",
        )
    seen: set[str] = set()
    for requirement in doc.requirements:
        if requirement.name in seen:
            fail(
                "current spec contains duplicate requirement headings",
                "base_duplicate_requirement",
                requirement.line,
                requirement=requirement.name,
            )
        seen.add(requirement.name)
    return doc


def _split_spec(lines: list[Line]) -> SpecDocument:
    def starts_body(line: Line) -> bool:
        return line.key == REQUIREMENTS_HEADING or (requirement_name(line) is not None)

    first = next((i for i, line in enumerate(lines) if starts_body(line)), len(lines))
    intro: list[Line] = []
    trailing: list[Line] = []
    blocks: list[tuple[str, list[Line]]] = []
    target = intro
    has_heading = False
    for line in lines[first:]:
        name = requirement_name(line)
        if name is not None:
            blocks.append((name, [line]))
            target = blocks[-1][1]
        elif is_marker(line, ITO_START_MARKER) or is_marker(line, ITO_END_MARKER):
            continue
        elif line.key == REQUIREMENTS_HEADING:
            has_heading = True
            target = intro
        elif is_level_two(line):
            target = trailing
            target.append(line)
        else:
            target.append(line)
    return SpecDocument(
        prefix=strip_markers(join_lines(lines[:first])),
        intro=join_lines(intro),
        requirements=tuple(
            Requirement(name, join_lines(body), body[0].number) for name, body in blocks
        ),
        trailing=join_lines(trailing),
        managed=is_managed(lines),
        has_requirements_heading=has_heading,
    )


# --------------------------------------------------------------------------- merge


@memoized
def apply_delta(base: str | None, delta: str, capability: str) -> str | None:
    """Merge ``delta`` into the truth spec ``base`` (None = the capability is new).

    Renames apply first, then ADDED/MODIFIED/REMOVED in document order. Returns the new spec
    (LF line endings), or None when every requirement of a non-empty base was removed, i.e.
    the spec file is to be deleted. A blank base counts as a new capability.
    """
    fail = Fail(capability, "delta")
    parsed = validate_delta(delta, capability)
    doc = parse_spec(base, capability) if base is not None and base.strip() else None
    reqs = _Requirements(list(doc.requirements) if doc is not None else [])
    initial = len(reqs.slots)
    for rename in parsed.renames:
        reqs.rename(rename, fail)
    removed = 0
    for operation in parsed.operations:
        block = operation.requirement
        index = reqs.find(block.name)
        if operation.op is DeltaOp.ADDED:
            if index is not None:
                fail(
                    f"cannot add duplicate requirement '{block.name}'",
                    "add_duplicate",
                    block.line,
                    requirement=block.name,
                )
            reqs.append(block)
        elif index is None:
            verb = "modify" if operation.op is DeltaOp.MODIFIED else "remove"
            fail(
                f"cannot {verb} missing requirement '{block.name}'",
                f"{verb}_missing",
                block.line,
                requirement=block.name,
            )
        elif operation.op is DeltaOp.MODIFIED:
            reqs.slots[index] = block
        else:
            reqs.remove(index)
            removed += 1
    requirements = [r for r in reqs.slots if r is not None]
    if not requirements:
        if initial > 0 and removed > 0:
            return None
        fail(
            "delta produced an empty spec without removing existing requirements",
            "empty_result",
        )
    return _render(doc, parsed, requirements, capability)


class _Requirements:
    """The requirements being merged, in order, with an index by name.

    Every operation finds "the first requirement named X" (names may repeat in a base spec)
    in O(1) through ``by_name`` (live positions per name, ascending), so a merge costs time
    linear in operations + requirements; scanning the list per operation was O(ops x reqs)
    (20,000 ADDED requirements: 7.5 s).
    """

    def __init__(self, requirements: list[Requirement]) -> None:
        self.slots: list[Requirement | None] = list(requirements)
        self.by_name: dict[str, deque[int]] = {}
        for i, r in enumerate(requirements):
            self.by_name.setdefault(r.name, deque()).append(i)

    def find(self, name: str) -> int | None:
        positions = self.by_name.get(name)
        return positions[0] if positions else None

    def append(self, block: Requirement) -> None:
        self.by_name.setdefault(block.name, deque()).append(len(self.slots))
        self.slots.append(block)

    def remove(self, index: int) -> None:
        old = self.slots[index]
        assert old is not None
        self.slots[index] = None
        self._forget(old.name, index)

    def _forget(self, name: str, index: int) -> None:
        positions = self.by_name[name]
        positions.popleft()  # ``index`` is always the first live position of ``name``
        assert index not in positions
        if not positions:
            del self.by_name[name]

    def rename(self, rename: Rename, fail: Fail) -> None:
        index = self.find(rename.from_name)
        if index is None:
            fail(
                f"cannot rename missing requirement '{rename.from_name}'",
                "rename_missing",
                rename.line,
                requirement=rename.from_name,
            )
        if any(i != index for i in self.by_name.get(rename.to_name, ())):
            fail(
                f"cannot rename requirement '{rename.from_name}' to duplicate name "
                f"'{rename.to_name}'",
                "rename_duplicate",
                rename.line,
                requirement=rename.from_name,
            )
        old = self.slots[index]
        assert old is not None
        _, _, body = old.markdown.partition("\n")
        heading = f"{REQUIREMENT_PREFIX} {rename.to_name}"
        markdown = f"{heading}\n{body}" if body else heading
        self._forget(old.name, index)
        self.by_name[rename.to_name] = deque([index])
        self.slots[index] = Requirement(rename.to_name, markdown, old.line)


def _render(
    doc: SpecDocument | None,
    delta: SpecDelta,
    requirements: list[Requirement],
    capability: str,
) -> str:
    managed = delta.managed or (doc is not None and doc.managed)
    if doc is not None:
        prefix, intro, trailing = doc.prefix, doc.intro, doc.trailing
    else:
        prefix, intro, trailing = delta.prefix, "", ""
        if not prefix:
            prefix = f"# {capability}\n\n## Purpose\n\n{NEW_SPEC_PURPOSE_PLACEHOLDER}"
    parts: list[str] = []
    if managed:
        parts.append(ITO_START_MARKER + "\n\n")
    if prefix:
        parts.append(prefix + "\n\n")
    parts.append(REQUIREMENTS_HEADING + "\n\n")
    if intro:
        parts.append(intro + "\n\n")
    parts.append("\n\n".join(r.markdown for r in requirements) + "\n")
    if trailing:
        parts.append("\n" + trailing + "\n")
    if managed:
        parts.append(ITO_END_MARKER + "\n")
    return "".join(parts)
