"""Models of the overlap and spec-history routes (see docs/overlaps.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from loom.client._models import _Model

__all__ = [
    "ChangeOverlap",
    "ChangeOverlaps",
    "OverlapPair",
    "OverlapWarning",
    "ProjectOverlaps",
    "SharedRequirement",
    "SpecHistory",
    "SpecRevision",
]


class SharedRequirement(_Model):
    """A requirement two changes touch: ``ops`` this change's operations, ``other_ops`` the
    other's (``a_ops``/``b_ops`` in a project-wide pair)."""

    capability: str
    requirement: str
    ops: list[str] = Field(default_factory=list)
    other_ops: list[str] = Field(default_factory=list)
    a_ops: list[str] = Field(default_factory=list)
    b_ops: list[str] = Field(default_factory=list)


class ChangeOverlap(_Model):
    """One change overlapping the asked one."""

    change_id: str
    strength: str  # strong | weak
    requirements: list[SharedRequirement] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    work_status: str | None = None
    lease: dict[str, str] | None = None


class ChangeOverlaps(_Model):
    """``GET /changes/{id}/overlaps``."""

    change_id: str
    overlaps: list[ChangeOverlap] = Field(default_factory=list)


class OverlapPair(_Model):
    """One item of ``GET /overlaps``: changes ``a`` and ``b`` in canonical order."""

    a: str
    b: str
    strength: str
    requirements: list[SharedRequirement] = Field(default_factory=list)
    capabilities: list[str] = Field(default_factory=list)
    a_status: str | None = None
    b_status: str | None = None
    a_lease: dict[str, str] | None = None
    b_lease: dict[str, str] | None = None


class ProjectOverlaps(_Model):
    """``GET /overlaps``."""

    overlaps: list[OverlapPair] = Field(default_factory=list)


class OverlapWarning(_Model):
    """A strong overlap a push created (``PushResult.overlaps``)."""

    change_id: str
    requirements: list[dict[str, str]] = Field(default_factory=list)


class SpecRevision(_Model):
    revision: int
    change_id: str | None = None
    source: str
    at: datetime
    deleted: bool = False


class SpecHistory(_Model):
    """``GET /specs/{id}/history``: oldest first."""

    id: str
    revisions: list[SpecRevision] = Field(default_factory=list)
