"""Response models of the overlap and spec-history routes (for the OpenAPI document; the
handlers return the service's dicts, which have exactly these fields)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

__all__ = [
    "ERROR_RESPONSES",
    "ChangeOverlapsOut",
    "ProjectOverlapsOut",
    "SpecHistoryOut",
    "SpecOut",
]


class _Holder(BaseModel):
    holder: str


class _Shared(BaseModel):
    capability: str
    requirement: str
    ops: list[str]
    other_ops: list[str]


class _ChangeOverlap(BaseModel):
    change_id: str
    strength: Literal["strong", "weak"]
    requirements: list[_Shared]
    capabilities: list[str]
    work_status: str | None
    lease: _Holder | None


class ChangeOverlapsOut(BaseModel):
    """The unarchived changes overlapping one change, strong overlaps first."""

    change_id: str
    overlaps: list[_ChangeOverlap]


class _PairShared(BaseModel):
    capability: str
    requirement: str
    a_ops: list[str]
    b_ops: list[str]


class _Pair(BaseModel):
    a: str
    b: str
    strength: Literal["strong", "weak"]
    requirements: list[_PairShared]
    capabilities: list[str]
    a_status: str | None
    b_status: str | None
    a_lease: _Holder | None
    b_lease: _Holder | None


class ProjectOverlapsOut(BaseModel):
    """Every overlapping pair of unarchived changes (``a`` before ``b``, canonical order)."""

    overlaps: list[_Pair]


class _Revision(BaseModel):
    revision: int
    change_id: str | None
    source: Literal["archive", "import", "put"]
    at: str
    deleted: bool


class SpecHistoryOut(BaseModel):
    id: str
    revisions: list[_Revision]


class SpecOut(BaseModel):
    id: str
    path: str
    markdown: str
    last_modified: str
    revision: int
    change_id: str | None = None


class _Error(BaseModel):
    error: str
    code: str
    kind: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": _Error, "description": "invalid id or parameter (`invalid_id`, ...)"},
    401: {"model": _Error, "description": "missing or unknown token"},
    403: {"model": _Error, "description": "token does not cover the project"},
    404: {"model": _Error, "description": "`change_not_found` / `spec_not_found`"},
}
