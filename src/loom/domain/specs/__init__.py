"""Capability specs and spec deltas: parse, validate and merge (Ito §5.3 to §5.5).

A *delta* (``changes/<id>/specs/<cap>/spec.md``) lists requirement operations in
``## ADDED|MODIFIED|REMOVED|RENAMED Requirements`` sections; archiving a change merges each
delta into the capability's truth spec with :func:`apply_delta`.

The rules are upstream Ito's ``reconcile_spec`` with these deliberate differences
(see ``docs/ito-compat.md``):

- fenced code blocks (```` ``` ```` / ``~~~``) are opaque: a ``## …`` or
  ``### Requirement:`` line inside a fence is text, not structure;
- a non-requirement ``## `` section after the requirements of a base spec (``## Notes``) is
  kept after the requirements instead of being glued onto the last one (D-28);
- text between ``## Requirements`` and the first requirement is kept;
- a new spec built from a delta without a preamble gets a ``# <capability>`` title and a
  ``## Purpose`` placeholder (D-28).

Every failure is ``ValidationError(kind="delta_invalid", capability=..., problem=...)``;
line-bound failures also carry ``source`` (``"delta"`` or ``"base"``) and a 1-based ``line``.
"""

from __future__ import annotations

from loom.domain.specs._delta import parse_delta, validate_delta
from loom.domain.specs._markdown import (
    ITO_END_MARKER,
    ITO_START_MARKER,
    NEW_SPEC_PURPOSE_PLACEHOLDER,
    DeltaOp,
    DeltaOperation,
    Rename,
    Requirement,
    SpecDelta,
    SpecDocument,
)
from loom.domain.specs._merge import apply_delta, parse_spec
from loom.domain.specs._refs import (
    MAX_REQUIREMENT_NAME,
    RequirementRef,
    StaleRequirement,
    requirement_refs,
    requirement_texts,
    stale_requirements,
)

__all__ = [
    "ITO_END_MARKER",
    "ITO_START_MARKER",
    "MAX_REQUIREMENT_NAME",
    "NEW_SPEC_PURPOSE_PLACEHOLDER",
    "DeltaOp",
    "DeltaOperation",
    "Rename",
    "Requirement",
    "RequirementRef",
    "SpecDelta",
    "SpecDocument",
    "StaleRequirement",
    "apply_delta",
    "parse_delta",
    "parse_spec",
    "requirement_refs",
    "requirement_texts",
    "stale_requirements",
    "validate_delta",
]
