"""Which requirements a delta touches (the requirement index), and which of them went stale.

:func:`requirement_refs` reads a delta with :func:`parse_delta`; a delta that parser refuses
(OpenSpec-era ``## ADDED`` headings, a malformed section) is read leniently with the same
fence-aware line scanner, so every delta a project holds is indexed. Both are one pass over
the lines, without regular expressions.

:func:`stale_requirements` compares, for every requirement a delta touches, the requirement's
text in the spec the delta was written against (the *base*) with the current spec's.
"""

from __future__ import annotations

from dataclasses import dataclass

from loom.domain.specs._delta import parse_delta
from loom.domain.specs._markdown import (
    ITO_END_MARKER,
    ITO_START_MARKER,
    REQUIREMENT_PREFIX,
    DeltaOp,
    Line,
    SpecDocument,
    scan,
)
from loom.domain.specs._merge import parse_spec
from loom.errors import ValidationError

__all__ = [
    "MAX_REQUIREMENT_NAME",
    "RequirementRef",
    "StaleRequirement",
    "requirement_refs",
    "requirement_texts",
    "stale_requirements",
]

# Longer names are not indexed (a heading that long is prose, not a name).
MAX_REQUIREMENT_NAME = 300


@dataclass(frozen=True, slots=True, order=True)
class RequirementRef:
    """One requirement a delta touches. A rename touches two names: the row for each name
    carries the same ``from_name``/``to_name``."""

    capability: str
    requirement: str
    op: str  # ADDED | MODIFIED | REMOVED | RENAMED
    from_name: str | None = None
    to_name: str | None = None


@dataclass(frozen=True, slots=True)
class StaleRequirement:
    """A requirement the delta touches that changed between its base and the current spec.

    ``base``/``current`` are the requirement's block in each spec (None: absent there);
    ``theirs`` is the delta's own block (None for REMOVED and RENAMED)."""

    capability: str
    requirement: str
    op: str
    base: str | None
    current: str | None
    theirs: str | None


def requirement_refs(delta: str, capability: str) -> tuple[RequirementRef, ...]:
    """The requirements ``delta`` touches, sorted, without duplicates."""
    try:
        parsed = parse_delta(delta, capability)
    except ValidationError:
        refs = _lenient_refs(scan(delta), capability)
    else:
        refs = [
            RequirementRef(capability, o.requirement.name, o.op.value) for o in parsed.operations
        ]
        for r in parsed.renames:
            refs.append(RequirementRef(capability, r.from_name, "RENAMED", r.from_name, r.to_name))
            refs.append(RequirementRef(capability, r.to_name, "RENAMED", r.from_name, r.to_name))
    return tuple(sorted({r for r in refs if 0 < len(r.requirement) <= MAX_REQUIREMENT_NAME}))


def _heading_op(key: str) -> DeltaOp | None:
    """``## ADDED Requirements`` and the OpenSpec-era ``## ADDED`` (first word, any case)."""
    words = key.removeprefix("## ").split(maxsplit=1)
    if not words:
        return None
    try:
        return DeltaOp(words[0].upper())
    except ValueError:
        return None


def _lenient_refs(lines: list[Line], capability: str) -> list[RequirementRef]:
    refs: list[RequirementRef] = []
    kind: DeltaOp | None = None
    pending_from: str | None = None
    for line in lines:
        if line.key.startswith("## "):
            kind, pending_from = _heading_op(line.key), None
        elif kind is None:
            continue
        elif line.requirement is not None:
            if kind is not DeltaOp.RENAMED:
                refs.append(RequirementRef(capability, line.requirement, kind.value))
        elif kind is DeltaOp.RENAMED and line.key not in ("", ITO_START_MARKER, ITO_END_MARKER):
            entry = line.key.lstrip("-").strip().strip("`")
            if entry.startswith("FROM:"):
                pending_from = _rename_name(entry.removeprefix("FROM:"))
            elif entry.startswith("TO:") and pending_from:
                to_name = _rename_name(entry.removeprefix("TO:"))
                if to_name:
                    for name in (pending_from, to_name):
                        refs.append(
                            RequirementRef(capability, name, "RENAMED", pending_from, to_name)
                        )
                pending_from = None
    return refs


def _rename_name(value: str) -> str:
    return value.strip().strip("`").removeprefix(REQUIREMENT_PREFIX).strip()


def requirement_texts(markdown: str | None, capability: str) -> dict[str, str] | None:
    """Each requirement's block in a truth spec (``{}`` for no spec); None if unparseable."""
    if markdown is None:
        return {}
    try:
        doc: SpecDocument = parse_spec(markdown, capability)
    except ValidationError:
        return None
    return {r.name: r.markdown for r in doc.requirements}


def _delta_blocks(delta: str, capability: str) -> dict[str, str]:
    try:
        parsed = parse_delta(delta, capability)
    except ValidationError:
        return {}
    return {
        o.requirement.name: o.requirement.markdown
        for o in parsed.operations
        if o.op is not DeltaOp.REMOVED
    }


def stale_requirements(
    capability: str, delta: str, base: str | None, current: str | None
) -> list[StaleRequirement]:
    """The requirements ``delta`` touches whose text differs between ``base`` and ``current``.

    MODIFIED, REMOVED and the FROM name of a RENAMED: the block changed (or vanished).
    ADDED and the TO name of a RENAMED: the requirement exists now but did not at the base.
    A spec that cannot be parsed is left to the merge, which reports it as ``delta_invalid``.
    """
    if base == current:
        return []
    before = requirement_texts(base, capability)
    after = requirement_texts(current, capability)
    if before is None or after is None:
        return []
    theirs = _delta_blocks(delta, capability)
    stale: list[StaleRequirement] = []
    seen: set[str] = set()
    for ref in requirement_refs(delta, capability):
        name = ref.requirement
        if name in seen:
            continue
        added = ref.op == "ADDED" or (ref.op == "RENAMED" and name == ref.to_name)
        if added:
            changed = name in after and name not in before
        else:
            changed = before.get(name) != after.get(name)
        if changed:
            seen.add(name)
            stale.append(
                StaleRequirement(
                    capability, name, ref.op, before.get(name), after.get(name), theirs.get(name)
                )
            )
    return stale
