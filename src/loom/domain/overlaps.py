"""Overlaps between changes: the same requirement (strong) or the same capability (weak).

Pure: the inputs are each change's requirement references (the requirement index) and the
capabilities its deltas touch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from loom.domain.specs import RequirementRef

__all__ = ["Overlap", "SharedRequirement", "find_overlaps"]


@dataclass(frozen=True, slots=True)
class SharedRequirement:
    capability: str
    requirement: str
    a_ops: tuple[str, ...]
    b_ops: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "capability": self.capability,
            "requirement": self.requirement,
            "a_ops": list(self.a_ops),
            "b_ops": list(self.b_ops),
        }


@dataclass(frozen=True, slots=True)
class Overlap:
    """Changes ``a`` < ``b`` (canonical order decided by the caller's ``order``)."""

    a: str
    b: str
    requirements: tuple[SharedRequirement, ...]
    capabilities: tuple[str, ...]

    @property
    def strength(self) -> str:
        return "strong" if self.requirements else "weak"


def find_overlaps(
    refs: Mapping[str, Iterable[RequirementRef]],
    capabilities: Mapping[str, Iterable[str]],
    order: Mapping[str, str] | None = None,
) -> list[Overlap]:
    """Every overlapping pair among the changes named in ``capabilities``.

    ``refs``: change id → the requirements its deltas touch; ``capabilities``: change id → the
    capabilities its deltas touch (a superset of the refs' capabilities). ``order`` maps a
    change id to its sort key (default: the id). Cost: linear in the index plus the pairs.
    """
    key = (lambda c: order.get(c, c)) if order is not None else (lambda c: c)
    by_requirement: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(dict)
    for change_id, items in refs.items():
        for ref in items:
            ops = by_requirement[(ref.capability, ref.requirement)].setdefault(change_id, [])
            if ref.op not in ops:
                ops.append(ref.op)
    by_capability: dict[str, list[str]] = defaultdict(list)
    for change_id, caps in capabilities.items():
        for cap in set(caps):
            by_capability[cap].append(change_id)

    shared: dict[tuple[str, str], list[SharedRequirement]] = defaultdict(list)
    for (cap, name), holders in sorted(by_requirement.items()):
        ids = sorted(holders, key=key)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                shared[(a, b)].append(
                    SharedRequirement(
                        cap, name, tuple(sorted(holders[a])), tuple(sorted(holders[b]))
                    )
                )
    caps_of_pair: dict[tuple[str, str], list[str]] = defaultdict(list)
    for cap, members in sorted(by_capability.items()):
        ids = sorted(members, key=key)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                caps_of_pair[(a, b)].append(cap)
    pairs = set(caps_of_pair) | set(shared)
    return [
        Overlap(a, b, tuple(shared.get((a, b), ())), tuple(caps_of_pair.get((a, b), ())))
        for a, b in sorted(pairs, key=lambda p: (key(p[0]), key(p[1])))
    ]
